"""``./reproduce.sh --dry-run`` says how many runs each sweep plans and about how long they take, and where that
figure comes from (completed runs on this machine, else the documented seconds per update)."""
from __future__ import annotations

import json

import attention_zoo
from attention_zoo import registry
from harness.compose import compose
from harness.config import config_hash, resolved_dict, validate
from harness.execute import run_dir_for
from harness.report.layout import Layout
from harness.reproduce import cli as reproduce
from harness.reproduce.estimate import SECONDS_PER_RUN, SECONDS_PER_UPDATE, duration, estimate_sweep, sweep_axes
from harness.reproduce.plan import Context, plan_sweep


def test_table4_at_cpu_scale_says_it_plans_hours(tmp_path, capsys):
    """Before: the dry run printed the sweep command alone, not that it means 48 runs (16 backends x 3 seeds) of
    800 updates."""
    assert reproduce.main(["table4", "--dry-run", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    hours = duration(48 * (800 * SECONDS_PER_UPDATE[("lm", "cpu")] + SECONDS_PER_RUN))
    assert hours.endswith(" h") and f"48 runs: 48 to train, about {hours} one after another" in out
    assert "lm: 800 updates x 0.3 s + 1 s, the documented figure for lm at scale cpu (docs/reproduce.md)" in out
    assert f"table4        planned: 48 runs, 48 to train, about {hours}" in out
    assert out.rstrip().splitlines()[-1].startswith(f"planned: 48 runs to train, about {hours}")
    assert not (tmp_path / "runs").exists()


def test_an_extra_backend_adds_its_runs(tmp_path, capsys):
    from harness.config import register_attention_configs

    attention_zoo.register("extra_row", registry.get_spec("elu").builder, linear_causal=True,
                           linear_bidirectional=True)
    register_attention_configs()  # what register_configs does for an installed plugin
    try:
        assert reproduce.main(["table4", "--dry-run", "--extra-backends", "extra_row", "--results",
                               str(tmp_path)]) == 0
    finally:
        registry.unregister("extra_row")
    assert f"51 runs: 51 to train, about {duration(51 * (800 * 0.3 + SECONDS_PER_RUN))}" in capsys.readouterr().out


def test_completed_runs_are_skipped_and_give_the_figure(tmp_path, capsys):
    """A completed run is not counted again, and the runs of this machine replace the documented figure."""
    layout = Layout(tmp_path)
    overrides = ["experiment=table4", "scale=smoke", "attention=vanilla", "seed=0", f"run.root={layout.runs}",
                 "logger=none", "trainer.progress=false"]
    cfg = compose(overrides)
    digest = config_hash(resolved_dict(cfg))
    folder = run_dir_for(validate(cfg), digest)
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps({
        "status": "completed", "config_hash": digest, "wall_seconds": 10.0, "config": resolved_dict(cfg)}))
    assert reproduce.main(["table4", "--scale", "smoke", "--dry-run", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    steps = cfg.trainer.max_steps  # the record's 10 s over its updates: this machine's figure
    expected = f"16 runs (1 already completed): 15 to train, about {duration(15 * (steps * 10.0 / steps + 1.0))}"
    assert expected in out, out
    assert f"the median of 1 completed lm runs under {layout.runs}" in out


def test_the_command_lines_sweep_replaces_the_files(tmp_path):
    ctx = Context("smoke", 2, "local", Layout(tmp_path), overrides=["attention=vanilla,elu"])
    argv, cfg = plan_sweep("table4", ctx)
    axes = sweep_axes(argv, cfg)
    assert axes["attention"] == ("attention", ["vanilla", "elu"]) and axes["seed"] == ("seed", ["0", "1"])
    estimate = estimate_sweep(argv, cfg, ctx)
    assert (estimate.runs, estimate.new) == (4, 4)
    assert estimate_sweep(argv, cfg, ctx).shared == 4  # planned again by a later table: not counted


def test_a_resumed_runs_old_record_counts_its_training_not_its_last_segment(tmp_path):
    """A record written before resumed runs summed their wall time states the test-only last segment's 1 s;
    its 10 s of training and 2 s of evaluation are the floor the estimate takes."""
    from harness.reproduce.estimate import seconds_per_update

    folder = tmp_path / "lm" / "vanilla" / "cpu" / "seed0-abc"
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps({
        "status": "completed", "wall_seconds": 1.0, "train_seconds": 10.0, "eval_seconds": 2.0, "segments": 2,
        "config": {"trainer": {"max_steps": 4}}}))
    figure, source = seconds_per_update("lm", "cpu", tmp_path)
    assert figure == 3.0 and "the median of 1 completed lm runs" in source
