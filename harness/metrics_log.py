"""Where a run's metrics go: a local ``metrics.jsonl`` in the run folder (always) and wandb (offline by
default; ``logger=none`` turns it off). Both receive the same numbers.

Crash consistency: the logger keeps every line it has written (``lines``) and each checkpoint stores a copy.
On resume, :meth:`MetricsLogger.resume` rewrites the file as the checkpoint's copy, so the lines logged after
the checkpoint (which the resumed run logs again) are dropped, and a line damaged or lost before it is
restored; every such repair is reported. The final file is the one an uninterrupted run writes.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from harness.config import LoggerConfig
from harness.run_folder import Repairs
from zoo_io.atomic import naming_a_full_disk, write_text
from zoo_io.faults import fault_point

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.jsonl"


class MetricsLogger:
    """``log(metrics, step)`` appends one JSON line and logs to wandb; ``summary`` sets the final numbers."""

    def __init__(self, run_dir: str | Path, cfg: LoggerConfig, run_id: str, name: str, config: dict[str, Any],
                 enabled: bool = True, repairs: Repairs | None = None):
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled  # False on every process but rank 0
        self.repairs = repairs if repairs is not None else Repairs()
        self.lines: list[str] = []  # every line of this run so far, without newlines (checkpoints copy it)
        self.wandb = None
        if not enabled:
            return
        if cfg.wandb and cfg.mode != "disabled" and os.environ.get("WANDB_MODE") != "disabled":
            import wandb

            self.wandb = wandb.init(project=cfg.project, name=name, id=run_id, dir=str(run_dir), mode=cfg.mode,
                                    config=config, resume="allow", reinit=True)

    def resume(self, step: int, saved: list[str] | None) -> int:
        """Make the file hold exactly the lines of the run up to update ``step``: ``saved`` (the checkpoint's
        copy; None for a fresh start, or a checkpoint older than this logic). Returns how many lines logged
        after the checkpoint were dropped (they are logged again as the run repeats those updates)."""
        if not self.enabled:
            return 0
        on_disk = self.path.read_text(encoding="utf-8", errors="replace").splitlines() if self.path.is_file() else []
        if saved is None:
            saved = [line for line in on_disk if _step_of(line) <= step] if step else []
            if not step and on_disk:
                self.repairs.add(f"{len(on_disk)} line(s) of an earlier attempt that left no usable checkpoint",
                                 self.path, "dropped: the run starts afresh")
            elif step:
                self.repairs.add(f"the checkpoint of step {step} holds no copy of the metric lines", self.path,
                                 f"kept the {len(saved)} readable line(s) of steps <= {step} found in the file")
        elif not self.path.is_file() and saved:
            self.repairs.add(f"{METRICS_FILE} is missing beside the checkpoint of step {step}", self.path,
                             f"restored its {len(saved)} line(s) from the checkpoint")
        else:
            damaged = [i + 1 for i, line in enumerate(saved) if i >= len(on_disk) or on_disk[i] != line]
            if damaged:
                self.repairs.add(f"{len(damaged)} line(s) of {METRICS_FILE} before the checkpoint of step {step} "
                                 "are damaged or missing", self.path,
                                 "restored from the checkpoint's copy", lines=damaged[:50])
        torn = [i + 1 for i, line in enumerate(on_disk) if i >= len(saved) and not _is_json(line)]
        if torn:
            self.repairs.add(f"{len(torn)} torn line(s) of {METRICS_FILE} after the checkpoint of step {step} (a "
                             "write cut short by a crash or a full disk)", self.path,
                             "dropped with the other lines after the checkpoint; those updates are logged again",
                             lines=torn[:50])
        dropped = max(len(on_disk) - len(saved), 0)
        if on_disk != saved:
            write_text(self.path, "".join(line + "\n" for line in saved))
        self.lines = list(saved)
        return dropped

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        line = json.dumps({"step": step, "time": round(time.time(), 3), **metrics})
        with naming_a_full_disk(self.path), open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        self.lines.append(line)
        fault_point("logged", next(iter(metrics), "").split("/")[0])  # e.g. logged:test, after the test line
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def verify_file(self) -> None:
        """Before a run is marked completed: the file must hold exactly the run's lines. One deleted, cut or
        written by someone else is rewritten from the run's own copy (which its checkpoints hold too)."""
        if not self.enabled:
            return
        try:
            on_disk = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            on_disk = None
        if on_disk == self.lines:
            return
        found = "missing" if on_disk is None else f"holds {len(on_disk)} line(s), the run logged {len(self.lines)}"
        write_text(self.path, "".join(line + "\n" for line in self.lines))
        self.repairs.add(f"{METRICS_FILE} changed under the run ({found})", self.path,
                         f"rewritten from the run's own copy of its {len(self.lines)} line(s)")

    def summary(self, metrics: dict[str, Any]) -> None:
        if self.wandb is not None:
            self.wandb.summary.update(metrics)

    def close(self, failed: bool = False) -> None:
        if self.wandb is not None:
            self.wandb.finish(exit_code=1 if failed else 0)
            self.wandb = None


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def _step_of(line: str) -> float:
    try:
        return json.loads(line).get("step", 0)
    except (json.JSONDecodeError, AttributeError):
        return float("inf")  # a line cut by a crash is dropped
