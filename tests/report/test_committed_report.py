"""The committed report and the README agree: the README's results section is the claims pages' verdicts, and
no table page of the committed report has a missing cell without a reason."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from harness.report.claims import VERDICTS, load_claims
from harness.report.report import README_BEGIN, README_END

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "docs" / "results"
SECTIONS = sorted(p.parent for p in COMMITTED.glob("cpu*/claims.csv"))


def readme_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return text.split(README_BEGIN, 1)[1].split(README_END, 1)[0]


def test_the_committed_report_has_a_claims_page_for_the_built_in_corpus():
    assert COMMITTED / "cpu" in SECTIONS


@pytest.mark.parametrize("folder", SECTIONS, ids=[p.name for p in SECTIONS])
def test_readme_shows_every_verdict_of_the_claims_pages(folder):
    claims = pd.read_csv(folder / "claims.csv", keep_default_na=False)
    main = claims[claims["main"].astype(str) == "True"]
    section = readme_section()
    assert f"**{folder.name}**" in section
    part = section.split(f"**{folder.name}**", 1)[1].split("\n**", 1)[0]
    assert set(main["verdict"]) <= set(VERDICTS)
    for _, line in main.iterrows():
        assert f"| **{line['verdict']}** |" in part.split(line["paper"].replace("|", "\\|"), 1)[1].split("\n")[0], \
            line["claim"]


def test_every_claim_is_decided_on_the_built_in_corpus_claims_page():
    """The paper's claims and ours (the recall diagnostics') on one page: the committed report's."""
    decided = set(pd.read_csv(COMMITTED / "cpu" / "claims.csv", keep_default_na=False)["claim"])
    assert decided == {c.id for c in load_claims()}


@pytest.mark.parametrize("page", sorted(p for folder in SECTIONS for p in folder.glob("*.csv")
                                        if not p.name.startswith("claims")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_missing_cell_without_a_reason(page):
    frame = pd.read_csv(page, keep_default_na=False)
    if "status" not in frame:
        return
    missing = frame[frame["status"] == "missing"]
    assert (missing["reason"].astype(str).str.len() > 0).all(), missing[["row", "column"]].to_string()


RUNS = COMMITTED / "runs"


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory) -> Path:
    """``python -m harness.report --results docs/results --out <tmp> --scale cpu``: every page set at cpu scale
    (the built-in corpus's and one per real-data folder) from the committed records and analyses."""
    from harness.report.report import build_report

    out = tmp_path_factory.mktemp("report")
    build_report(COMMITTED, out, scales=["cpu"])
    return out


def pages(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.suffix in (".md", ".csv"))


def test_the_rebuild_writes_every_committed_page_set(rebuilt):
    """No committed folder of pages (cpu, cpu-<data>) is left out of the rebuild, and none is missing."""
    committed = sorted(p.name for p in COMMITTED.iterdir() if p.is_dir() and p.name.startswith("cpu"))
    assert committed == sorted(p.name for p in rebuilt.iterdir() if p.is_dir())
    assert (rebuilt / "index.md").read_bytes() == (COMMITTED / "index.md").read_bytes()


@pytest.mark.parametrize("folder", SECTIONS, ids=[p.name for p in SECTIONS])
def test_the_committed_pages_regenerate_from_the_committed_records(folder, rebuilt):
    """Every page (Markdown and CSV) of the page set is written again, byte for byte, from docs/results/runs
    (and docs/results/bench, docs/results/analysis), and the rebuild writes no page that is not committed."""
    committed = pages(folder)
    assert committed, f"nothing committed under {folder}"
    assert committed == pages(rebuilt / folder.name)
    for page in committed:
        assert (rebuilt / folder.name / page).read_bytes() == (folder / page).read_bytes(), page


def test_the_committed_records_are_evidence_only():
    """record.json and metrics.jsonl of completed runs: no checkpoints, logs or data under docs/results/runs."""
    files = [p for p in RUNS.rglob("*") if p.is_file()]
    assert files and {p.name for p in files} <= {"record.json", "metrics.jsonl"}
    assert sum(p.stat().st_size for p in files) < 20 * 2**20


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_of_a_committed_page_resolves(page):
    """Generated pages link each other by name (a claim's table, a plot): a link to a page that is not written
    (recall_order's claim links the recall page that holds its rows) is a defect a reader meets."""
    broken = [target for target in LINK.findall(page.read_text(encoding="utf-8"))
              if "://" not in target and not (page.parent / target).exists()]
    assert not broken, f"{page.relative_to(REPO)} links to missing files: {broken}"
