"""Table 7's tables and figures from its rows: the paper's layout ("-" for out of memory), our speed ratios
beside the paper's, the growth of peak memory with length, and the log-log plots against length.

With ``--runs R`` every cell has R rows (``RUN_COLUMNS``); ``combine_runs`` makes one row per cell of them
(``COLUMNS``), and the speed ratios are taken per run (``paired_ratios``).
"""
from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from harness.bench.skeleton import ROOT, length_label

if TYPE_CHECKING:
    import pandas as pd

MODES = ("train", "inference")
COLUMNS = (
    "label", "backend", "mode", "length", "batch_size", "precision", "device", "status", "steps_per_sec",
    "steps_per_sec_min", "steps_per_sec_max", "tokens_per_sec", "time_median_s", "time_min_s", "time_max_s",
    "spread_pct", "repeats", "times_s", "peak_memory_mib", "memory_method", "parameters", "error",
)
RUN_COLUMNS = ("run", *COLUMNS)  # table7_runs.csv: one row per cell and run


def paper_table() -> pd.DataFrame:
    import pandas as pd

    path = ROOT / "results" / "paper" / "table7.csv"
    if not path.is_file():
        return pd.DataFrame(columns=["method", "backend", "mode", "length", "steps_per_sec", "source"])
    return pd.read_csv(path, dtype={"steps_per_sec": str})


def cell_text(row: pd.Series, value: str, fmt: str) -> str:
    if row["status"] == "ok":
        return format(row[value], fmt)
    if row["status"] == "oom" or (row["status"] == "skipped" and str(row["error"]).startswith("oom")):
        return "-"
    return row["status"]


def layout(results: pd.DataFrame, value: str, fmt: str) -> str:
    """Rows = backends, columns = mode x length (the paper's Table 7); "-" where a cell ran out of memory."""
    paper = paper_table()
    names = dict(zip(paper["backend"], paper["method"]))
    lengths = sorted(results["length"].unique())
    modes = [m for m in MODES if m in set(results["mode"])]
    header = ["Method"] + [f"{mode} {length_label(n)}" for mode in modes for n in lengths]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, rows in results.groupby("label", sort=False):
        cells = {(r["mode"], r["length"]): cell_text(r, value, fmt) for _, r in rows.iterrows()}
        backend = rows.iloc[0]["backend"]
        name = names.get(backend, backend) + (f" (`{label}`)" if label != backend else "")
        lines.append("| " + " | ".join([name, *(cells.get((m, n), "") for m in modes for n in lengths)]) + " |")
    return "\n".join(lines)


