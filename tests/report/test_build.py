"""Tables from synthetic run records: paper rows and columns, seeds, failed and missing cells, variants."""
from __future__ import annotations

import math

import numpy as np
import pytest

from harness.report.build import FAILED, MISSING, OK, RUNNING, build_run_table, long_frame
from harness.report.paper import PAPER_DIR
from harness.report.records import placed_records
from harness.report.render import table_markdown
from harness.report.specs import run_tables
from tests.report.conftest import write_run

T2 = "attention=transnormer_t2"


def build(name, runs, scale="smoke"):
    return build_run_table(run_tables()[name], placed_records(runs), scale, PAPER_DIR)


def cells(table, column):
    return {row.label: row.cells[column] for row in table.rows}


def test_table4_seeds_failed_missing_and_paper_values(tmp_path):
    write_run(tmp_path, "attention=vanilla", "seed=0", valid=30.0, test=33.0)
    write_run(tmp_path, "attention=vanilla", "seed=1", valid=32.0, test=35.0)
    write_run(tmp_path, "attention=elu", status="failed", reason="NonFiniteLossError: the training loss is nan")
    write_run(tmp_path, "attention=performer", status="running")
    write_run(tmp_path, "attention=flash", status="interrupted", reason="SIGTERM received: checkpointed at 7")
    write_run(tmp_path, T2, valid=31.5, test=34.0, params=2_500_000)
    table = build("table4", tmp_path)

    assert [row.label for row in table.rows][:2] == ["Vanilla", "LS"]  # the paper's rows, in its order
    valid = cells(table, "ppl_val")
    vanilla = valid["Vanilla"]
    assert vanilla.status == OK and vanilla.stats.n == 2
    assert vanilla.stats.mean == pytest.approx(31.0) and vanilla.stats.std == pytest.approx(math.sqrt(2))
    assert vanilla.paper == pytest.approx(29.63) and vanilla.diff == pytest.approx(31.0 - 29.63)
    assert cells(table, "ppl_test")["Vanilla"].stats.mean == pytest.approx(34.0)
    assert valid["1+elu"].status == FAILED and "NonFiniteLossError" in valid["1+elu"].reason
    assert valid["Performer"].status == RUNNING
    assert valid["FLASH"].status == RUNNING and valid["FLASH"].reason.startswith("interrupted: SIGTERM")
    assert valid["LS"].status == MISSING and valid["LS"].paper == pytest.approx(32.37)
    t2 = next(row for row in table.rows if row.key == "transnormer_t2")
    assert t2.params_m == pytest.approx(2.5) and t2.paper_params_m == pytest.approx(155.99)

    # ours orders Vanilla < T2 as the paper does not (29.63 > 29.57): tau = -1 over these two rows
    assert table.agreement["ppl_val"].n == 2 and table.agreement["ppl_val"].tau == pytest.approx(-1.0)
    counts = table.counts()
    assert counts == {OK: 4, FAILED: 2, RUNNING: 4, MISSING: 6}

    markdown = table_markdown(table, [], "table4.csv")
    assert "failed: NonFiniteLossError: the training loss is nan" in markdown
    assert "| LS | missing: not run | 32.37 |" in markdown
    assert "`./reproduce.sh table4 --scale smoke` runs it" in markdown
    assert "31 ± 1.4 (2 seeds)" in markdown
    frame = long_frame(table)
    assert len(frame) == 16 and set(frame["status"]) == {OK, FAILED, RUNNING, MISSING}
    row = frame[(frame["row_key"] == "vanilla") & (frame["column"] == "ppl_val")].iloc[0]
    assert row["n_seeds"] == 2 and row["diff"] == pytest.approx(1.37) and row["paper_source"] == "paper"


def test_a_failed_seed_beside_completed_ones_is_flagged(tmp_path):
    write_run(tmp_path, "attention=vanilla", "seed=0", valid=30.0)
    write_run(tmp_path, "attention=vanilla", "seed=1", status="failed", reason="OOM")
    cell = cells(build("table4", tmp_path), "ppl_val")["Vanilla"]
    assert cell.status == OK and cell.stats.n == 1 and cell.reason.startswith("1 of 2 seeds failed")


def test_rows_come_from_the_recorded_variant_without_composing_again(tmp_path, monkeypatch):
    write_run(tmp_path, T2, valid=20.0, variant={})
    write_run(tmp_path, T2, "attention.block_size=32", valid=21.0, variant={"attention.block_size": 32})

    def no_composing(*args, **kwargs):
        raise AssertionError("the report composed conf/ again")

    monkeypatch.setattr("harness.compose.compose", no_composing)
    monkeypatch.setattr("hydra.compose", no_composing)
    ppl = cells(build("table11", tmp_path), "ppl")
    assert (ppl["block 32"].stats.mean, ppl["block 64"].stats.mean) == (21.0, 20.0)


