"""Recall tests share one data cache per session; nothing touches the network."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def recall_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("recall-cache")
