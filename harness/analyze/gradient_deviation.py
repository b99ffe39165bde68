"""Gradient deviation (the paper's Table 2), defined precisely.

The paper reports "the relative standard deviation of gradients" over training without defining it. Here:
- which gradients: for every attention layer l, the gradient of the loss with respect to the weights that
  produce its queries, keys and values (``q_proj``, ``k_proj``, ``v_proj``; for the gated attention unit
  ``to_z``, which makes q and k, and ``to_uv``, which makes the values and the gate), taken after the
  backward pass of an update and before clipping. Group ``qkv`` is their concatenation; ``q``, ``k``, ``v``
  are recorded too. These are the gradients that flow through dp_ij/ds_ik, the quantity of the Proposition;
  the output projection's gradient does not, so it is left out.
- which statistic: the L2 norm g_t of that gradient at update t, and its relative standard deviation
  (coefficient of variation) std(g) / mean(g) over a window of W consecutive updates (population std).
- over which steps: the updates after the first ``skip`` ones, cut into non-overlapping windows of W (the
  last partial window dropped); the deviation of a layer is the mean over its windows, the model's is the
  mean over its attention layers. Windows keep the slow drift of the norm over training (it shrinks as the
  loss falls) from passing for instability; ``whole_run`` (one window over all kept updates) is reported
  beside it.
Recording costs nothing unless a :class:`GradientRecorder` is handed to the trainer.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from attention_zoo.mixers.base import MultiHeadMixer
from attention_zoo.mixers.gated import GatedAttentionUnit
from harness.analyze.capture import mixer_sites

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


def read_stats(path: str | Path) -> pd.DataFrame:
    """The recorded norms, one row per (step, layer, group), the last record of a repeated step kept."""
    path = Path(path)
    if path.is_dir():
        path = path / STATS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: record gradients during training (trainer.record_gradients=true) first"
        )
    stats = pd.read_csv(path, on_bad_lines="skip")
    missing = sorted(set(FIELDS) - set(stats.columns))
    if missing:
        raise ValueError(f"{path} lacks the column(s) {missing}; expected {FIELDS}")
    stats = stats.dropna(subset=FIELDS)  # a line cut short by a crash (its step is redone after resuming)
    stats = stats.astype({"step": int, "layer": int})
    return stats.drop_duplicates(["step", "layer", "mixer", "group"], keep="last").sort_values(["step", "layer"])


def relative_std(values: pd.Series) -> float:
    mean = values.mean()
    return float(values.std(ddof=0) / mean) if mean > 0 else math.nan


def windowed_relative_std(norms: pd.Series, window: int) -> float:
    """Mean over non-overlapping windows of ``window`` updates of std/mean (partial last window dropped)."""
    n_windows = len(norms) // window
    if n_windows == 0:
        return math.nan
    values = norms.to_numpy()[: n_windows * window].reshape(n_windows, window)
    return float((values.std(axis=1) / values.mean(axis=1)).mean())


def gradient_deviation(stats: pd.DataFrame, window: int = 50, skip: int = 0) -> pd.DataFrame:
    """Per (layer, mixer, group): ``deviation`` (windowed), ``whole_run``, ``mean_norm``, ``updates``; plus
    rows with layer ``all`` averaging the layers of each group."""
    if window < 2:
        raise ValueError(f"window must be at least 2 updates, got {window}")
    kept = stats[stats["step"] > skip]
    rows = []
    for (layer, mixer, group), part in kept.groupby(["layer", "mixer", "group"], sort=True):
        norms = part.sort_values("step")["grad_norm"]
        rows.append({
            "layer": layer, "mixer": mixer, "group": group, "deviation": windowed_relative_std(norms, window),
            "whole_run": relative_std(norms), "mean_norm": float(norms.mean()), "updates": len(norms),
        })
    table = pd.DataFrame(rows)
    if table.empty:
        raise ValueError(f"no recorded updates after skip={skip}")
    overall = table.groupby("group", as_index=False).agg(
        deviation=("deviation", "mean"), whole_run=("whole_run", "mean"), mean_norm=("mean_norm", "mean"),
        updates=("updates", "min"),
    )
    overall.insert(0, "layer", "all")
    overall.insert(1, "mixer", "+".join(sorted(table["mixer"].unique())))
    return pd.concat([table, overall], ignore_index=True)
