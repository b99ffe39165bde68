"""The expected-results block of a run table's page: ours with its spread, the wall time a run, the paper's number
and a seed's GPU-hours at paper scale read off the compute plan (summed over the row's tasks)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from harness.report import expected
from harness.report.report import build_report
from tests.report.conftest import write_run

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def plan_csv(path):
    rows = [("table6", "lra/listops", "vanilla", 3, 1e18, 2.0), ("table6", "lra/text", "vanilla", 3, 1e18, 3.5),
            ("table4", "lm", "vanilla", 3, 1e19, 12.0), ("table4", "lm", "elu", 3, 1e19, 11.0)]
    frame = pd.DataFrame(rows, columns=["table", "task", "backend", "runs", "flops_per_run", "gpu_hours_per_run"])
    frame["gpu"] = "A100 at 40% utilisation, 80 GB"
    frame.to_csv(path, index=False)
    return path


def test_the_block_gives_wall_time_paper_and_gpu_hours(tmp_path, monkeypatch):
    runs = tmp_path / "results" / "runs"
    for seed, ppl in enumerate((30.0, 32.0)):
        folder = write_run(runs, "experiment=table4", "attention=vanilla", f"seed={seed}", valid=ppl, scale="cpu")
        record = json.loads((folder / "record.json").read_text())
        record["wall_seconds"] = 90.0 + 60 * seed
        record["host"]["cpu_count"] = 2
        (folder / "record.json").write_text(json.dumps(record))
    monkeypatch.setattr(expected, "PLAN", plan_csv(tmp_path / "plan.csv"))
    build_report(tmp_path / "results", tmp_path / "out", scales=["cpu"], tables=["table4"])
    page = (tmp_path / "out" / "cpu" / "table4.md").read_text()
    block = page.split("## Expected results", 1)[1]
    vanilla = next(line for line in block.splitlines() if line.startswith("| Vanilla"))
    assert "| 31 ± 1.4 (2 seeds) |" in vanilla and "| 29.63 |" in vanilla, vanilla  # ours, the paper's
    assert "| 2.0 min |" in vanilla and vanilla.rstrip().endswith("| 12 |")
    assert "2-core CPU" in block and "A100 at 40%" in block


def test_a_rows_gpu_hours_sum_its_tasks_and_no_plan_says_so(tmp_path):
    plan = pd.read_csv(plan_csv(tmp_path / "plan.csv"))
    assert expected._gpu_hours(plan, "table6", "vanilla") == "5.5"
    assert expected._gpu_hours(plan, "table6", "gla") == "–" and expected._gpu_hours(None, "table4", "elu") == "–"
    assert expected.read_plan(tmp_path / "none.csv") is None


def test_a_table_with_an_average_heads_the_block_with_it_and_states_the_pages_cost(tmp_path, monkeypatch):
    """Table 6: the AVG column (per seed, with its spread), the wall time over all of a row's runs, and the
    page's runs summed."""
    runs = tmp_path / "results" / "runs"
    tasks = ("text", "listops", "retrieval", "pathfinder", "image")
    for seed in (0, 1):
        for i, task in enumerate(tasks):
            folder = write_run(runs, "experiment=table6", f"task=lra/{task}", "attention=vanilla", f"seed={seed}",
                               valid=0.5, test=0.5 + 0.02 * i + 0.1 * seed, scale="cpu")
            record = json.loads((folder / "record.json").read_text())
            record["wall_seconds"] = 60.0 * (i + 1)  # 1 to 5 min: a mean of 3 min a run
            (folder / "record.json").write_text(json.dumps(record))
    monkeypatch.setattr(expected, "PLAN", plan_csv(tmp_path / "plan.csv"))
    build_report(tmp_path / "results", tmp_path / "out", scales=["cpu"], tables=["table6"])
    block = (tmp_path / "out" / "cpu" / "table6.md").read_text().split("## Expected results", 1)[1]
    assert "| AVG at `cpu` (ours) |" in block
    transformer = next(line for line in block.splitlines() if line.startswith("| Transformer"))
    assert "| 59 ± 7.1 (2 seeds) |" in transformer and "| 3.0 min |" in transformer, transformer
    assert "| 57.37 |" in transformer and transformer.rstrip().endswith("| 5.5 |")
    assert "Cost of this page's runs: 10 runs, 30 min of run time summed" in block


def test_table5s_cost_adds_the_pretrainings_its_fine_tunings_start_from(tmp_path):
    """A GLUE record names its masked-LM run by the path of the machine that trained it; the block finds that run
    beside it in the runs folder read (here: a copy, as the committed evidence is) and adds its wall time once."""
    runs = tmp_path / "evidence" / "runs"
    pretraining = write_run(runs, "task=mlm", "attention=vanilla", scale="cpu")
    record = json.loads((pretraining / "record.json").read_text())
    record["wall_seconds"] = 600.0
    (pretraining / "record.json").write_text(json.dumps(record))
    trained_at = "results/runs/" + pretraining.relative_to(runs).as_posix()  # where it was on its machine
    for task in ("sst2", "cola"):
        folder = write_run(runs, "experiment=table5", f"task=glue/{task}", "attention=vanilla", scale="cpu",
                           valid=0.8, data={"init_from": {"run_dir": trained_at, "backend": "vanilla"}})
        record = json.loads((folder / "record.json").read_text())
        record["config"]["run"]["root"], record["wall_seconds"] = "results/runs", 60.0
        (folder / "record.json").write_text(json.dumps(record))
    build_report(tmp_path / "evidence", tmp_path / "out", scales=["cpu"], tables=["table5"])
    block = (tmp_path / "out" / "cpu" / "table5.md").read_text().split("## Expected results", 1)[1]
    assert ("Cost of this page's runs: 2 runs, 2 min of run time summed; before them, the masked-LM "
            "pretrainings they fine-tune: 1 runs, 10 min") in block


def test_a_run_the_plan_shares_with_an_earlier_table_still_counts_for_the_row(tmp_path):
    """1+elu's masked-LM pretraining is Table 1's run too: the plan lists it under Table 1 only, and Table 5's row
    still adds it to its GLUE fine-tuning."""
    rows = [("table1", "mlm", "elu", 3, 1e19, 17.0), ("table5", "mlm", "vanilla", 3, 1e19, 17.5),
            ("table5", "glue/sst2", "vanilla", 3, 1e17, 0.5), ("table5", "glue/sst2", "elu", 3, 1e17, 0.4)]
    plan = pd.DataFrame(rows, columns=["table", "task", "backend", "runs", "flops_per_run", "gpu_hours_per_run"])
    assert expected._gpu_hours(plan, "table5", "elu") == "17.4"
    assert expected._gpu_hours(plan, "table5", "vanilla") == "18"
