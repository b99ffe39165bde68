"""Graceful stops (harness.stop, harness.sweep): a stop signal checkpoints at the next update boundary, marks the
record "interrupted", exits 75, and the resumed run equals an uninterrupted one; a sweep passes the signal to its
workers and leaves none behind; a sweep says what became of every cell and fails when a cell failed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness import stop
from harness.run_folder import RunLock
from harness.sweep import EXIT_CELLS_FAILED, SUMMARY_FILE
from tests.harness.crash_runs import REPO, assert_as_uninterrupted, child, metric_lines, resume

INTERRUPTED = stop.EXIT_INTERRUPTED


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT", "SIGUSR1"])
def test_a_stop_signal_checkpoints_marks_the_record_and_the_resume_is_exact(tmp_path, reference, signal_name):
    # update 7 lies between checkpoints (every 5) and between train lines (every 5): the window is saved too
    process = child(tmp_path, "update:7", signal_name=signal_name)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == INTERRUPTED, output[-2000:]
    (run_dir,) = [p.parent for p in tmp_path.rglob("record.json")]
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "interrupted"
    assert record["reason"].startswith(f"{signal_name} received: checkpointed at update 7 of 40"), record["reason"]
    assert (run_dir / "checkpoints" / "step_00000007.pt").is_file()
    assert len(metric_lines(run_dir)) == 1  # the train line of update 5; nothing lost, nothing extra
    resumed = resume(tmp_path)
    assert_as_uninterrupted(resumed, reference)
    assert resumed["resumed_from"] == 7 and resumed["segments"] == 2


def test_a_handler_installed_before_the_run_is_called_after_the_checkpoint(tmp_path):
    """submitit requeues a SLURM job from its own SIGUSR2 handler: it must run after the checkpoint exists."""
    marker = tmp_path / "requeued.json"
    script = f"""
import json, signal, sys
from pathlib import Path
def requeue(signum, frame):  # what submitit's handler does: requeue the job, then exit
    found = sorted(p.name for p in Path({str(tmp_path)!r}).rglob("step_*.pt"))
    Path({str(marker)!r}).write_text(json.dumps(found))
    sys.exit(-1)
signal.signal(signal.SIGUSR2, requeue)
import runpy
from tests.harness.crash_runs import overrides
sys.argv = ["harness.run", *overrides(Path({str(tmp_path)!r}))]
runpy.run_module("harness.run", run_name="__main__")  # as python -m harness.run
"""
    env = {**os.environ, "WANDB_MODE": "disabled", "ATTENTION_ZOO_FAULT": "update:7",
           "ATTENTION_ZOO_FAULT_SIGNAL": "SIGUSR2"}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 255, done.stderr[-2000:]  # the earlier handler's own exit
    assert "step_00000007.pt" in json.loads(marker.read_text())
    record = json.loads(next(tmp_path.rglob("record.json")).read_text())
    assert record["status"] == "interrupted" and record["reason"].startswith("SIGUSR2 received")


def test_every_signal_received_reaches_the_handler_it_replaced():
    """SIGTERM first, then submitit's SIGUSR2 while stopping: the requeue must still run after the checkpoint."""
    called = []
    previous = {n: signal.signal(n, lambda signum, frame: called.append(signum)) for n in (signal.SIGTERM,
                                                                                          signal.SIGUSR2)}
    try:
        with stop.handling_stop_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGUSR2)
            assert stop.requested() == "SIGTERM" and called == []  # only the flag, until the run is safe
        stop.run_previous_handlers()
        assert called == [signal.SIGTERM, signal.SIGUSR2]
    finally:
        stop.clear()
        for number, handler in previous.items():
            signal.signal(number, handler)