def test_runs_map_to_ablation_rows_by_their_settings(tmp_path):
    write_run(tmp_path, T2, valid=20.0)  # the preset: Table 4's T2, block 64, stacked, Diag/Norm L/2, GLU
    write_run(tmp_path, T2, "attention.block_size=32", valid=21.0)
    write_run(tmp_path, T2, "model.channel_mixer=ffn", valid=22.0)
    write_run(tmp_path, T2, "attention.layer_plan=split:0", valid=23.0)  # smoke: 2 layers
    write_run(tmp_path, T2, "attention.layer_plan=split:2", valid=24.0)
    write_run(tmp_path, T2, "attention.layer_plan=reverse_split:1", valid=25.0)
    write_run(tmp_path, T2, "attention.layer_plan=alternate", valid=26.0)

    assert cells(build("table11", tmp_path), "ppl")["block 32"].stats.mean == 21.0
    assert cells(build("table11", tmp_path), "ppl")["block 64"].stats.mean == 20.0  # not the FFN run
    assert {k: c.stats.mean for k, c in cells(build("table10", tmp_path), "ppl").items()} == \
        {"FFN": 22.0, "GLU": 20.0}
    split = cells(build("table8", tmp_path), "ppl")
    assert {k: c.stats.mean for k, c in split.items()} == {"Norm only": 23.0, "Diag/Norm 6/6": 20.0, "Diag only": 24.0}
    order = cells(build("table9", tmp_path), "ppl")
    assert order["Norm early then Diag"].stats.mean == 25.0 and order["Diag early then Norm"].stats.mean == 20.0
    combos = cells(build("table12", tmp_path), "ppl")
    assert combos["alternating"].stats.mean == 26.0 and combos["stacked"].stats.mean == 20.0
    assert combos["parallel"].status == MISSING
    table4 = cells(build("table4", tmp_path), "ppl_val")
    assert table4["TransNormer T2"].stats.mean == 20.0  # the variants stay out of Table 4


def test_table1_table3_and_extra_rows(tmp_path):
    write_run(tmp_path, "+ablation/table1=elu_unscaled", valid=700.0)
    write_run(tmp_path, "+ablation/table1=norm_rmsnorm", valid=5.0)
    write_run(tmp_path, "attention=norm_attention", "attention.norm=rmsnorm", valid=99.0)  # with LRPE: not Table 1
    write_run(tmp_path, "+ablation/table3=elu_then_vanilla", valid=4.0)
    write_run(tmp_path, "+ablation/table3=elu_then_vanilla", "attention.layer_plan.split=0", valid=6.0)
    write_run(tmp_path, T2, "attention.block_size=16", valid=30.0)

    table1 = cells(build("table1", tmp_path), "ppl")
    assert table1["1+elu without scaling"].stats.mean == 700.0 and table1["NormAttention RMSNorm"].stats.mean == 5.0
    assert table1["1+elu with scaling"].status == MISSING
    table3 = build("table3", tmp_path)
    assert cells(table3, "ppl")["1+elu early + vanilla late"].stats.mean == 4.0
    assert [row.key for row in table3.rows][-1] == "elu->vanilla (0/2)"  # a split the paper did not run
    table11 = build("table11", tmp_path)
    assert [row.label for row in table11.rows] == ["block 16", "block 32", "block 64", "block 128", "block 256"]
    assert cells(table11, "ppl")["block 16"].stats.mean == 30.0 and cells(table11, "ppl")["block 16"].paper is None


def test_masked_lm_runs_are_preferred_for_ablations(tmp_path):
    write_run(tmp_path, T2, "attention.block_size=32", valid=21.0)
    assert build("table11", tmp_path).task == "lm"
    write_run(tmp_path, "task=mlm", T2, "attention.block_size=32", valid=3.0)
    table = build("table11", tmp_path)
    assert table.task == "mlm" and cells(table, "ppl")["block 32"].stats.mean == 3.0


def test_runs_with_other_training_settings_go_below_the_table(tmp_path):
    write_run(tmp_path, "attention=vanilla", "trainer.lr=0.001", "seed=0", valid=40.0, updated="2026-02-01T00:00:00")
    write_run(tmp_path, "attention=vanilla", "seed=0", valid=30.0)
    write_run(tmp_path, "attention=vanilla", "seed=1", valid=30.0)
    write_run(tmp_path, "attention=elu", "seed=0", valid=31.0)
    write_run(tmp_path, "attention=performer", "trainer.record_gradients=true", valid=32.0)  # observes, same run
    table = build("table4", tmp_path)
    assert cells(table, "ppl_val")["Performer"].stats.mean == 32.0
    cell = cells(table, "ppl_val")["Vanilla"]
    assert cell.stats.mean == 30.0 and cell.stats.n == 2 and cell.ignored_groups == 0
    [stray] = table.stray
    assert stray.label == "Vanilla" and stray.cells["ppl_val"].stats.mean == 40.0
    assert "trainer.lr=0.001" in stray.detail and "(the table: " in stray.detail
    markdown = table_markdown(table, [], "table4.csv")
    below = markdown.split("Runs with other settings than the rest of their column")[1]
    assert "| Vanilla |" in below and "40" in below


