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
The norms are recorded during training by :class:`harness.gradient_log.GradientRecorder` (it costs nothing
unless ``trainer.record_gradients`` is on); this module computes the deviation from them.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from harness.gradient_log import FIELDS, STATS_FILE


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
