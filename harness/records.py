"""Run records: one JSON per run folder (``record.json``), written atomically, read by sweeps and reports."""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from zoo_io.atomic import write_json

RECORD_FILE = "record.json"
PACKAGES = ("torch", "hydra-core", "omegaconf", "torchmetrics", "wandb", "numpy", "attention-zoo")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": sys.version.split()[0]}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def git_commit(cwd: str | Path | None = None) -> dict[str, Any] | None:
    """The commit of the source tree and whether it had uncommitted changes, or None outside git."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, timeout=10)
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def host() -> dict[str, Any]:
    info: dict[str, Any] = {"hostname": socket.gethostname(), "pid": os.getpid(), "platform": platform.platform(),
                            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def read_record(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / RECORD_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return None  # for readers; the run itself moves an unreadable record aside (harness.run_folder)


def write_record(run_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write ``record`` (stamped with ``updated``, in place) to the run folder's record.json."""
    path = Path(run_dir) / RECORD_FILE
    record["updated"] = now()
    write_json(path, record)
    return path


def is_completed(record: dict[str, Any] | None, config_hash: str) -> bool:
    return bool(record) and record.get("status") == "completed" and record.get("config_hash") == config_hash
