"""Shared fixtures: composed configs at smoke scale, no network (wandb disabled), one data cache per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from harness.compose import register_configs

os.environ["WANDB_MODE"] = "disabled"  # tests never touch the network
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory):
    """Generated corpora and tokenised tensors are shared by the session's tests."""
    cache = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("ATTENTION_ZOO_CACHE")
    os.environ["ATTENTION_ZOO_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("ATTENTION_ZOO_CACHE", None)
    else:
        os.environ["ATTENTION_ZOO_CACHE"] = previous


def compose_config(*overrides: str):
    """conf/ composed like ``python -m harness.run`` would, without Hydra's own section."""
    register_configs()  # resolvers and schemas (nothing registers on import)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


SMOKE = ("scale=smoke", "logger=none", "trainer.progress=false")


@pytest.fixture
def smoke_config(tmp_path):
    """``smoke_config(*overrides)``: a smoke-scale config whose runs go under this test's tmp folder."""
    return lambda *overrides: compose_config(*SMOKE, f"run.root={tmp_path / 'runs'}", *overrides)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The crash-test run (tests/harness/crash_runs.py) uninterrupted: its record and metric lines."""
    from harness.execute import execute
    from tests.harness.crash_runs import LINES, metric_lines, overrides

    record = execute(compose_config(*overrides(tmp_path_factory.mktemp("reference"))))
    run_dir = Path(record["run_dir"])
    assert len(metric_lines(run_dir)) == LINES and record["segments"] == 1 and record["repairs"] == []
    return record, metric_lines(run_dir)
