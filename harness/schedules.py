"""Learning-rate schedules as pure functions of the update count (so resuming needs no scheduler state)."""
from __future__ import annotations

import math

from harness.config import TrainerConfig


def _warmup(step: int, warmup: int, start: float, peak: float) -> float:
    return start + (peak - start) * step / warmup


def learning_rate(cfg: TrainerConfig, step: int) -> float:
    """The learning rate of update ``step`` (0 = the first update) under ``cfg.schedule``."""
    lr, warmup, total = cfg.lr, cfg.warmup_steps, cfg.max_steps
    if cfg.schedule == "inverse_sqrt":  # fairseq: warmup from warmup_init_lr, then lr * sqrt(warmup / step)
        if step < warmup:
            return _warmup(step, warmup, cfg.warmup_init_lr, lr)
        return lr * math.sqrt(max(warmup, 1) / max(step, 1))
    if cfg.schedule == "polynomial":  # fairseq polynomial_decay: warmup from 0, decay to end_lr at max_steps
        if step < warmup:
            return _warmup(step, warmup, 0.0, lr)
        remaining = max(0.0, 1 - (step - warmup) / max(total - warmup, 1))
        return cfg.end_lr + (lr - cfg.end_lr) * remaining**cfg.power
    if cfg.schedule == "cosine":  # warmup from warmup_init_lr, half a cosine down to end_lr at max_steps
        if step < warmup:
            return _warmup(step, warmup, cfg.warmup_init_lr, lr)
        progress = min(1.0, (step - warmup) / max(total - warmup, 1))
        return cfg.end_lr + 0.5 * (lr - cfg.end_lr) * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "constant":
        return _warmup(step, warmup, cfg.warmup_init_lr, lr) if step < warmup else lr
    raise ValueError(f"unknown schedule {cfg.schedule!r}")
