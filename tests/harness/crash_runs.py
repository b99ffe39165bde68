"""A small crash-test run shared by the crash, stop and run-folder tests: its overrides, a child process that
runs it (killed, paused or signalled at a fault point), an in-process resume, and what an uninterrupted run
leaves (the ``reference`` fixture in conftest.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from harness.execute import execute
from tests.harness.conftest import SMOKE, compose_config

REPO = Path(__file__).resolve().parents[2]
# 40 updates; a checkpoint every 5 (keep 2), a validation every 10 (4 batches), a train line every 5:
# 8 train lines + 4 validation lines + 1 test line. Dropout: the random state must survive a resume too.
RUN = ("trainer.max_steps=40", "trainer.checkpoint_every=5", "trainer.eval_every=10", "trainer.log_every=5",
       "trainer.keep_checkpoints=2", "model.dropout=0.1")
LINES = 13
VOLATILE = ("time", "train/steps_per_sec", "train/tokens_per_sec")  # wall-clock figures differ between runs


def metric_lines(run_dir: Path) -> list[dict]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in x.items() if k not in VOLATILE} for x in lines]


def overrides(root: Path) -> list[str]:
    return [*SMOKE, f"run.root={root}", *RUN]


def child(root: Path, fault: str | None = None, signal_name: str | None = None, multirun: bool = False):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    env.pop("ATTENTION_ZOO_FAULT", None)
    if fault:
        env["ATTENTION_ZOO_FAULT"] = fault
    if signal_name:
        env["ATTENTION_ZOO_FAULT_SIGNAL"] = signal_name
    command = [sys.executable, "-m", "harness.run", *(["-m"] if multirun else []), *overrides(root)]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def killed_at(root: Path, fault: str) -> Path:
    """Run in a child process that SIGKILLs itself at ``fault``; the run folder it leaves."""
    process = child(root, fault)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL, f"the fault point {fault} was never reached:\n{output[-2000:]}"
    (run_dir,) = [p.parent for p in root.rglob(".lock")]
    return run_dir


def resume(root: Path) -> dict:
    return execute(compose_config(*overrides(root)))


def assert_as_uninterrupted(record: dict, reference) -> Path:
    expected, expected_lines = reference
    run_dir = Path(record["run_dir"])
    assert record["status"] == "completed" and record["config_hash"] == expected["config_hash"]
    assert record["metrics"] == expected["metrics"]  # same weights, data order and dropout: exact
    assert metric_lines(run_dir) == expected_lines  # no line repeated, none lost
    assert not list(run_dir.rglob(".*.tmp")), "temporaries of interrupted writes are cleaned up"
    checkpoints = run_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("step_*.pt")) == ["step_00000035.pt", "step_00000040.pt"]
    return run_dir


def paused_writer(root: Path) -> subprocess.Popen:
    """A child that holds the run folder, paused (SIGSTOP) at its 2nd validation line: a live writer."""
    process = child(root, "logged:valid@2", signal_name="SIGSTOP")
    deadline = time.monotonic() + 120
    while psutil.Process(process.pid).status() != psutil.STATUS_STOPPED:
        assert time.monotonic() < deadline and process.poll() is None, "the writer never reached its pause"
        time.sleep(0.05)
    return process
