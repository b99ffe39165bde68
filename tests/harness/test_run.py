"""One run end to end at smoke scale: record, metrics log, skip when completed, failures recorded."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.execute import execute
from harness.trainer import NonFiniteLossError
from tasks.lm import LanguageModelTask

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def completed(tmp_path_factory):
    """One completed smoke run, shared by the tests that only read its outputs."""
    from tests.harness.conftest import SMOKE, compose_config

    root = tmp_path_factory.mktemp("runs")
    return execute(compose_config(*SMOKE, f"run.root={root}")), root


def test_record_has_everything_a_report_needs(completed):
    record, _ = completed
    run_dir = Path(record["run_dir"])
    assert json.loads((run_dir / "record.json").read_text()) == record
    assert record["status"] == "completed" and len(record["config_hash"]) == 64
    assert record["variant"] == {}  # the backend as configured by default: the plain row of its table
    assert (record["task"], record["backend"], record["scale"], record["seed"]) == ("lm", "transnormer_t2", "smoke", 0)
    for split in ("valid", "test"):
        assert 1 < record["metrics"][f"{split}/perplexity"] < 1e4
        assert record["primary_metric"][split] == record["metrics"][f"{split}/perplexity"]
    assert record["primary_metric"]["mode"] == "min"
    assert record["throughput"]["steps_per_sec"] > 0 and record["throughput"]["tokens_per_sec"] > 0
    assert record["peak_memory_mb"] > 0 and record["parameters"]["total"] > record["parameters"]["non_embedding"]
    assert record["versions"]["torch"] == torch.__version__ and record["host"]["hostname"]
    assert "commit" in (record["git"] or {"commit": None})
    assert record["config"]["trainer"]["max_steps"] == 20 and record["wall_seconds"] > 0
    assert record["data"]["corpus"]["test"]["oracle_ppl"] < record["metrics"]["test/perplexity"]


def test_metrics_jsonl_has_training_validation_and_one_test_evaluation(completed):
    record, _ = completed
    lines = [json.loads(x) for x in (Path(record["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if "train/loss" in x]
    valid = [x for x in lines if "valid/perplexity" in x]
    test = [x for x in lines if "test/perplexity" in x]
    assert [x["step"] for x in train] == [5, 10, 15, 20] and [x["step"] for x in valid] == [10, 20]
    assert len(test) == 1 and test[0]["test/perplexity"] == record["metrics"]["test/perplexity"]
    best = min(valid, key=lambda x: x["valid/perplexity"])
    assert record["metrics"]["best_step"] == best["step"]
    assert record["metrics"]["valid/perplexity"] == best["valid/perplexity"]
    assert all(math.isfinite(x["train/loss"]) for x in train)


def test_completed_run_is_skipped_when_started_again(completed, capsys):
    from tests.harness.conftest import SMOKE, compose_config

    record, root = completed
    again = execute(compose_config(*SMOKE, f"run.root={root}", "trainer.log_every=2"))  # log_every: not hashed
    assert again == record and "skipped (already completed)" in capsys.readouterr().out


def test_non_finite_loss_stops_and_marks_the_run_failed(smoke_config, monkeypatch):
    real_loss = LanguageModelTask.loss
    calls = {"n": 0}

    def loss_turning_nan(self, outputs, batch):
        calls["n"] += 1
        value = real_loss(self, outputs, batch)
        return value * float("nan") if calls["n"] > 6 else value

    monkeypatch.setattr(LanguageModelTask, "loss", loss_turning_nan)
    with pytest.raises(NonFiniteLossError, match="loss is nan at update 4"):
        execute(smoke_config())
    (record_file,) = Path(smoke_config().run.root).rglob("record.json")
    record = json.loads(record_file.read_text())
    assert record["status"] == "failed" and "NonFiniteLossError" in record["reason"]


def test_wandb_offline_logs_locally(smoke_config, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    record = execute(smoke_config("logger=wandb", "trainer.max_steps=2", "trainer.eval_every=2"))
    offline_runs = list((Path(record["run_dir"]) / "wandb").glob("offline-run-*"))
    assert record["status"] == "completed" and len(offline_runs) == 1


def test_sweep_records_a_failure_and_goes_on(tmp_path):
    """`-m` over two data sources, the first one missing: a failed and a completed record, the sweep goes on
    and exits 3 (a cell failed); each record names its variant, composed inside the running app."""
    env = {**os.environ, "WANDB_MODE": "disabled", "ATTENTION_ZOO_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "harness.run", "-m", "scale=smoke", "logger=none", "trainer.progress=false",
               f"run.root={tmp_path / 'runs'}", "task.data.source=files,builtin",
               f"task.data.path={tmp_path / 'no_such_folder'}", "trainer.max_steps=4", "attention.block_size=16"]
    sweep = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert sweep.returncode == 3, sweep.stderr[-3000:]
    assert "2 cell(s): 1 completed, 1 failed" in sweep.stderr
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("record.json")]
    status = {r["config"]["task"]["data"]["source"]: r for r in records}
    assert status["builtin"]["status"] == "completed"
    assert status["builtin"]["variant"] == status["files"]["variant"] == {"attention.block_size": 16}
    assert status["files"]["status"] == "failed" and "wiki.train.tokens" in status["files"]["reason"]
    assert "run failed (recorded; the sweep goes on)" in sweep.stdout + sweep.stderr