def ratio_table(results: pd.DataFrame, reference: str, runs: pd.DataFrame | None = None) -> str:
    """Each backend's speed over ``reference``'s at the same mode and length, ours and, in brackets, the
    paper's (GPU) where it has both numbers (backends without knob overrides only). With several runs
    (``runs``, measured side by side): the median of the per-run ratios and their min-max."""
    paper = paper_table().assign(steps_per_sec=lambda t: pd_numeric(t["steps_per_sec"])).dropna()
    theirs = {(r["backend"], r["mode"], r["length"]): r["steps_per_sec"] for _, r in paper.iterrows()}
    ok = results[results["status"] == "ok"]
    speed = {(r["label"], r["mode"], r["length"]): r["steps_per_sec"] for _, r in ok.iterrows()}
    paired = paired_ratios(runs, reference) if runs is not None and runs["run"].nunique() > 1 else {}
    lengths = sorted(results["length"].unique())
    lines = ["| backend | mode | " + " | ".join(length_label(n) for n in lengths) + " |",
             "|---|---|" + "---|" * len(lengths)]
    for (label, mode), rows in ok.groupby(["label", "mode"], sort=False):
        if label == reference:
            continue
        backend, cells = rows.iloc[0]["backend"], []
        for n in lengths:
            ours, base = speed.get((label, mode, n)), speed.get((reference, mode, n))
            found = paired.get((label, mode, n))
            if found:
                text = f"{statistics.median(found):.2f} [{min(found):.2f}-{max(found):.2f}, {len(found)} runs]"
            else:
                text = f"{ours / base:.2f}" if ours and base else ""
            paper_pair = theirs.get((backend, mode, n)), theirs.get((reference, mode, n))
            if None not in paper_pair and label == backend:  # knob overrides are not the paper's model
                text += f" ({paper_pair[0] / paper_pair[1]:.2f})"
            cells.append(text)
        lines.append(f"| {label} | {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def memory_growth_table(results: pd.DataFrame) -> str:
    """Per backend and mode: peak memory against length, a least-squares line (MiB per 1K tokens, R^2) and
    the largest growth when the length doubles (2.0 = linear, 4.0 = quadratic)."""
    import numpy as np

    ok = results[results["status"] == "ok"]
    lines = ["| backend | mode | MiB per 1K tokens | R^2 of a line | largest growth per doubling |",
             "|---|---|---|---|---|"]
    for (label, mode), rows in ok.groupby(["label", "mode"], sort=False):
        if len(rows) < 2:
            continue
        n, mib = rows["length"].to_numpy(float), rows["peak_memory_mib"].to_numpy(float)
        slope, intercept = np.polyfit(n, mib, 1)
        r2 = 1 - ((mib - (slope * n + intercept)) ** 2).sum() / max(((mib - mib.mean()) ** 2).sum(), 1e-12)
        peak = dict(zip(rows["length"], rows["peak_memory_mib"]))
        doublings = [peak[2 * k] / peak[k] for k in peak if 2 * k in peak and peak[k] > 0]
        worst = f"{max(doublings):.2f}" if doublings else "n/a"
        fit = f"{r2:.3f}" if len(rows) > 2 else "n/a"  # two points always lie on a line
        lines.append(f"| {label} | {mode} | {slope * 1024:.0f} | {fit} | {worst} |")
    return "\n".join(lines)


def pd_numeric(series: pd.Series) -> pd.Series:
    import pandas as pd

    return pd.to_numeric(series, errors="coerce")


def markdown(results: pd.DataFrame, env: dict[str, Any], settings: dict[str, Any],
             runs: pd.DataFrame | None = None) -> str:
    git = env.get("git") or {}
    lines = [
        "# Table 7: speed (steps/s, higher is better) and peak memory",
        "",
        f"Command: `{env['command']}`",
        "",
        f"- machine: {env['cpu']}, {env['logical_cpus']} logical CPUs, {env['torch_threads']} torch threads, "
        f"device {env['device']}{' (' + env['gpu'] + ')' if env['gpu'] else ''}",
        f"- load average (1, 5, 15 min): {env['load_average_start']} at the start"
        + (f", {env['load_average_end']} at the end" if "load_average_end" in env else ""),
        f"- model: the LM at scale `{settings['scale']}` (vocabulary {settings['vocab_size']}), batch "
        f"{settings['batch_size']}, {'bidirectional' if settings['bidirectional'] else 'causal'}, "
        f"{settings['precision']}; {settings['warmup']} warm-up + {settings['repeats']} timed steps per cell"
        + (f", {settings['runs']} runs of every cell, the backends side by side in each (table7_runs.csv)"
           if settings.get("runs", 1) > 1 else ""),
        f"- torch {env['versions'].get('torch')}, python {env['versions'].get('python')}, commit "
        f"{git.get('commit', 'unknown')}{' (uncommitted changes)' if git.get('dirty') else ''}",
        "",
        '## Steps per second (median; "-" = out of memory)',
        "",
        layout(results, "steps_per_sec", ".3g"),
        "",
        "## Peak memory above the baseline (MiB; the baseline holds the model, optimiser and inputs)",
        "",
        layout(results, "peak_memory_mib", ".0f"),
    ]
    lines += ["", "## Growth of peak memory with length", "", memory_growth_table(results)]
    if "vanilla" in set(results["label"]):
        lines += ["", "## Speed relative to vanilla (in round brackets: the paper's, on a GPU; in square brackets: "
                  "the min-max of the per-run ratios)", ""]
        lines.append(ratio_table(results, "vanilla", runs))
    return "\n".join(lines) + "\n"


def figures(results: pd.DataFrame) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = results[results["status"] == "ok"]
    modes = [m for m in MODES if m in set(results["mode"])]
    out = {}
    for name, value, ylabel in (("table7_speed.png", "steps_per_sec", "steps / s"),
                                ("table7_memory.png", "peak_memory_mib", "peak memory above baseline (MiB)")):
        fig, axes = plt.subplots(1, len(modes), figsize=(5.2 * len(modes), 4), squeeze=False)
        for ax, mode in zip(axes[0], modes):
            for label, rows in ok[ok["mode"] == mode].groupby("label", sort=False):
                rows = rows.sort_values("length")
                ax.plot(rows["length"], rows[value].clip(lower=1e-3), marker="o", label=label)
            ax.set(xscale="log", yscale="log", xlabel="sequence length", ylabel=ylabel, title=mode)
            ax.grid(alpha=0.3, which="both")
            if ax.lines:
                ax.legend(fontsize=7)
        fig.tight_layout()
        out[name] = fig
    return out


def combine_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per cell from its runs: steps/s the median of the runs' medians, the spread from the slowest
    to the fastest step of any run, every timed step in ``times_s``; a cell is ok when every run of it was
    (else the first failure is shown)."""
    import pandas as pd

    rows = []
    for _, group in runs.groupby(["label", "mode", "length"], sort=False):
        failed = group[group["status"] != "ok"]
        if len(failed) or len(group) == 1:
            rows.append((failed if len(failed) else group).iloc[0].drop("run"))
            continue
        row = group.iloc[0].drop("run").copy()
        times = [float(t) for text in group["times_s"] for t in str(text).split(";") if t]
        median = statistics.median(group["time_median_s"].astype(float))
        row["steps_per_sec"], row["time_median_s"] = 1 / median, median
        row["tokens_per_sec"] = row["batch_size"] * row["length"] / median
        row["time_min_s"], row["time_max_s"] = min(times), max(times)
        row["steps_per_sec_min"], row["steps_per_sec_max"] = 1 / max(times), 1 / min(times)
        row["spread_pct"] = 100 * (max(times) - min(times)) / median
        row["repeats"], row["times_s"] = len(times), ";".join(f"{t:.6g}" for t in times)
        row["peak_memory_mib"] = float(group["peak_memory_mib"].astype(float).median())
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS)).reset_index(drop=True)


def paired_ratios(runs: pd.DataFrame, reference: str) -> dict[tuple[str, str, int], list[float]]:
    """(label, mode, length) -> its speed over ``reference``'s, one ratio per run (cells measured side by side)."""
    ok = runs[runs["status"] == "ok"]
    speed = {(r["run"], r["label"], r["mode"], r["length"]): r["steps_per_sec"] for _, r in ok.iterrows()}
    ratios: dict[tuple[str, str, int], list[float]] = {}
    for (run, label, mode, length), value in speed.items():
        base = speed.get((run, reference, mode, length))
        if label != reference and base:
            ratios.setdefault((label, mode, length), []).append(value / base)
    return ratios
