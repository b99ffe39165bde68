"""Crash consistency: a run SIGKILLed at a chosen point (``zoo_io.faults``) and started again ends exactly like an
uninterrupted run: the same metrics, the same ``metrics.jsonl`` line for line, nothing left behind, and every
repair listed in the record. Damaged files are detected, set aside and reported; one process writes a run."""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from harness.run_folder import RunLock, RunLockedError
from tests.harness.crash_runs import (
    LINES,
    assert_as_uninterrupted,
    child,
    killed_at,
    metric_lines,
    paused_writer,
    resume,
)

# kill point -> where the interrupted run stops: the newest checkpoint a resume finds
KILL_POINTS = {
    "replace:step_*.pt@3": "while the 3rd checkpoint is written (temporary complete, not yet renamed)",
    "digest:step_*.pt@3": "after the 3rd checkpoint is renamed, before its sha256 is written",
    "replace:best.pt@2": "while the 2nd best checkpoint is written",
    "digest:best.pt@2": "after the 2nd best checkpoint is renamed, before its sha256",
    "replace:record.json@2": "while the record is rewritten (after the data is described)",
    "logged:train@5": "after a train line, between checkpoints",
    "evaluate:valid@6": "during the 2nd validation (its 2nd batch)",
    "replace:step_00000040.pt": "while the final checkpoint is written",
    "evaluate:test": "during the test evaluation",
    "logged:test": "after the test line is logged, before the completed record (once a duplicate line)",
    "replace:record.json@3": "while the completed record is written",
}


@pytest.mark.parametrize("fault", list(KILL_POINTS))
def test_sigkill_at_a_kill_point_then_resume_is_an_uninterrupted_run(tmp_path, reference, fault):
    run_dir = killed_at(tmp_path, fault)
    assert json.loads((run_dir / "record.json").read_text())["status"] == "running"  # nothing claimed
    record = resume(tmp_path)
    assert_as_uninterrupted(record, reference)
    what = [r["what"] for r in record["repairs"]]
    before_training = fault == "replace:record.json@2"  # no checkpoint yet: the restart is a fresh start
    assert record["segments"] == (1 if before_training else 2)
    assert any(w.startswith("resumed at update") for w in what) != before_training, what
    if fault.startswith("replace:"):  # the temporary the kill left is reported
        assert any("stale temporary" in w for w in what), what
    if fault.startswith("digest:step"):
        assert any("unusable" in w for w in what) and list((run_dir / "checkpoints" / "damaged").iterdir())


def test_two_kills_in_a_row_and_one_during_the_resume_repair(tmp_path, reference):
    killed_at(tmp_path, "logged:valid@3")
    killed_at(tmp_path, "replace:metrics.jsonl")  # the resume's rewrite of the metrics file is interrupted
    killed_at(tmp_path, "logged:train@2")
    record = resume(tmp_path)
    assert_as_uninterrupted(record, reference)
    assert record["segments"] == 3  # the second process died before it trained


def test_resumed_record_sums_speed_and_wall_time_over_segments(tmp_path, reference):
    killed_at(tmp_path, "logged:test")  # everything trained; the resume only tests
    record = resume(tmp_path)
    expected, _ = reference
    assert record["segments"] == 2 and record["resumed_from"] == 40
    assert record["train_seconds"] > 0 and record["throughput"]["steps_per_sec"] > 0  # not the last segment's 0
    assert record["train_seconds"] > 0.2 * expected["train_seconds"]
    assert record["peak_memory_mb"] > 0
    # the wall time covers every segment (the first one's, to its last checkpoint), not the test-only resume's
    assert record["wall_seconds"] >= record["train_seconds"] + record["eval_seconds"]


