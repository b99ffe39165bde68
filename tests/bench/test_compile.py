"""The compile benchmark's bookkeeping: steady speed from the metrics log, per-repeat ratios, compile cost."""
import json

import pytest

from harness.bench.compile import markdown, run_command, steady_speed, summary


def test_steady_speed_skips_the_first_window(tmp_path):
    log = tmp_path / "metrics.jsonl"
    entries = [{"step": 20, "train/steps_per_sec": 1.0}, {"step": 20, "valid/loss": 3.0},
               {"step": 40, "train/steps_per_sec": 4.0}, {"step": 60, "train/steps_per_sec": 6.0}]
    log.write_text("\n".join(json.dumps(e) for e in entries))
    assert steady_speed(log) == 5.0


def row(repeat, compiled, wall, speed, ppl=10.0, status="completed"):
    return {"repeat": repeat, "backend": "b", "compile": compiled, "status": status, "wall_s": wall,
            "steady_steps_per_s": speed, "test_perplexity": ppl}


def test_summary_gives_the_compile_cost_and_the_run_length_from_which_it_pays():
    # 100 steps: eager 1 s/step, compiled 0.5 s/step plus a fixed cost of 30 s
    rows = [row(0, False, 100.0, 1.0), row(0, True, 80.0, 2.0), row(1, True, 80.0, 2.0), row(1, False, 100.0, 1.0)]
    (result,) = summary(rows, steps=100)
    assert result["wall_ratio"] == pytest.approx(0.8) and result["repeats"] == 2
    assert result["steady_speedup"] == pytest.approx(2.0)
    assert result["compile_cost_s"] == pytest.approx(30.0)
    assert result["pays_from_steps"] == pytest.approx(60.0)


def test_a_compiled_run_that_is_slower_per_step_never_pays_and_failures_are_listed():
    rows = [row(0, False, 50.0, 2.0), row(0, True, 90.0, 1.5), row(1, False, 0.0, None, status="failed")]
    (result,) = summary(rows, steps=100)
    assert result["pays_from_steps"] is None and result["repeats"] == 1
    env = {"command": "c", "cpu": "x", "logical_cpus": 2, "torch_threads": 2, "load_average_start": [0.0]}
    text = markdown(rows, env, steps=100, scale="cpu")
    assert "| never |" in text and "Failed runs: b compile=False: failed" in text


def test_the_run_command_composes_to_a_valid_training_config(tmp_path):
    from harness.compose import compose
    from harness.config import validate

    command = run_command("vanilla", True, 7, "smoke", tmp_path)
    assert command[1:3] == ["-m", "harness.run"]
    cfg = validate(compose(command[3:]))
    assert cfg.trainer.compile is True and cfg.trainer.max_steps == 7 and cfg.attention.name == "vanilla"
