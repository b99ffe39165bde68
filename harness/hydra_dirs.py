"""Where Hydra keeps its own files for a run or a sweep (the composed config, the overrides, the job's log).

``${hydra_dir:${run.root},run}`` in conf/config.yaml: ``<run.root>/_hydra/<time>-<token>``, one folder per
invocation (two runs started in the same second no longer share one and overwrite each other's files), or, where
``run.root`` cannot be written (a completed run on read-only storage is still skipped), the same name under the
system's temporary folder. The value is cached per composed config, so a sweep's cells share their parent's.
"""
from __future__ import annotations

import os
import secrets
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

PREFIXES = {"run": "", "multirun": "multirun_"}


def writable(root: Path) -> bool:
    """Whether ``root`` is, or can be created as, a folder this process can write into."""
    for folder in (root, *root.parents):
        if folder.exists():
            return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)
    return False


def hydra_dir(root: str, kind: str = "run") -> str:
    if kind not in PREFIXES:
        raise ValueError(f"hydra_dir: kind {kind!r} is not one of {sorted(PREFIXES)}")
    name = f"{PREFIXES[kind]}{time.strftime('%Y-%m-%d_%H-%M-%S')}-{secrets.token_hex(3)}"
    base = Path(root).expanduser()
    if not writable(base):
        base = Path(tempfile.gettempdir()) / "attention-zoo"
    return str(base / "_hydra" / name)


def register_resolver() -> None:
    """``${hydra_dir:root,kind}`` for conf/config.yaml (harness.compose.register_configs)."""
    if not OmegaConf.has_resolver("hydra_dir"):
        OmegaConf.register_new_resolver("hydra_dir", hydra_dir, use_cache=True)
