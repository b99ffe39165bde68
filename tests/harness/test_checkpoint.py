"""Checkpoints are verified before use; a damaged one is reported and the previous one (or none) is used."""
from __future__ import annotations

import logging
import pickle

import pytest
import torch

from harness.checkpoint import CheckpointError, CheckpointStore, load_verified


def state(step):
    return {"step": step, "model": {"w": torch.full((3,), float(step))}, "best": {"value": None}}


def test_keeps_the_last_k_and_loads_the_newest(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for step in (10, 20, 30):
        store.save(step, state(step))
    assert store.steps() == [30, 20]
    assert store.load_latest()["step"] == 30


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_digest"])
def test_damaged_latest_falls_back_to_the_previous_and_says_so(tmp_path, caplog, damage):
    store = CheckpointStore(tmp_path, keep=2)
    store.save(10, state(10))
    store.save(20, state(20))
    path = store.path(20)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:-40] + bytes([data[-40] ^ 0xFF]) + data[-39:])
    else:
        path.with_name(path.name + ".sha256").unlink()
    with caplog.at_level(logging.WARNING):
        assert store.load_latest()["step"] == 10
    assert "step 20 is unusable" in caplog.text and "falling back" in caplog.text


def test_nothing_usable_starts_fresh_and_says_so(tmp_path, caplog):
    store = CheckpointStore(tmp_path)
    store.save(5, state(5))
    store.path(5).write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        assert store.load_latest() is None
    assert "starting fresh" in caplog.text


def test_loading_refuses_arbitrary_pickles(tmp_path):
    """weights_only=True: a checkpoint that would run code on load is rejected even with a valid digest."""

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "step_00000001.pt"
    torch.save({"evil": Evil()}, path, pickle_module=pickle)
    from harness.checkpoint import sha256_of

    path.with_name(path.name + ".sha256").write_text(sha256_of(path))
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_verified(path)
