"""Checkpoints: written atomically with a sha256 beside them, loaded with ``weights_only=True``.

A checkpoint is ``step_<step>.pt`` plus ``step_<step>.pt.sha256`` (written after it). Loading takes the newest
checkpoint whose digest matches and which torch can read; a damaged or unfinished one is reported and the
previous one is tried, then a fresh start. Only plain containers and tensors are stored, so nothing needs
unpickling beyond what ``weights_only`` allows.
"""
from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any

import torch

from tasks.data.atomic import torch_save, write_text

log = logging.getLogger(__name__)
STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing its digest, fails it, or cannot be read."""


def save_verified(path: Path, state: dict[str, Any]) -> None:
    torch_save(path, state)
    write_text(path.with_name(path.name + ".sha256"), sha256_of(path) + "\n")


def load_verified(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, or CheckpointError saying why it cannot be trusted."""
    digest_file = path.with_name(path.name + ".sha256")
    if not digest_file.is_file():
        raise CheckpointError(f"{path} has no {digest_file.name} (the write did not finish)")
    if sha256_of(path) != digest_file.read_text().strip():
        raise CheckpointError(f"{path} does not match its sha256 (truncated or corrupt)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} cannot be read ({type(err).__name__}: {err})") from err


class CheckpointStore:
    """The checkpoints of one run folder: the last ``keep`` step checkpoints and the best one."""

    def __init__(self, folder: str | Path, keep: int = 2):
        self.folder, self.keep = Path(folder), keep
        self.best_path = self.folder / "best.pt"

    def steps(self) -> list[int]:
        """Steps with a checkpoint file, newest first."""
        if not self.folder.is_dir():
            return []
        found = (STEP_FILE.match(p.name) for p in self.folder.iterdir())
        return sorted((int(m.group(1)) for m in found if m), reverse=True)

    def path(self, step: int) -> Path:
        return self.folder / f"step_{step:08d}.pt"

    def save(self, step: int, state: dict[str, Any]) -> None:
        save_verified(self.path(step), state)
        for old in self.steps()[self.keep :]:
            for p in (self.path(old), self.path(old).with_name(self.path(old).name + ".sha256")):
                p.unlink(missing_ok=True)

    def load_latest(self) -> dict[str, Any] | None:
        """The newest trustworthy checkpoint (saying which ones were skipped and why), or None."""
        for step in self.steps():
            try:
                state = load_verified(self.path(step))
            except CheckpointError as err:
                log.warning("checkpoint at step %d is unusable: %s; falling back to an earlier one", step, err)
                continue
            log.info("resuming from checkpoint %s (step %d)", self.path(step), step)
            return state
        if self.steps():
            log.warning("no usable checkpoint in %s: starting fresh", self.folder)
        return None

    def save_best(self, state: dict[str, Any]) -> None:
        save_verified(self.best_path, state)

    def load_best(self) -> dict[str, Any]:
        return load_verified(self.best_path)
