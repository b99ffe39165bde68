"""Faults: a run killed with SIGKILL and started again ends exactly like an uninterrupted run (CPU, fixed
seed), also when its newest checkpoint was left damaged."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.execute import execute
from tests.harness.conftest import SMOKE, compose_config

REPO = Path(__file__).resolve().parents[2]
RUN = ("trainer.max_steps=60", "trainer.checkpoint_every=5", "trainer.eval_every=10", "trainer.log_every=5",
       "model.dropout=0.1")  # dropout: the random state must be restored too


def metric_lines(run_dir: Path) -> list[dict]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in x.items() if k not in ("time", "train/steps_per_sec", "train/tokens_per_sec")}
            for x in lines]


def start_and_kill(root: Path, env: dict, after_step: int) -> Path:
    """Start the run in a child process, SIGKILL it once the checkpoint of ``after_step`` is on disk."""
    command = [sys.executable, "-m", "harness.run", *SMOKE, f"run.root={root}", *RUN]
    child = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and child.poll() is None:
            done = list(root.rglob(f"step_{after_step:08d}.pt.sha256"))
            if done:
                os.kill(child.pid, signal.SIGKILL)
                child.wait()
                return done[0].parents[1]
            time.sleep(0.02)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    raise AssertionError(f"the child ended (code {child.returncode}) before writing checkpoint {after_step}")


def test_sigkill_then_restart_gives_the_uninterrupted_results(tmp_path, caplog):
    reference = execute(compose_config(*SMOKE, f"run.root={tmp_path / 'reference'}", *RUN))

    root = tmp_path / "killed"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    run_dir = start_and_kill(root, env, after_step=15)
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "running"  # killed mid-training, nothing claimed

    # the newest checkpoint is damaged (as if the machine died while it was written): fall back a step
    checkpoints = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    newest = checkpoints[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 3])
    with caplog.at_level(logging.INFO):
        resumed = execute(compose_config(*SMOKE, f"run.root={root}", *RUN))
    assert "unusable" in caplog.text and "falling back" in caplog.text
    assert resumed["status"] == "completed"
    assert 0 < resumed["resumed_from"] < int(newest.stem.split("_")[1])

    assert resumed["config_hash"] == reference["config_hash"]
    assert resumed["metrics"] == reference["metrics"]  # same weights, same data order, same dropout: exact
    assert metric_lines(run_dir) == metric_lines(Path(reference["run_dir"]))