def _sweep(root: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    env.pop("ATTENTION_ZOO_FAULT", None)
    command = [sys.executable, "-m", "harness.run", "-m", "scale=smoke", "logger=none", "trainer.progress=false",
               f"run.root={root}", *extra]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _summary(root: Path) -> dict:
    (path,) = root.glob(f"_hydra/multirun_*/{SUMMARY_FILE}")
    return json.loads(path.read_text())


@pytest.mark.parametrize("cells, n_jobs", [
    (("model.d_model=32,64", "model.n_layers=2,4", "seed=1"), 2),  # unequal cells: one finishes its update later
    (("seed=1,2",), 3),  # an idle worker beside the busy ones
])
def test_sigterm_to_a_joblib_sweep_stops_its_workers_after_their_checkpoints(tmp_path, cells, n_jobs):
    sweep = _sweep(tmp_path, "trainer.max_steps=100000", "trainer.checkpoint_every=1000", "hydra/launcher=joblib",
                   f"hydra.launcher.n_jobs={n_jobs}", *cells)
    deadline = time.monotonic() + 240
    while len([p for p in tmp_path.rglob("metrics.jsonl") if p.read_text()]) < 2:  # two cells are training
        assert time.monotonic() < deadline and sweep.poll() is None, "the sweep's workers never trained"
        time.sleep(0.2)
    workers = psutil.Process(sweep.pid).children(recursive=True)
    sweep.send_signal(signal.SIGTERM)
    output, _ = sweep.communicate(timeout=300)
    assert sweep.returncode == INTERRUPTED, output[-3000:]
    _, alive = psutil.wait_procs(workers, timeout=20)  # an idle worker notices its parent's exit within seconds
    assert not [w for w in alive if w.is_running() and w.status() != psutil.STATUS_ZOMBIE], "orphaned workers"
    records = [json.loads(p.read_text()) for p in tmp_path.rglob("record.json")]
    assert sorted(r["status"] for r in records) == ["interrupted", "interrupted"], [r.get("reason") for r in records]
    for record in records:  # each stopped after a checkpoint of its own, not a periodic one
        step = int(record["reason"].split("checkpointed at update ")[1].split()[0])
        assert Path(record["run_dir"], "checkpoints", f"step_{step:08d}.pt").is_file()
        with RunLock(record["run_dir"]):  # nobody holds the run folders any more
            pass
    summary = _summary(tmp_path)
    planned = len(summary["cells"])
    assert summary["counts"] == {"interrupted": planned}, summary["counts"]  # the rest: "not started: stopped"
    assert f"{planned} interrupted" in output and "Traceback" not in output


def test_a_sweep_with_no_cell_running_below_it_stops_at_once(tmp_path):
    """A sweep whose cells run elsewhere (a cluster) or between two cells: Ctrl-C stops its process now."""
    script = ("import os, signal, sys, time\nfrom harness import sweep\n"
              "with sweep.stopping_workers():\n    os.kill(os.getpid(), signal.SIGINT)\n    time.sleep(30)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == INTERRUPTED, done.stderr[-2000:]


def test_a_sweep_with_failed_and_invalid_cells_says_so_and_exits_non_zero(tmp_path):
    sweep = _sweep(tmp_path, "trainer.lr=3e-3,1e9", "model.d_model=32,33")
    output, _ = sweep.communicate(timeout=600)
    assert sweep.returncode == EXIT_CELLS_FAILED, output[-3000:]
    summary = _summary(tmp_path)
    assert summary["counts"] == {"completed": 1, "failed": 1, "invalid": 2}
    cells = {tuple(c["overrides"][-2:]): c for c in summary["cells"]}
    invalid = cells[("trainer.lr=0.003", "model.d_model=33")]
    assert "d_model=33 must be divisible by n_heads" in invalid["reason"]
    assert json.loads((Path(invalid["folder"]) / "outcome.json").read_text())["status"] == "invalid"
    failed = cells[("trainer.lr=1000000000.0", "model.d_model=32")]
    assert "NonFiniteLossError" in failed["reason"] and Path(failed["run_dir"], "record.json").is_file()
    assert "1 completed, 1 failed, 2 invalid" in output
    again = _sweep(tmp_path, "trainer.lr=3e-3", "model.d_model=32")  # all cells done: exit 0, "skipped"
    output, _ = again.communicate(timeout=600)
    assert again.returncode == 0 and "1 skipped" in output, output[-2000:]
