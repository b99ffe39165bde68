"""The whole report: every table built from what exists (runs, benchmark, diagnostics), with an index."""
from __future__ import annotations

import pandas as pd

from harness.report import build_report
from harness.report.__main__ import main
from tests.report.conftest import write_run


def write_bench(folder):
    folder.mkdir(parents=True)
    rows = []
    for backend, speeds in (("vanilla", [20.0, "oom"]), ("transnormer_t2", [30.0, 12.0])):
        for length, speed in zip((1024, 3072), speeds):
            ok = speed != "oom"
            rows.append({"label": backend, "backend": backend, "mode": "train", "length": length,
                         "status": "ok" if ok else "oom", "steps_per_sec": speed if ok else None,
                         "peak_memory_mib": 100.0 * length / 1024 if ok else None, "parameters": 1000,
                         "error": "" if ok else "OutOfMemoryError: CUDA out of memory"})
    pd.DataFrame(rows).to_csv(folder / "table7.csv", index=False)


def test_report_from_runs_benchmark_and_diagnostics(tmp_path):
    results = tmp_path / "results"
    runs = results / "runs"
    write_run(runs, "attention=vanilla", valid=30.0)
    write_run(runs, "attention=transnormer_t2", valid=28.0)
    write_run(runs, "attention=elu", status="failed", reason="NonFiniteLossError: nan")
    write_run(runs, "attention=transnormer_t2", "attention.block_size=32", valid=29.0)
    write_bench(results / "bench" / "smoke" / "table7")
    (results / "analysis" / "smoke" / "fig2").mkdir(parents=True)
    pd.DataFrame({"label": ["vanilla"] * 3 + ["elu"] * 3, "layer": ["all"] * 6, "mixer": ["x"] * 6,
                  "ratio": [0.0, 0.4, 1.0] * 2, "score": [0.0, 0.8, 1.0, 0.0, 0.4, 1.0]}).to_csv(
        results / "analysis" / "smoke" / "fig2" / "locality.csv", index=False)
    (results / "analysis" / "smoke" / "table2").mkdir(parents=True)
    pd.DataFrame({"backend": ["vanilla", "elu"], "deviation": [0.3, 0.6]}).to_csv(
        results / "analysis" / "smoke" / "table2" / "table2.csv", index=False)

    index = build_report(results, tables=["table2", "table4", "table7", "table11", "fig2"])
    out = results / "report" / "smoke"
    assert index == results / "report" / "index.md" and "[smoke](smoke/index.md)" in index.read_text()
    page = (out / "index.md").read_text()
    for name in ("table2.md", "table4.md", "table7.md", "table11.md", "fig2.md", "table4_bars.png",
                 "table4_curves.png", "table11_block_size.png", "table7_speed.png", "table7_memory.png",
                 "fig2_locality.png"):
        assert name in page, name
        assert (out / name).is_file() or (out / "plots" / name).is_file(), name
    assert "Machines: test" in page
    table4 = (out / "table4.md").read_text()
    assert "failed: NonFiniteLossError: nan" in table4 and "missing" in table4
    speed = pd.read_csv(out / "table7.csv")
    oom = speed[(speed["row_key"] == "vanilla") & (speed["column"] == "train_3072")].iloc[0]
    assert oom["status"] == "failed" and oom["reason"].startswith("OOM") and oom["paper_text"] == "OOM"
    assert "| 0.8 |" in (out / "fig2.md").read_text().replace("0.800", "0.8")
    grads = pd.read_csv(out / "table2.csv").set_index("row_key")
    assert grads.loc["vanilla", "ours_mean"] == 0.3 and grads.loc["performer", "status"] == "missing"


def test_command_line_and_an_empty_results_folder(tmp_path, capsys):
    assert main(["--results", str(tmp_path), "--tables", "table4"]) == 0
    assert "No runs yet" in (tmp_path / "report" / "index.md").read_text()
    assert "report:" in capsys.readouterr().out


def test_a_page_set_of_some_tables_ignores_the_runs_of_others(tmp_path):
    """Built with ``tables``, a page set says the same when another table's runs are added beside its own (its
    index counts the runs behind its pages), so a committed page set of a few tables regenerates byte for byte."""
    runs = tmp_path / "results" / "runs"
    write_run(runs, "attention=vanilla", valid=30.0, updated="2026-01-01T00:01:00+00:00")
    build_report(tmp_path / "results", tmp_path / "before", tables=["table4"])
    write_run(runs, "task=glue/sst2", "attention=vanilla", valid=0.8, updated="2026-02-01T00:00:00+00:00")
    build_report(tmp_path / "results", tmp_path / "after", tables=["table4"])
    before, after = ((tmp_path / f / "smoke" / "index.md").read_text() for f in ("before", "after"))
    assert before == after and "Runs: 1;" in before
    build_report(tmp_path / "results", tmp_path / "all")
    assert "Runs: 2;" in (tmp_path / "all" / "smoke" / "index.md").read_text()


def test_fine_tunings_on_the_real_glue_files_get_their_own_table5_page(tmp_path):
    """Table 5's real-data variant (docs/glue.md): CoLA and SST-2 fine-tuned on the official files land on the
    ``<scale>-glue`` page set, beside the built-in data's page, never mixed into its cells."""
    runs = tmp_path / "results" / "runs"
    real = ("task.data.source=files", f"task.data.path={tmp_path / 'glue'}")
    for seed in range(2):
        write_run(runs, "experiment=table5", "task=glue/sst2", "attention=vanilla", f"seed={seed}", *real,
                  valid=0.6 + seed / 100, scale="cpu")
        write_run(runs, "experiment=table5", "task=glue/sst2", "attention=vanilla", f"seed={seed}", valid=0.9,
                  scale="cpu")
    build_report(tmp_path / "results", tmp_path / "out", scales=["cpu"], tables=["table5"])
    variant = (tmp_path / "out" / "cpu-glue" / "table5.md").read_text()
    builtin = (tmp_path / "out" / "cpu" / "table5.md").read_text()
    vanilla = next(line for line in variant.splitlines() if line.startswith("| Vanilla"))
    assert "60.5 ± 0.71 (2 seeds)" in vanilla and "missing: not run" in vanilla  # SST-2 filled, MNLI not
    assert "90 ± 0 (2 seeds)" in next(line for line in builtin.splitlines() if line.startswith("| Vanilla"))
