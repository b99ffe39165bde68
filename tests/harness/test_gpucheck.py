"""The GPU check (harness/gpucheck.py): without a GPU it skips cleanly; at smoke scale on the CPU the whole pipeline
runs, every step in its own process, into one report; a step past its share of the budget is killed with its
children and the rest goes on."""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import torch

from harness import gpucheck
from harness.gpucheck import Settings, Step, main, run_steps


def report(out: Path) -> dict:
    return json.loads((out / "gpucheck.json").read_text())


def test_without_a_gpu_it_skips_cleanly(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--out", str(tmp_path)]) == 0
    assert "skipped: no CUDA device" in capsys.readouterr().out
    found = report(tmp_path)
    assert (found["status"], found["reason"], found["steps"]) == ("skipped", "no CUDA device", [])
    assert "skipped: no CUDA device" in (tmp_path / "gpucheck.md").read_text()
    assert main(["--out", str(tmp_path), "--require-gpu"]) == 1


def test_cpu_smoke_runs_every_step_into_one_report(tmp_path):
    assert main(["--device", "cpu", "--smoke", "--out", str(tmp_path)]) == 0
    found = report(tmp_path)
    steps = {s["name"]: s for s in found["steps"]}
    assert list(steps) == [s.name for s in gpucheck.STEPS]
    assert all(s["status"] == "ok" and s["error"] is None and s["seconds"] > 0 for s in steps.values()), steps
    conformance = steps["conformance"]["figures"]
    assert conformance["backends"] == len(gpucheck.SMOKE_BACKENDS) and conformance["failed"] == []
    for name in ("lm_update", "mlm_update"):
        figures = steps[name]["figures"]
        assert figures["scale"] == "smoke" and figures["peak_memory_mib"] > 0 and math.isfinite(figures["loss"])
    assert steps["table7"]["figures"]["ok"] == steps["table7"]["figures"]["cells"] == 2
    assert steps["decode"]["figures"]["ok"] == 2
    assert (tmp_path / "table7" / "table7.md").is_file() and (tmp_path / "logs" / "lm_update.log").is_file()
    assert "| mlm_update | ok |" in (tmp_path / "gpucheck.md").read_text()


def test_a_step_past_its_limit_is_killed_with_its_children_and_the_rest_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(gpucheck, "REPORT_RESERVE_S", 0.0)
    monkeypatch.setattr(gpucheck, "MIN_STEP_S", 0.5)
    pid_file = tmp_path / "sleeper.pid"
    hang = ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"]
    steps = (
        Step("hang", 2, lambda s, limit, r: hang, lambda s, r: ({"partial": 1}, None)),
        Step("fails", 1, lambda s, limit, r: [sys.executable, "-c", "raise SystemExit('broken')"],
             lambda s, r: ({}, None)),
        Step("passes", 1, lambda s, limit, r: [sys.executable, "-c", "pass"], lambda s, r: ({"n": 1}, None)),
    )
    started = time.monotonic()
    results = run_steps(Settings("cpu", True, tmp_path), budget_s=4.0, steps=steps)
    assert time.monotonic() - started < 10
    assert [r.status for r in results] == ["timeout", "failed", "ok"]
    assert results[0].figures == {"partial": 1} and "ran past its" in results[0].error
    assert "broken" in results[1].error and results[2].figures == {"n": 1}
    assert not alive(int(pid_file.read_text()))  # the step's own child went with it


def test_a_spent_budget_starts_nothing(tmp_path):
    results = run_steps(Settings("cpu", True, tmp_path), budget_s=1.0)
    assert {r.status for r in results} == {"skipped"} and "no time left" in results[0].error
    assert not (tmp_path / "logs").exists()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")  # a zombie awaiting a reaper is dead too
    return not (status.is_file() and "State:\tZ" in status.read_text())
