"""The compute plan: FLOPs counted on the meta device equal those counted on a real pass, memory that does not fit
is flagged with the setting that would fit, and the dry run prints the plan per sweep and in total."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from harness.compose import compose
from harness.config import validate
from harness.params import build_on_meta
from harness.reproduce import cli as reproduce
from harness.reproduce.compute import ComputeTotals, Hardware, RunCost, measure

SMOKE = ("scale=smoke",)


@pytest.mark.parametrize("backend", ["vanilla", "transnormer_t2"])
def test_meta_counts_equal_a_real_pass_and_scale_with_the_update(backend):
    cfg = validate(compose(["task=lm", f"attention={backend}", *SMOKE]))
    cost = measure(cfg, SMOKE)
    micro = cfg.trainer.micro_batch_size or cfg.trainer.global_batch_size
    per_update = cost.flops / cfg.trainer.max_steps / -(-cfg.trainer.global_batch_size // micro)
    model = build_on_meta("lm", backend, SMOKE).to_empty(device="cpu")  # the same model, real tensors
    with FlopCounterMode(display=False) as counter:
        model(torch.ones(micro, cfg.task.seq_len, dtype=torch.long)).float().sum().backward()
    # equal up to the attention kernel the CPU picks where the meta device has none to pick (0.1% for T2's blocks)
    assert per_update == pytest.approx(counter.get_total_flops(), rel=2e-3) and per_update > 0
    assert cost.peak_bytes > cost.activation_bytes_per_sequence * micro > 0 and cost.checkpoint_bytes > 0


def test_memory_that_does_not_fit_is_flagged_with_what_would():
    cost = RunCost(flops=1e12, peak_bytes=10e9, activation_bytes_per_sequence=1e9, checkpoint_bytes=1e9, micro_batch=8)
    totals = ComputeTotals()
    totals.add(cost, "lm vanilla", Hardware("A100", 0.5, memory_gb=6))
    assert totals.warnings == ["lm vanilla: peak 10.0 GB > 6 GB at micro-batch 8; fits with trainer.micro_batch_size=4"]
    totals.add(cost, "lm big", Hardware("A100", 0.5, memory_gb=1))
    assert "activation checkpointing" in totals.warnings[-1]
    assert totals.gpu_hours(Hardware("A100", 0.5)) == 2e12 / (312e12 * 0.5) / 3600


def test_the_dry_run_prints_the_compute_plan(tmp_path, capsys):
    plan = tmp_path / "plan.md"
    assert reproduce.main(["table4", "--scale", "smoke", "--dry-run", "--compute", "--gpu", "H100",
                           "--results", str(tmp_path), "--plan-md", str(plan), "--", "attention=vanilla,elu"]) == 0
    out = capsys.readouterr().out
    assert "compute: " in out and "total compute: " in out and "(2 of 2 runs counted)" in out and "H100" in out
    assert "| table4 | 2 | 2 |" in plan.read_text()


def test_the_plan_per_backend_is_written_for_the_reports_expected_results(tmp_path, capsys):
    import pandas as pd

    out = tmp_path / "plan.csv"
    assert reproduce.main(["table4", "--scale", "smoke", "--dry-run", "--compute", "--seeds", "2", "--results",
                           str(tmp_path), "--plan-csv", str(out), "--", "attention=vanilla,elu"]) == 0
    plan = pd.read_csv(out)
    assert list(plan["backend"]) == ["elu", "vanilla"] and set(plan["table"]) == {"table4"}
    assert (plan["runs"] == 2).all() and (plan["gpu_hours_per_run"] > 0).all()
    row = plan.iloc[1]
    assert row["gpu_hours_per_run"] == pytest.approx(row["flops_per_run"] / (312e12 * 0.4) / 3600)
    assert "a run)" in capsys.readouterr().out


def test_a_recall_run_is_counted_at_its_own_length():
    """MQAR's model (its small vocabulary, its input length from the task's settings) is built on the meta
    device, and its count equals a real pass's (a linear backend: softmax's fused kernel is counted differently on
    the meta device, which weighs at MQAR's short lengths)."""
    cfg = validate(compose(["task=recall/mqar", "attention=norm_attention", *SMOKE]))
    cost = measure(cfg, SMOKE)
    assert not cost.why and cost.flops > 0
    micro = cfg.trainer.micro_batch_size or cfg.trainer.global_batch_size
    length = cfg.task.params().input_len
    model = build_on_meta("recall/mqar", "norm_attention", SMOKE).to_empty(device="cpu")
    with FlopCounterMode(display=False) as counter:
        model(torch.ones(micro, length, dtype=torch.long)).float().sum().backward()
    per_update = cost.flops / cfg.trainer.max_steps / -(-cfg.trainer.global_batch_size // micro)
    assert per_update == pytest.approx(counter.get_total_flops(), rel=2e-3)
