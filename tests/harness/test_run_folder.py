"""The run folder under attack: files that vanish mid-run, a deleted lock, a full disk, read-only storage, Hydra's
folders, orphaned digests. Nothing is marked completed over lost data; every repair is reported."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness import hydra_dirs
from harness.metrics_log import MetricsLogger
from harness.run_folder import LOCK_FILE, Repairs, RunLock, RunLockedError, remove_stale_temporaries
from tests.harness.crash_runs import REPO, assert_as_uninterrupted, metric_lines, overrides, paused_writer, resume
from zoo_io import faults
from zoo_io.atomic import DiskFullError


def _after_lines(monkeypatch, n: int, action) -> None:
    """Call ``action(run_dir)`` once, right after the ``n``-th metric line of the run is written."""
    original, count = MetricsLogger.log, {"lines": 0}

    def log(self, metrics, step):
        original(self, metrics, step)
        count["lines"] += 1
        if count["lines"] == n:
            action(self.path.parent)

    monkeypatch.setattr(MetricsLogger, "log", log)


def _repairs(record: dict) -> str:
    return " | ".join(f"{r['what']}: {r['action']}" for r in record["repairs"])


def test_metrics_file_deleted_mid_run_is_restored_before_completion(tmp_path, reference, monkeypatch):
    _after_lines(monkeypatch, 5, lambda run_dir: (run_dir / "metrics.jsonl").unlink())
    record = resume(tmp_path)
    assert_as_uninterrupted(record, reference)  # all 13 lines, not the 8 written after the deletion
    assert "metrics.jsonl changed under the run (holds 8 line(s), the run logged 13)" in _repairs(record)


def test_run_folder_deleted_mid_run_ends_with_every_line_and_says_so(tmp_path, reference, monkeypatch):
    _after_lines(monkeypatch, 5, lambda run_dir: shutil.rmtree(run_dir))
    record = resume(tmp_path)
    run_dir = Path(record["run_dir"])
    assert record["status"] == "completed" and json.loads((run_dir / "record.json").read_text())["status"]
    assert metric_lines(run_dir) == reference[1]
    repairs = _repairs(record)
    assert "metrics.jsonl changed under the run" in repairs and ".lock was deleted" in repairs, repairs


def test_lock_file_deleted_mid_run_is_locked_again(tmp_path, reference, monkeypatch):
    _after_lines(monkeypatch, 3, lambda run_dir: (run_dir / LOCK_FILE).unlink())
    record = resume(tmp_path)
    assert_as_uninterrupted(record, reference)
    assert "re-created and locked again" in _repairs(record)
    with pytest.raises(RunLockedError):  # and the new file is really held: a second lock fails meanwhile
        with RunLock(record["run_dir"]):
            with RunLock(record["run_dir"]):
                pass


def test_lock_file_deleted_under_a_live_writer_does_not_let_a_second_in(tmp_path, reference):
    first = paused_writer(tmp_path)  # holds the run, paused mid-training
    try:
        next(tmp_path.rglob(LOCK_FILE)).unlink()
        with pytest.raises(RunLockedError, match=rf"process {first.pid} on .*its \.lock was deleted"):
            resume(tmp_path)
    finally:
        first.send_signal(signal.SIGCONT)
    first.communicate(timeout=300)
    assert first.returncode == 0
    run_dir = next(tmp_path.rglob("record.json")).parent
    assert metric_lines(run_dir) == reference[1]  # one writer: no duplicated lines


def test_a_lock_taken_over_by_another_process_stops_this_one(tmp_path):
    run_dir = tmp_path / "run"
    lock = RunLock(run_dir)
    lock.acquire()
    (run_dir / LOCK_FILE).unlink()
    with RunLock(run_dir):  # another process locks the new file first
        with pytest.raises(RunLockedError, match="being written by"):
            lock.verify()
    lock.release()


def test_full_disk_fails_the_run_naming_the_file_and_records_it(tmp_path, monkeypatch):
    monkeypatch.setenv(faults.ENV, "replace:step_*.pt@2")
    monkeypatch.setenv(faults.SIGNAL_ENV, "ENOSPC")
    monkeypatch.setattr(faults, "_hits", {})
    with pytest.raises(DiskFullError, match=r"no space left on device while writing .*step_00000010\.pt"):
        resume(tmp_path)
    record = json.loads(next(tmp_path.rglob("record.json")).read_text())
    assert record["status"] == "failed" and "no space left on device while writing" in record["reason"]
    assert not list(tmp_path.rglob(".space-reserve"))


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("a real full disk needs permission to mount a small tmpfs (root); the injected one runs always")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_real_full_disk_fails_clearly_and_the_record_says_failed(small_tmpfs, tmp_path):
    root = small_tmpfs / "runs"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    env.pop(faults.ENV, None)
    command = [sys.executable, "-m", "harness.run", *overrides(root), "trainer.keep_checkpoints=100",
               "trainer.max_steps=400", "trainer.checkpoint_every=1", f"hydra.run.dir={tmp_path / 'hydra'}"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "no space left on device while writing" in done.stderr and str(root) in done.stderr, done.stderr[-3000:]
    assert "PytorchStreamWriter" not in done.stderr and "unexpected pos" not in done.stderr
    record = json.loads(next(root.rglob("record.json")).read_text())
    assert record["status"] == "failed" and "no space left on device" in record["reason"]


def _read_only(folder: Path):
    """Make ``folder`` read-only for this process: a read-only bind mount as root, permissions otherwise."""
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(folder)], check=True)
        return lambda: subprocess.run(["chmod", "-R", "u+w", str(folder)], check=True)
    for command in (["mount", "--bind", str(folder), str(folder)], ["mount", "-o", "remount,ro,bind", str(folder)]):
        if subprocess.run(command, capture_output=True).returncode != 0:
            subprocess.run(["umount", str(folder)], capture_output=True)
            pytest.skip("read-only storage needs a read-only bind mount as root (or a non-root user)")
    return lambda: subprocess.run(["umount", str(folder)], check=True)


def test_a_completed_run_on_read_only_storage_is_skipped(tmp_path, reference):
    record = resume(tmp_path)
    root = Path(record["run_dir"]).parents[3]
    before = sorted(str(p) for p in root.rglob("*"))
    undo = _read_only(root)
    try:
        env = {**os.environ, "WANDB_MODE": "disabled"}
        env.pop(faults.ENV, None)
        done = subprocess.run([sys.executable, "-m", "harness.run", *overrides(tmp_path)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
    finally:
        undo()
    assert done.returncode == 0, done.stderr[-3000:]
    assert "skipped (already completed)" in done.stdout
    assert sorted(str(p) for p in root.rglob("*")) == before


def test_hydra_folders_are_unique_per_invocation_and_fall_back_when_read_only(tmp_path, monkeypatch):
    first, second = hydra_dirs.hydra_dir(str(tmp_path)), hydra_dirs.hydra_dir(str(tmp_path))
    assert first != second and Path(first).parent == tmp_path / "_hydra"  # same second, two folders
    assert Path(hydra_dirs.hydra_dir(str(tmp_path / "new" / "root"), "multirun")).name.startswith("multirun_")
    monkeypatch.setattr(hydra_dirs, "writable", lambda root: False)
    assert not hydra_dirs.hydra_dir(str(tmp_path)).startswith(str(tmp_path))
    with pytest.raises(ValueError, match="is not one of"):
        hydra_dirs.hydra_dir(str(tmp_path), "sweep")


def test_orphaned_checkpoint_digests_are_removed_and_reported(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "step_00000005.pt.sha256").write_text("0" * 64 + "\n")  # its checkpoint was deleted first
    (checkpoints / "step_00000010.pt").write_bytes(b"x")
    (checkpoints / "step_00000010.pt.sha256").write_text("0" * 64 + "\n")
    repairs = Repairs()
    removed = remove_stale_temporaries(tmp_path, repairs)
    assert [p.name for p in removed] == ["step_00000005.pt.sha256"]
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step_00000010.pt", "step_00000010.pt.sha256"]
    assert repairs.items and "step_00000005.pt.sha256" in str(repairs.items[0]["files"])
