"""Where a run's metrics go: a local ``metrics.jsonl`` in the run folder (always) and wandb (offline by
default; ``logger=none`` turns it off). Both receive the same numbers."""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from harness.config import LoggerConfig
from tasks.data.atomic import write_text

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.jsonl"


class MetricsLogger:
    """``log(metrics, step)`` appends one JSON line and logs to wandb; ``summary`` sets the final numbers.

    ``resume_from(step)`` (called by the trainer once it knows where it starts) drops the lines of later
    steps, so the file reads as one uninterrupted run after a restart.
    """

    def __init__(self, run_dir: str | Path, cfg: LoggerConfig, run_id: str, name: str, config: dict[str, Any],
                 enabled: bool = True):
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled  # False on every process but rank 0
        self.wandb = None
        if not enabled:
            return
        if cfg.wandb and cfg.mode != "disabled" and os.environ.get("WANDB_MODE") != "disabled":
            import wandb

            self.wandb = wandb.init(project=cfg.project, name=name, id=run_id, dir=str(run_dir), mode=cfg.mode,
                                    config=config, resume="allow", reinit=True)

    def resume_from(self, step: int) -> None:
        if not self.enabled or not self.path.is_file():
            return
        kept = [line for line in self.path.read_text().splitlines() if _step_of(line) <= step]
        write_text(self.path, "".join(line + "\n" for line in kept))

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "time": round(time.time(), 3), **metrics}) + "\n")
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        if self.wandb is not None:
            self.wandb.summary.update(metrics)

    def close(self, failed: bool = False) -> None:
        if self.wandb is not None:
            self.wandb.finish(exit_code=1 if failed else 0)
            self.wandb = None


def _step_of(line: str) -> float:
    try:
        return json.loads(line).get("step", 0)
    except json.JSONDecodeError:
        return float("inf")  # a line cut by a crash is dropped
