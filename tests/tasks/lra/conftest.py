"""LRA tests share one data cache (generated files, splits, tensors) per session; nothing touches the network."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from harness.compose import register_configs

os.environ["WANDB_MODE"] = "disabled"
CONF_DIR = str(Path(__file__).resolve().parents[3] / "conf")
SMOKE = ("scale=smoke", "logger=none", "trainer.progress=false")


@pytest.fixture(scope="session")
def lra_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lra-cache")


def compose_config(*overrides: str):
    """conf/ composed as ``python -m harness.run`` would, without Hydra's own section."""
    register_configs()  # resolvers and schemas (nothing registers on import)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))