def test_truncated_record_of_a_completed_run_is_moved_aside_and_not_duplicated(tmp_path, reference):
    record = resume(tmp_path)  # a completed run
    run_dir = Path(record["run_dir"])
    text = (run_dir / "record.json").read_text()
    (run_dir / "record.json").write_text(text[: len(text) // 2])
    again = resume(tmp_path)
    assert_as_uninterrupted(again, reference)  # the test line is not logged twice
    assert len(metric_lines(run_dir)) == LINES
    assert any("record.json is unreadable" in r["what"] for r in again["repairs"])
    (damaged,) = [p for p in (run_dir / "damaged").iterdir() if not p.name.endswith(".reason.txt")]
    assert damaged.read_text() == text[: len(text) // 2]


def test_two_newest_checkpoints_damaged_restart_keeps_the_new_good_ones(tmp_path, reference):
    run_dir = killed_at(tmp_path, "replace:step_*.pt@5")  # steps 15 and 20 on disk
    checkpoints = run_dir / "checkpoints"
    for step in (15, 20):
        path = checkpoints / f"step_{step:08d}.pt"
        path.write_bytes(path.read_bytes()[:1000])
    killed_at(tmp_path, "replace:step_*.pt@3")  # starts afresh, writes 5 and 10, killed while writing 15
    assert sorted(p.name for p in checkpoints.glob("step_*.pt")) == ["step_00000005.pt", "step_00000010.pt"]
    assert len(list((checkpoints / "damaged").glob("step_????????.pt.2*[0-9]"))) == 2
    record = resume(tmp_path)
    assert_as_uninterrupted(record, reference)
    assert record["resumed_from"] == 10
    reasons = [r["what"] for r in record["repairs"]]
    assert sum("unusable" in w for w in reasons) == 2, reasons


@pytest.mark.parametrize("damage", ["middle_line", "deleted", "torn_tail"])
def test_damaged_metrics_file_is_restored_from_the_checkpoint_and_reported(tmp_path, reference, damage):
    run_dir = killed_at(tmp_path, "logged:train@6")  # after step 30's train line; newest checkpoint: 25 (7 lines)
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    if damage == "middle_line":
        lines[3] = lines[3][:10] + "\n"
        path.write_text("".join(lines))
    elif damage == "deleted":
        path.unlink()
    else:
        path.write_text("".join(lines) + lines[0][:15])
    record = resume(tmp_path)
    assert_as_uninterrupted(record, reference)
    what = " | ".join(r["what"] for r in record["repairs"])
    if damage == "middle_line":
        assert "damaged or missing" in what and [r for r in record["repairs"] if r.get("lines") == [4]]
    elif damage == "deleted":
        assert "metrics.jsonl is missing" in what
    else:
        assert "1 torn line(s) of metrics.jsonl" in what, what


def test_second_writer_refuses_naming_the_first_and_a_sweep_reports_it_running(tmp_path, reference):
    first = paused_writer(tmp_path)  # holds the run, paused mid-training
    try:
        second = child(tmp_path)
        output, _ = second.communicate(timeout=300)
        assert second.returncode != 0 and f"process {first.pid} on" in output, output[-2000:]
        sweep = child(tmp_path, multirun=True)
        output, _ = sweep.communicate(timeout=300)
        assert sweep.returncode == 0 and "running elsewhere" in output and f"process {first.pid}" in output
        with pytest.raises(RunLockedError, match=f"process {first.pid}"):
            resume(tmp_path)
        assert json.loads(next(tmp_path.rglob("record.json")).read_text())["status"] == "running"
    finally:
        first.send_signal(signal.SIGCONT)
    first.communicate(timeout=300)
    assert first.returncode == 0
    run_dir = Path(next(tmp_path.rglob("record.json")).parent)
    assert metric_lines(run_dir) == reference[1]  # 13 lines, one writer
    assert json.loads((run_dir / "record.json").read_text())["metrics"] == reference[0]["metrics"]


def test_a_killed_writer_leaves_no_stale_lock(tmp_path):
    process = child(tmp_path, "logged:train@1", signal_name="SIGSTOP")
    deadline = time.monotonic() + 120
    while not list(tmp_path.rglob("metrics.jsonl")):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    run_dir = next(tmp_path.rglob(".lock")).parent
    with pytest.raises(RunLockedError, match=f"process {process.pid}"):
        RunLock(run_dir).acquire()
    process.kill()
    process.communicate(timeout=60)
    with RunLock(run_dir):  # the kernel released the dead process's lock
        pass
