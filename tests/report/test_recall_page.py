"""The recall page and claims (harness/report/recall.py): the learning rate chosen on validation, intervals over
seeds, the state sizes the runs measured, claims over cells with wildcards and levels."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from harness.report import claims as claims_mod
from harness.report import recall
from harness.report.records import placed_records
from harness.report.report import build_report
from tests.report.conftest import write_run

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def recall_run(runs: Path, backend: str, d_model: int, pairs: int, lr: float, seed: int, valid: float,
               test: float | None = None, state: int = 1024, experiment: str = "recall", *extra: str) -> Path:
    """A completed MQAR run at the cpu preset's sizes with made-up accuracies and a measured state size."""
    run_dir = write_run(runs, f"experiment={experiment}", "task=recall/mqar", f"attention={backend}",
                        f"model.d_model={d_model}", f"task.num_kv_pairs={pairs}", f"trainer.lr={lr}",
                        f"seed={seed}", *extra, scale="cpu", valid=valid, test=test)
    path = run_dir / "record.json"
    record = json.loads(path.read_text())
    test = valid if test is None else test
    record["primary_metric"] = {"name": "accuracy", "mode": "max", "valid": valid, "test": test}
    record["metrics"] = {"valid/accuracy": valid, "test/accuracy": test}
    record["data"] = {"decoding_state": {"bytes": state, "tokens": 8 * pairs, "dtype": "float32"}}
    record["wall_seconds"] = 30.0
    path.write_text(json.dumps(record))
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results") / "runs"
    for seed, (good, bad) in enumerate([(0.99, 0.40), (1.0, 0.42), (0.98, 0.50)]):
        # vanilla: the better learning rate on validation is 1e-3, whose test is lower than 3e-3's test
        recall_run(root, "vanilla", 32, 8, 1e-3, seed, valid=good, test=good - 0.01, state=32896)
        recall_run(root, "vanilla", 32, 8, 3e-3, seed, valid=good - 0.2, test=good, state=32896)
        recall_run(root, "vanilla", 64, 8, 1e-3, seed, valid=1.0, state=65792)
        recall_run(root, "norm_attention", 32, 8, 1e-3, seed, valid=bad, state=8192)
        recall_run(root, "norm_attention", 64, 8, 1e-3, seed, valid=bad + 0.3, state=32768)
    return root


def test_the_learning_rate_is_chosen_on_validation_and_the_interval_is_students(runs):
    table = recall.cells(recall.runs_frame(placed_records(runs)))
    cell = table[table["key"] == "mqar vanilla d32 V128 L64 N8"].iloc[0]
    tests = np.array([0.98, 0.99, 0.97])  # each seed's test accuracy at lr 1e-3 (the better one on validation)
    assert cell["mean"] == pytest.approx(tests.mean())
    low, high = sps.t.interval(0.95, 2, loc=tests.mean(), scale=sps.sem(tests))
    assert (cell["low"], cell["high"]) == (pytest.approx(low), pytest.approx(high))
    assert cell["n"] == 3 and cell["runs"] == 6 and cell["lrs"] == "0.001"
    assert cell["state_bytes"] == 32896


def test_the_state_size_and_width_axes_are_kept_per_cell(runs):
    table = recall.cells(recall.runs_frame(placed_records(runs)))
    norm = table[table["backend"] == "norm_attention"].set_index("d_model")
    assert norm.loc[32, "state_bytes"] == 8192 and norm.loc[64, "state_bytes"] == 32768
    assert norm.loc[64, "mean"] == pytest.approx(np.mean([0.70, 0.72, 0.80]))


def test_claims_take_the_worst_matched_cell_and_accept_a_level(runs):
    records = placed_records(runs)
    sides = recall.claim_sides("mqar vanilla d* *", "0.9", "greater", records)
    assert sides["mqar vanilla d* *"] == {0: pytest.approx(0.98), 1: pytest.approx(0.99), 2: pytest.approx(0.97)}
    assert sides["0.9"] == {0: 0.9, 1: 0.9, 2: 0.9}
    sides = recall.claim_sides("mqar norm_attention d* *", "mqar vanilla d* *", "less", records)
    assert sides["mqar norm_attention d* *"][0] == pytest.approx(0.70)  # the larger (worse for "less") of its cells
    assert sides["mqar vanilla d* *"][0] == pytest.approx(0.98)  # the smaller of vanilla's


def test_an_unmatched_cell_is_not_run():
    claim = claims_mod.Claim(id="x", table="recall", paper="p", column="accuracy", expect="greater",
                             a="mqar gla d32 *", b="0.5")
    decision = claims_mod.decide_all([claim], [], "cpu", None)[0]
    assert decision.verdict == claims_mod.NOT_RUN
    assert "./reproduce.sh recall" in decision.reason


def test_the_committed_claims_name_cells_of_the_recall_grid():
    found = [c for c in claims_mod.load_claims() if c.table in claims_mod.RECALL_SOURCES]
    assert {c.id for c in found} >= {"recall_softmax_solves", "recall_diag_early"}
    for claim in found:
        assert claim.a.startswith("mqar ") and claim.column == "accuracy"


def test_the_report_writes_the_page_and_decides_the_claims(runs, tmp_path):
    out = tmp_path / "report"
    build_report(runs.parent, out, scales=["cpu"], tables=["recall"])
    page = (out / "cpu" / "recall.md").read_text()
    assert "| vanilla | 97.9 [" in page or "| vanilla | 98.0 [" in page
    assert "d32 · V128 L64 N8" in page and "d64 · V128 L64 N8" in page
    assert "recall_mqar_width.png" in page and (out / "cpu" / "plots" / "recall_mqar_state.png").is_file()
    assert "| norm_attention | 8 | 32 |" in page  # KiB of the measured states
    decided = {row["claim"]: row["verdict"] for row in csv.DictReader((out / "cpu" / "claims.csv").open())}
    assert decided["recall_softmax_solves"] == claims_mod.HOLDS
    assert decided["recall_norm_below_softmax"] == claims_mod.HOLDS
    assert decided["recall_norm_needs_width"] == claims_mod.HOLDS
    assert decided["recall_gla_vs_norm"] == claims_mod.NOT_RUN


def test_a_layer_plans_brackets_are_literal_in_claims(runs, tmp_path):
    root = tmp_path / "runs"
    for seed in (0, 1):
        recall_run(root, "transnormer_t2", 32, 8, 1e-3, seed, valid=0.6 + 0.1 * seed, experiment="recall_order")
        recall_run(root, "transnormer_t2", 32, 8, 1e-3, seed, 0.9, None, 1024, "recall_order",
                   "attention.layer_plan=reverse_split:1")
    sides = recall.claim_sides("mqar transnormer_t2 d32 *", "mqar transnormer_t2[reverse_split:1] d32 *", "greater",
                               placed_records(root))
    assert sides["mqar transnormer_t2[reverse_split:1] d32 *"] == {0: pytest.approx(0.9), 1: pytest.approx(0.9)}
    assert sides["mqar transnormer_t2 d32 *"] == {0: pytest.approx(0.6), 1: pytest.approx(0.7)}
