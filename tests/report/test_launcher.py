"""Hydra's submitit launcher in local mode runs a smoke sweep: each run in its own process, records written."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.run_record import load_records
from tests.conftest import requires_extra

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_submitit_local_runs_a_smoke_sweep(tmp_path):
    requires_extra("slurm")
    command = [
        sys.executable, "-m", "harness.run", "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
        "scale=smoke", "logger=none", "trainer.progress=false", "attention=vanilla,elu", "trainer.max_steps=2",
        "trainer.eval_every=2", f"run.root={tmp_path / 'runs'}",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    records = load_records(tmp_path / "runs")
    assert sorted(r.backend for r in records) == ["elu", "vanilla"]
    assert all(r.status == "completed" and r.primary_value(0) > 1 for r in records)
    assert list((tmp_path / "runs" / "_hydra").glob("multirun_*/.submitit/*")), "submitit's job folders"
