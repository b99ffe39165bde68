"""Checkpoints: written atomically with a sha256 beside them, loaded with ``weights_only=True``.

A checkpoint is ``step_<step>.pt`` plus ``step_<step>.pt.sha256`` (written after it). Loading takes the newest
checkpoint whose digest matches and which torch can read; a damaged or unfinished one is moved to
``checkpoints/damaged/`` with the reason (and listed in the run's repairs), and the previous one is tried, then a
fresh start. Retention keeps the newest ``keep`` checkpoints at or before the run's position, so a leftover
from the future of an abandoned attempt can never push out the checkpoints of the attempt that goes on.
Only plain containers and tensors are stored, so nothing needs unpickling beyond what ``weights_only`` allows.
"""
from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any

import torch

from harness.run_folder import Repairs, move_aside
from zoo_io.atomic import torch_save, write_text
from zoo_io.faults import fault_point

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


def digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save_verified(path: Path, state: dict[str, Any]) -> None:
    torch_save(path, state)
    fault_point("digest", path.name)  # the checkpoint is in place, its digest not yet
    write_text(digest_path(path), sha256_of(path) + "\n")


def load_verified(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, or CheckpointError saying why it cannot be trusted."""
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    if not digest_path(path).is_file():
        raise CheckpointError(f"{path} has no {digest_path(path).name} (the write did not finish)")
    if sha256_of(path) != digest_path(path).read_text().strip():
        raise CheckpointError(f"{path} does not match its sha256 (truncated or corrupt)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} cannot be read ({type(err).__name__}: {err})") from err


class CheckpointStore:
    """The checkpoints of one run folder: the last ``keep`` step checkpoints and the best one."""

    def __init__(self, folder: str | Path, keep: int = 2, repairs: Repairs | None = None, writable: bool = True):
        self.folder, self.keep = Path(folder), keep
        self.writable = writable  # False on every process but rank 0: they read, rank 0 repairs
        self.best_path = self.folder / "best.pt"
        self.repairs = repairs if repairs is not None else Repairs()

    def steps(self) -> list[int]:
        """Steps with a checkpoint file, newest first."""
        if not self.folder.is_dir():
            return []
        found = (STEP_FILE.match(p.name) for p in self.folder.iterdir())
        return sorted((int(m.group(1)) for m in found if m), reverse=True)

    def path(self, step: int) -> Path:
        return self.folder / f"step_{step:08d}.pt"

    def _remove(self, step: int) -> None:
        for p in (self.path(step), digest_path(self.path(step))):
            p.unlink(missing_ok=True)

    def _set_aside(self, path: Path, reason: str) -> None:
        if not self.writable:
            log.warning("%s (rank 0 sets it aside)", reason)
            return
        moved = [str(move_aside(p, reason).relative_to(self.folder)) for p in (path, digest_path(path)) if p.is_file()]
        self.repairs.add(reason, path, f"moved to {', '.join(moved) or 'nowhere (already gone)'}")

    def save(self, step: int, state: dict[str, Any]) -> None:
        save_verified(self.path(step), state)
        kept = [s for s in self.steps() if s <= step][: self.keep]
        for old in self.steps():
            if old > step:  # left by an attempt that was not resumed: never let it push out this one's
                self._set_aside(self.path(old), f"checkpoint of step {old} is ahead of the run (step {step}): "
                                                "left by an earlier attempt that was not resumed")
            elif old not in kept:
                self._remove(old)

    def load_latest(self) -> dict[str, Any] | None:
        """The newest trustworthy checkpoint, or None; the damaged ones met on the way are set aside."""
        unusable = 0
        for step in self.steps():
            try:
                state = load_verified(self.path(step))
            except CheckpointError as err:
                self._set_aside(self.path(step), f"checkpoint of step {step} is unusable: {err}")
                log.warning("falling back to an earlier checkpoint")
                unusable += 1
                continue
            log.info("resuming from checkpoint %s (step %d)", self.path(step), step)
            return state
        if unusable:
            log.warning("no usable checkpoint in %s: starting fresh", self.folder)
        return None

    def discard_all(self, reason: str) -> None:
        """Remove every step checkpoint (``run.resume=false``: the earlier attempt's are not continued)."""
        steps = self.steps() if self.writable else []
        for step in steps:
            self._remove(step)
        if steps:
            self.repairs.add(f"{len(steps)} checkpoint(s) of an earlier attempt (steps {sorted(steps)})",
                             self.folder, f"deleted: {reason}")

    def save_best(self, state: dict[str, Any]) -> None:
        save_verified(self.best_path, state)

    def load_best(self) -> dict[str, Any]:
        return load_verified(self.best_path)
