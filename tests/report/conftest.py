"""Synthetic run records: configurations composed from conf/ as a run would be, results made up."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir

from harness.compose import register_configs
from harness.config import config_hash, resolved_dict, validate
from harness.execute import run_dir_for
from harness.run_record import RECORD_VERSION, baseline_from_data
from harness.variants import Defaults, placement

os.environ["WANDB_MODE"] = "disabled"  # tests never touch the network
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
DEFAULTS = Defaults()  # composed once per (task, backend, scale) for the whole session


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory):
    """Generated corpora and tokenisers are shared by the session's tests (subprocesses inherit it)."""
    previous = os.environ.get("ATTENTION_ZOO_CACHE")
    os.environ["ATTENTION_ZOO_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("ATTENTION_ZOO_CACHE", None)
    else:
        os.environ["ATTENTION_ZOO_CACHE"] = previous


def compose_config(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def write_run(
    runs: Path,
    *overrides: str,
    status: str = "completed",
    valid: float | None = 10.0,
    test: float | None = None,
    reason: str = "",
    params: int = 1_000_000,
    scale: str = "smoke",
    updated: str = "2026-01-01T00:00:00+00:00",
    curve: bool = True,
    data: dict[str, Any] | None = None,
    variant: dict[str, Any] | None = None,
) -> Path:
    """Write ``record.json`` (and a short ``metrics.jsonl``) for the run ``overrides`` would start, placed in
    the tables as ``harness.run`` places it (``variant`` replaces the recorded one)."""
    cfg = compose_config(f"scale={scale}", f"run.root={runs}", *overrides)
    typed, resolved = validate(cfg), resolved_dict(cfg)
    digest = config_hash(resolved)
    run_dir = run_dir_for(typed, digest)
    run_dir.mkdir(parents=True, exist_ok=True)
    metric = "perplexity"
    record: dict[str, Any] = {
        "status": status, "config_hash": digest, "run_dir": str(run_dir), "task": typed.task.name,
        "backend": typed.attention.name, "scale": typed.scale.name, "seed": typed.seed, "config": resolved,
        "parameters": {"total": params, "embedding": params // 2, "non_embedding": params - params // 2},
        "host": {"hostname": "test", "platform": "linux", "cpu_count": 2, "torch_threads": 2},
        "started": "2026-01-01T00:00:00+00:00", "updated": updated, "wall_seconds": 1.0,
        "version": RECORD_VERSION,
        **placement(typed.task.name, typed.attention.name, typed.scale.name, resolved, DEFAULTS),
    }
    if status == "completed":
        test = valid if test is None else test
        record["metrics"] = {f"valid/{metric}": valid, f"test/{metric}": test}
        record["primary_metric"] = {"name": metric, "mode": "min", "valid": valid, "test": test}
        record["finished"] = updated
    if status in ("failed", "interrupted"):
        record["reason"] = reason
    if data is not None:  # and the trivial predictor's score read off it, as harness.run records it
        record["data"], record["majority_baseline"] = data, baseline_from_data(data)
    if variant is not None:
        record["variant"] = variant
    (run_dir / "record.json").write_text(json.dumps(record))
    if curve:
        lines = [{"step": s, "train/loss": 5.0 / s} for s in (1, 2, 3)] + [{"step": 3, f"valid/{metric}": valid}]
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return run_dir
