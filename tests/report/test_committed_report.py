"""The committed report and the README agree: the README's results section is the claims pages' verdicts, and
no table page of the committed report has a missing cell without a reason."""
from __future__ import annotations

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


def test_every_claim_is_decided_on_a_committed_claims_page():
    """The paper's claims on the built-in corpus's page set; the recall diagnostics' on their own (cpu-recall)."""
    pages = sorted(COMMITTED.glob("**/claims.csv"))
    decided = set().union(*(pd.read_csv(p, keep_default_na=False)["claim"] for p in pages))
    assert decided == {c.id for c in load_claims()}
    paper = set(pd.read_csv(COMMITTED / "cpu" / "claims.csv", keep_default_na=False)["claim"])
    assert paper == {c.id for c in load_claims() if not c.table.startswith("recall")}


@pytest.mark.parametrize("page", sorted(p for folder in SECTIONS for p in folder.glob("*.csv")
                                        if not p.name.startswith("claims")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_missing_cell_without_a_reason(page):
    frame = pd.read_csv(page, keep_default_na=False)
    if "status" not in frame:
        return
    missing = frame[frame["status"] == "missing"]
    assert (missing["reason"].astype(str).str.len() > 0).all(), missing[["row", "column"]].to_string()