def test_other_scales_are_left_out(tmp_path):
    write_run(tmp_path, "attention=vanilla", valid=30.0)
    assert cells(build("table4", tmp_path, scale="cpu"), "ppl_val")["Vanilla"].status == MISSING


def test_split_rows_follow_the_share_of_diag_layers(tmp_path):
    for k, value in ((1, 21.0), (3, 23.0)):
        write_run(tmp_path, T2, f"attention.layer_plan=split:{k}", valid=value, scale="cpu")  # 4 layers
    table = build("table8", tmp_path, scale="cpu")
    assert [row.key for row in table.rows] == ["split:0", "split:1/4", "split:half", "split:3/4", "split:1"]
    assert [row.detail for row in table.rows if row.records] == ["Diag 1 + Norm 3", "Diag 3 + Norm 1"]
    assert [row.cells["ppl"].paper for row in table.rows] == [4.23, None, 3.82, None, 4.75]


def test_cells_hold_only_runs_with_the_training_settings_of_the_rest_of_the_column(tmp_path):
    for backend in ("vanilla", "elu", "performer"):
        write_run(tmp_path, f"attention={backend}", "trainer.max_steps=20", valid=30.0)
    for seed in (0, 1):  # more seeds, more recent, but trained longer than the rest of the column
        write_run(tmp_path, "attention=elu", "trainer.max_steps=40", f"seed={seed}", valid=20.0,
                  updated="2026-03-01T00:00:00")
    write_run(tmp_path, "attention=transnormer_t2", "trainer.max_steps=40", valid=25.0)
    table = build("table4", tmp_path)
    valid = cells(table, "ppl_val")
    assert valid["1+elu"].stats.mean == 30.0 and valid["1+elu"].stats.n == 1
    assert valid["TransNormer T2"].status == MISSING  # its only run trained longer: below the table, not in it
    assert "no run with the column's settings" in valid["TransNormer T2"].reason
    assert {row.label: row.cells["ppl_val"].stats.mean for row in table.stray} == {"1+elu": 20.0,
                                                                                  "TransNormer T2": 25.0}
    assert all("trainer.max_steps=40 (the table: 20)" in row.detail for row in table.stray)
    assert {row.cells["ppl_val"].stats.mean for row in table.rows if row.cells["ppl_val"].stats} == {30.0}


def test_majority_class_row_below_the_backends(tmp_path):
    per_split = {"splits": {"valid": {"majority_baseline": 0.49}, "test": {"majority_baseline": 0.5}}}  # LRA's
    for backend, value in (("vanilla", 0.6), ("transnormer_t2", 0.7)):
        write_run(tmp_path, "task=lra/text", f"attention={backend}", valid=value, data=per_split)
    write_run(tmp_path, "task=lra/listops", "attention=vanilla", valid=0.3, test=0.35,
              data={"majority_baseline": {"valid": 0.17, "test": 0.16}})  # GLUE's layout: {split: value}
    write_run(tmp_path, "task=lra/image", "attention=vanilla", valid=0.3)  # a task that records none
    table = build("table6", tmp_path)

    floor = table.baseline.cells
    assert floor["text"].stats.mean == pytest.approx(50.0) and floor["listops"].stats.mean == pytest.approx(16.0)
    assert floor["image"].status == MISSING and floor["avg"].status == MISSING
    assert all(row.key != "majority_class" for row in table.rows) and table.counts()[OK] == 4
    assert "| *majority class* | 50 / – | 16 / – | missing / – |" in table_markdown(table, [], "table6.csv")
    frame = long_frame(table)
    assert frame[frame["status"] == "baseline"]["ours_mean"].dropna().tolist() == pytest.approx([50.0, 16.0])
    assert build("table4", tmp_path).baseline is None  # perplexity tables have none


def test_the_average_column_is_per_seed_with_the_seeds_spread(tmp_path):
    """Table 6's AVG: seed s's mean over the five tasks, then the mean and spread over the seeds every task has
    (seed 2 ran one task only: not in the average)."""
    tasks = ("text", "listops", "retrieval", "pathfinder", "image")
    for seed, shift in ((0, 0.0), (1, 0.1)):
        for i, task in enumerate(tasks):
            write_run(tmp_path, f"task=lra/{task}", "attention=vanilla", f"seed={seed}", valid=0.5,
                      test=0.5 + 0.02 * i + shift)
    write_run(tmp_path, "task=lra/text", "attention=vanilla", "seed=2", valid=0.5, test=0.9)
    avg = cells(build("table6", tmp_path), "avg")["Transformer"]
    assert avg.stats.n == 2 and avg.stats.mean == pytest.approx(59.0)
    assert (avg.stats.low, avg.stats.high) == (pytest.approx(54.0), pytest.approx(64.0))
    assert avg.stats.std == pytest.approx(float(np.std([54.0, 64.0], ddof=1)))
