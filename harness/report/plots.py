"""The report's figures (matplotlib, PNG): ours beside the paper's, training curves, ablation curves,
speed and memory against length, Figure 2's locality curves."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from harness.report.build import OK, BuiltTable  # noqa: E402
from harness.report.records import curves as run_curves  # noqa: E402
from zoo_io.atomic import atomic_write  # noqa: E402

STATUS_COLOURS = {"failed": "tab:red", "running": "tab:orange", "missing": "grey"}


def save(figure: Figure, path: Path) -> Path:
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    plt.close(figure)
    return path


def bars(table: BuiltTable) -> Figure | None:
    """Per metric column: our value per row (error bar = seeds' std) beside the paper's value."""
    columns = [c for c in table.spec.columns if any(r.cells[c.name].status == OK for r in table.rows)]
    if not columns:
        return None  # nothing of ours to show
    labels = [row.label for row in table.rows]
    height = max(2.5, 0.35 * len(labels) + 1.2)
    figure, axes = plt.subplots(len(columns), 2, figsize=(11, height * len(columns)), squeeze=False)
    for (ax_ours, ax_paper), column in zip(axes, columns):
        cells = [row.cells[column.name] for row in table.rows]
        ys = range(len(labels))
        means = [c.stats.mean if c.status == OK else 0.0 for c in cells]
        errors = [c.stats.std if c.status == OK else 0.0 for c in cells]
        drawn = ax_ours.barh(ys, means, xerr=errors, color="tab:blue", alpha=0.85)
        ax_ours.bar_label(drawn, [f"{m:.4g}" if c.status == OK else "" for m, c in zip(means, cells)], fontsize=7,
                          padding=2)
        for y, cell in zip(ys, cells):
            if cell.status != OK:
                ax_ours.text(0, y, f" {cell.status}", va="center", color=STATUS_COLOURS[cell.status], fontsize=8)
        floor = table.baseline.cells[column.name] if table.baseline is not None else None
        if floor is not None and floor.status == OK:
            ax_ours.axvline(floor.stats.mean, color="tab:red", linestyle="--", linewidth=1,
                            label=f"{table.baseline.label} {floor.stats.mean:.4g}")
            ax_ours.legend(loc="lower right", fontsize=7)
        drawn = ax_paper.barh(ys, [c.paper or 0.0 for c in cells], color="tab:grey", alpha=0.85)
        ax_paper.bar_label(drawn, [f"{c.paper:.4g}" if c.paper is not None else "" for c in cells], fontsize=7,
                           padding=2)
        for y, cell in zip(ys, cells):
            if cell.paper is None:
                ax_paper.text(0, y, f" {cell.paper_text or 'no number'}", va="center", color="grey", fontsize=8)
        if all(c.paper is None for c in cells):
            ax_paper.set_xlim(0, 1)
            ax_paper.set_xticks([])
        for ax, who in ((ax_ours, f"ours ({table.scale})"), (ax_paper, "paper")):
            ax.set_yticks(list(ys), labels)
            ax.invert_yaxis()
            ax.set_title(f"{column.label}: {who}", fontsize=10)
            ax.grid(axis="x", alpha=0.3)
        ax_paper.set_yticklabels([])
    figure.suptitle(f"{table.spec.name}: {table.spec.title}", fontsize=11)
    figure.tight_layout()
    return figure


def training_curves(table: BuiltTable) -> Figure | None:
    """Training loss and the validation metric against updates, one line per row (its first seed)."""
    runs = [(row.label, row.records[0]) for row in table.rows if row.records]
    curves = [(label, record, run_curves(record)) for label, record in runs]
    curves = [(label, record, frame) for label, record, frame in curves if not frame.empty and "step" in frame]
    if not curves:
        return None
    figure, (ax_loss, ax_valid) = plt.subplots(1, 2, figsize=(12, 4.2))
    for label, record, frame in curves:
        if "train/loss" in frame:
            part = frame.dropna(subset=["train/loss"])
            ax_loss.plot(part["step"], part["train/loss"], label=label)
        splits = record.primary_splits
        key = f"{splits[0] if splits else None}/{record.primary_metric.get('name')}"
        if key in frame:
            part = frame.dropna(subset=[key])
            ax_valid.plot(part["step"], part[key], marker="o", markersize=3, label=label)
            ax_valid.set_ylabel(key)
    ax_loss.set_ylabel("train loss")
    for ax in (ax_loss, ax_valid):
        ax.set_xlabel("update")
        ax.grid(alpha=0.3)
    if any(record.primary_metric.get("name") == "perplexity" for _, record, _ in curves):
        ax_valid.set_yscale("log")
    if ax_valid.lines:
        ax_valid.legend(fontsize=7, loc="best")
    figure.suptitle(f"{table.spec.name}: training curves ({table.scale}, first seed of each row)", fontsize=11)
    figure.tight_layout()
    return figure


def _x_value(kind: str, key: str) -> float | None:
    try:
        if kind == "block_size":
            return float(int(key))
        arg = key.partition(":")[2]
        return 0.5 if arg == "half" else float(Fraction(arg))
    except (ValueError, ZeroDivisionError):
        return None


def ablation_curve(table: BuiltTable) -> Figure | None:
    """Ours against block size (Table 11) or against the split point k/L (Table 8), the paper's on a
    second axis (its model, data and therefore its perplexity scale differ)."""
    kind, column = table.spec.plot, table.spec.columns[0]
    points = [(_x_value(kind, row.key), row) for row in table.rows]
    points = sorted((x, row) for x, row in points if x is not None)
    ours = [(x, row.cells[column.name].stats) for x, row in points if row.cells[column.name].status == OK]
    theirs = [(x, row.cells[column.name].paper) for x, row in points if row.cells[column.name].paper is not None]
    if not ours:
        return None
    figure, ax = plt.subplots(figsize=(6.5, 4))
    if ours:
        ax.errorbar([x for x, _ in ours], [s.mean for _, s in ours], yerr=[s.std for _, s in ours], marker="o",
                    color="tab:blue", capsize=3, label=f"ours ({table.scale}, {table.task})")
    ax.set_ylabel(f"{column.label} (ours)", color="tab:blue")
    twin = ax.twinx()
    if theirs:
        twin.plot([x for x, _ in theirs], [v for _, v in theirs], marker="s", linestyle="--", color="tab:grey",
                  label="paper")
    twin.set_ylabel(f"{column.label} (paper)", color="tab:grey")
    if kind == "block_size":
        ax.set_xscale("log", base=2)
        ax.set_xlabel("DiagAttention block size w")
    else:
        ax.set_xlabel("share of layers that are DiagAttention (k / L; Norm after)")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    ax.set_title(f"{table.spec.name}: {table.spec.title}", fontsize=10)
    figure.tight_layout()
    return figure


def label_styles(names: list[str]) -> dict[str, dict[str, str]]:
    """A distinct colour, marker and line style per label, the same in every panel (tab10's ten colours repeat
    beyond ten labels: the marker and a dashed line tell the eleventh from the first)."""
    markers = "osD^vP"
    return {name: {"color": f"C{i % 10}", "marker": markers[i % len(markers)],
                   "linestyle": "-" if i < 10 else "--"} for i, name in enumerate(names)}


def lines_by_label(frame: pd.DataFrame, x: str, y: str, label: str, title: str, xlabel: str, ylabel: str,
                   logy: bool = False, logx: bool = False, facet: str | None = None) -> Figure:
    """One line per ``label`` of ``y`` against ``x``; one panel per value of ``facet`` (if given; ``train``
    before ``inference``); one legend beside the panels."""
    facets = sorted(frame[facet].dropna().unique(), key=lambda v: (v != "train", str(v))) if facet else [None]
    styles = label_styles(sorted(str(v) for v in frame[label].unique()))
    figure, axes = plt.subplots(1, len(facets), figsize=(5.5 * len(facets) + 2, 4), squeeze=False)
    for ax, value in zip(axes[0], facets):
        part = frame if value is None else frame[frame[facet] == value]
        for name, group in part.groupby(label, sort=True):
            group = group.sort_values(x)
            ax.plot(group[x], group[y], markersize=4, label=str(name), **styles[str(name)])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        if logx:
            ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        if value is not None:
            ax.set_title(str(value), fontsize=10)
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_lines()}
    figure.legend([handles[n] for n in styles if n in handles], [n for n in styles if n in handles], fontsize=7,
                  loc="center left", bbox_to_anchor=(1 - 1.9 / figure.get_figwidth(), 0.5))
    figure.suptitle(title, fontsize=11)
    figure.tight_layout(rect=(0, 0, 1 - 2 / figure.get_figwidth(), 1))
    return figure


def budget_curves(frame: pd.DataFrame, title: str, ylabel: str) -> Figure | None:
    """One line per row of a metric against training updates (the mean over seeds; error bars: their std)."""
    if frame.empty:
        return None
    figure, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, group in frame.groupby("row", sort=True):
        group = group.sort_values("updates")
        ax.errorbar(group["updates"], group["mean"], yerr=group["std"], marker="o", markersize=3, capsize=3,
                    label=f"{name} ({int(group['n'].min())}+ seeds)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(frame["updates"].unique()), labels=[str(u) for u in sorted(frame["updates"].unique())])
    ax.set_xlabel("training updates (separate runs, each with its full schedule)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    figure.tight_layout()
    return figure
