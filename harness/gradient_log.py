"""The gradient log behind Table 2: a trainer callback that writes the gradient norms of every attention layer's
q/k/v weights after each update (``trainer.record_gradients``); ``harness.analyze.gradient_deviation`` turns them
into the deviation the paper reports (the definition is there)."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import torch
from torch import nn

from attention_zoo.mixers.base import MultiHeadMixer
from attention_zoo.mixers.gated import GatedAttentionUnit
from harness.mixer_sites import mixer_sites

STATS_FILE = "gradient_stats.csv"
FIELDS = ["step", "layer", "mixer", "group", "grad_norm"]


def projection_groups(mixer: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The q/k/v-producing weights of one mixer, by group name."""
    if isinstance(mixer, MultiHeadMixer):
        return {"q": [mixer.q_proj.weight], "k": [mixer.k_proj.weight], "v": [mixer.v_proj.weight]}
    if isinstance(mixer, GatedAttentionUnit):
        return {"qk": [mixer.to_z.weight], "v": [mixer.to_uv.weight]}
    raise ValueError(f"no q/k/v projections known for {type(mixer).__name__}")


class GradientRecorder:
    """A trainer callback: after each update's backward pass, the gradient norms of every attention layer's
    q/k/v weights go to ``<run_dir>/gradient_stats.csv`` (appended every ``flush_every`` updates).

    Lines are appended (one write per flush); a resumed run repeats the steps after its checkpoint, and
    :func:`read_stats` keeps the last record of each step, so a line cut short by a crash is superseded.
    """

    def __init__(self, model: nn.Module, run_dir: str | Path, flush_every: int = 50):
        self.path = Path(run_dir) / STATS_FILE
        self.flush_every = flush_every
        self.groups = [(site, projection_groups(module)) for site, module in mixer_sites(model)]
        self.pending: list[tuple] = []

    @torch.no_grad()
    def on_gradients(self, model: nn.Module, step: int) -> None:
        """Called by the trainer with the gradients of update ``step`` (counted from 1) in ``.grad``."""
        for site, groups in self.groups:
            squares = {}
            for name, params in groups.items():
                grads = [p.grad for p in params if p.grad is not None]
                squares[name] = float(sum(g.double().pow(2).sum() for g in grads)) if grads else math.nan
            squares["qkv"] = sum(squares.values())
            self.pending += [(step, site.layer, site.mixer, name, math.sqrt(sq)) for name, sq in squares.items()]
        if step % self.flush_every == 0:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        lines = io.StringIO()
        writer = csv.writer(lines)
        if new:
            writer.writerow(FIELDS)
        writer.writerows(self.pending)
        with open(self.path, "a+b") as f:
            cut_short = False
            if f.seek(0, io.SEEK_END) > 0:
                f.seek(-1, io.SEEK_END)
                cut_short = f.read(1) != b"\n"  # a crash cut the last line: never glue onto it
            f.write((b"\n" if cut_short else b"") + lines.getvalue().encode())
        self.pending = []

    def on_fit_end(self) -> None:
        self.flush()
