"""Figures of the diagnostics (matplotlib, no display needed)."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from harness.analyze.proposition import SOFTMAX_BOUND  # noqa: E402


def locality_figure(curves: pd.DataFrame) -> Figure:
    """Figure 2 of the paper: the locally accumulated attention score against the neighbourhood ratio, one
    line per model (``label``), all layers averaged; beside it one panel per model with its layers."""
    labels = list(dict.fromkeys(curves["label"]))
    fig, axes = plt.subplots(1, 1 + len(labels), figsize=(4.2 * (1 + len(labels)), 3.8), squeeze=False)
    overall = axes[0, 0]
    layer = curves["layer"].astype(str)
    for label in labels:
        rows = curves[(curves["label"] == label) & (layer == "all")]
        overall.plot(rows["ratio"], rows["score"], marker="o", markersize=3, label=label)
    references = curves[layer == "uniform"].drop_duplicates(["ratio", "score"])
    if references["ratio"].is_unique:  # one reference shared by every model (same length and causality)
        overall.plot(references["ratio"], references["score"], color="grey", linestyle=":", label="uniform attention")
    overall.set(title="all layers", xlabel="neighbourhood ratio r", ylabel="locally accumulated attention")
    overall.legend(fontsize=7)
    for ax, label in zip(axes[0, 1:], labels):
        rows = curves[(curves["label"] == label) & ~layer.isin(["all", "uniform"])]
        for index, layer_rows in rows.groupby(rows["layer"].astype(int)):
            ax.plot(layer_rows["ratio"], layer_rows["score"], label=f"layer {index}")
        reference = curves[(curves["label"] == label) & (layer == "uniform")]
        ax.plot(reference["ratio"], reference["score"], color="grey", linestyle=":", label="uniform")
        ax.set(title=label, xlabel="neighbourhood ratio r", ylim=(0, 1.02))
        ax.legend(fontsize=7)
    for ax in axes[0]:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def jacobian_figure(histograms: pd.DataFrame) -> Figure:
    """Density of |dp_ij/ds_ik| per model and attention family on log axes, with softmax's bound 1/4."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    finite = histograms[(histograms["bin_low"] > 0) & histograms["bin_high"].map(math.isfinite)]
    for (label, family), rows in finite.groupby(["label", "family"], sort=False):
        total = histograms[(histograms["label"] == label) & (histograms["family"] == family)]["count"].sum()
        centres = (rows["bin_low"] * rows["bin_high"]) ** 0.5
        ax.step(centres, rows["count"] / total, where="mid", label=f"{label} ({family})")
    ax.axvline(SOFTMAX_BOUND, color="black", linestyle="--", linewidth=1, label="softmax bound 1/4")
    ax.set(xscale="log", yscale="log", xlabel="|dp_ij / ds_ik|", ylabel="fraction of entries per bin")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def gradient_norms_figure(stats: pd.DataFrame, window: int, group: str = "qkv") -> Figure:
    """One run: the gradient norm of each attention layer's q/k/v weights per update (log scale), and its
    relative standard deviation over a sliding window of ``window`` updates."""
    rows = stats[stats["group"] == group]
    fig, (norms, deviation) = plt.subplots(1, 2, figsize=(10, 3.8))
    for layer, part in rows.groupby("layer"):
        part = part.sort_values("step")
        norms.plot(part["step"], part["grad_norm"], linewidth=0.8, label=f"layer {layer}")
        rolling = part["grad_norm"].rolling(window)
        deviation.plot(part["step"], rolling.std(ddof=0) / rolling.mean(), linewidth=0.8, label=f"layer {layer}")
    norms.set(yscale="log", xlabel="update", ylabel=f"||grad {group}||", title="gradient norm")
    deviation.set(xlabel="update", ylabel="std / mean", title=f"relative std over {window} updates")
    for ax in (norms, deviation):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def gradient_deviation_figure(table: pd.DataFrame) -> Figure:
    """Table 2 as bars: our gradient deviation per model beside the paper's value (where it has one)."""
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(table), 3.8))
    positions = range(len(table))
    ax.bar([p - 0.2 for p in positions], table["deviation"], width=0.4, label="measured")
    if "paper" in table:
        ax.bar([p + 0.2 for p in positions], table["paper"], width=0.4, label="paper")
    ax.set_xticks(list(positions), table["label"], rotation=20, ha="right")
    ax.set(ylabel="relative std of the gradient norm", title="gradient deviation (Table 2)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
