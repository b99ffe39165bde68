"""The recall diagnostics' page (not a table of the paper; docs/recall.md): accuracy per backend, width and
task setting, against the recurrent state size, from the recall runs' records alone.

A *cell* is (task, backend, d_model, setting) at the task's main training budget (the commonest
``trainer.max_steps`` of its runs). Per seed the learning rate is chosen on the validation accuracy (Zoology
reports the best over its learning-rate grid; choosing on validation keeps the test split out of the choice)
and the cell's value is that run's test accuracy. A cell shows the mean over seeds with a 95% Student-t
interval (``scipy.stats.t``). The state size is the one the run measured (``data.decoding_state.bytes``: a
decoder's state per sequence after one whole input).

Claims about recall (the ``claims`` section of ``conf/experiment/recall.yaml``) name cells by key,
``"<task> <backend> d<d_model> <setting>"`` (e.g. ``"mqar vanilla d64 V128 L64 N8"``), with the wildcards ``*``
and ``?`` (``"mqar vanilla d* *"``; brackets are literal, as in ``transnormer_t2[reverse_split:1]``): a side
matching several cells takes, per seed, its least favourable cell for the
claim (the claim must hold at every one); ``b`` may be a number (a fixed level, e.g. 0.9).
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from harness.run_record import RunRecord

PAGE = "recall"
PAGES = ("recall", "recall_order")  # the experiments whose runs and claims this page holds
PREFIX = "recall/"
CONFIDENCE = 0.95
SETTING_KNOBS = (("vocab_size", "V"), ("seq_len", "L"), ("num_kv_pairs", "N"), ("frac_noise", "noise"),
                 ("num_tokens_to_copy", "T"))
CELL = ["task", "backend", "d_model", "setting"]


def is_recall(record: RunRecord) -> bool:
    return record.task.startswith(PREFIX)


def backend_label(record: RunRecord) -> str:
    """The backend, with its layer plan when the run set one (e.g. T2's halves in reverse order)."""
    plan = (record.config.get("attention") or {}).get("layer_plan")
    return record.backend if plan in (None, "", [], {}) else f"{record.backend}[{plan}]"


def setting_label(task: Mapping[str, Any]) -> str:
    """The task's sizes that a cell is compared at, e.g. ``V128 L64 N8``."""
    return " ".join(f"{short}{task[key]:g}" if isinstance(task[key], float) else f"{short}{task[key]}"
                    for key, short in SETTING_KNOBS if task.get(key) is not None)


def runs_frame(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per completed recall run: its cell, learning rate, seed, accuracies, state size and wall time."""
    rows = []
    for record in records:
        if not is_recall(record) or record.status != "completed":
            continue
        config = record.config
        valid, test = record.primary_value(0), record.primary_value(1)
        if valid is None or test is None:
            continue
        state = (record.data or {}).get("decoding_state") or {}
        rows.append({
            "task": record.task.removeprefix(PREFIX), "backend": backend_label(record),
            "d_model": int(config["model"]["d_model"]), "setting": setting_label(config["task"]),
            "seq_len": int(config["task"].get("seq_len") or 0), "updates": int(config["trainer"]["max_steps"]),
            "lr": float(config["trainer"]["lr"]), "seed": int(record.seed), "valid": valid, "test": test,
            "state_bytes": state.get("bytes"), "wall_seconds": record.spent_seconds,
        })
    return pd.DataFrame(rows, columns=[*CELL, "seq_len", "updates", "lr", "seed", "valid", "test", "state_bytes",
                                       "wall_seconds"])


def main_budget(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs at each task's commonest training budget (the larger on a tie)."""
    if runs.empty:
        return runs
    counts = runs.groupby(["task", "updates"]).size().reset_index(name="n")
    best = counts.sort_values(["n", "updates"]).groupby("task").tail(1)
    return runs.merge(best[["task", "updates"]], on=["task", "updates"])


def seed_values(runs: pd.DataFrame) -> pd.DataFrame:
    """Per cell and seed: the run whose learning rate scored best on validation (the smaller rate on a tie)."""
    if runs.empty:
        return runs
    ordered = runs.sort_values([*CELL, "seed", "valid", "lr"], ascending=[True] * 5 + [False, True])
    return ordered.groupby([*CELL, "seed"], sort=False).head(1).reset_index(drop=True)


def interval(values: Sequence[float]) -> tuple[float, float]:
    """The 95% Student-t interval of the mean (the mean itself for one value or no spread)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2 or np.ptp(values) == 0:
        return mean, mean
    low, high = sps.t.interval(CONFIDENCE, len(values) - 1, loc=mean, scale=sps.sem(values))
    return float(low), float(high)


def cells(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per cell at the main budget: mean test accuracy over seeds, its interval, seeds, the chosen
    learning rates, the measured state size, the runs and their mean wall time."""
    columns = [*CELL, "key", "seq_len", "mean", "low", "high", "n", "lrs", "state_bytes", "runs", "wall_seconds"]
    main = main_budget(runs)
    if main.empty:
        return pd.DataFrame(columns=columns)
    chosen = seed_values(main)
    totals = main.groupby(CELL).agg(runs=("seed", "size"), wall=("wall_seconds", "mean"))
    found = []
    for cell, group in chosen.groupby(CELL, sort=True):
        low, high = interval(group["test"])
        state = group["state_bytes"].dropna()
        found.append({
            **dict(zip(CELL, cell)), "key": cell_key(*cell), "seq_len": int(group["seq_len"].iloc[0]),
            "mean": float(group["test"].mean()), "low": low, "high": high, "n": len(group),
            "lrs": ",".join(f"{lr:g}" for lr in sorted(set(group["lr"]))),
            "state_bytes": float(state.median()) if len(state) else math.nan, "runs": int(totals.loc[cell, "runs"]),
            "wall_seconds": float(totals.loc[cell, "wall"]),
        })
    return pd.DataFrame(found, columns=columns)


def cell_key(task: str, backend: str, d_model: int, setting: str) -> str:
    return f"{task} {backend} d{d_model} {setting}"


# ------------------------------------------------------------------------------------------------ claims
def claim_sides(a: str, b: str, expect: str, records: Sequence[RunRecord]) -> dict[str, dict[int, float]]:
    """Seed -> value of each side of a recall claim (see the module's docstring): a side matching several
    cells takes per seed its least favourable cell for ``a - b`` having the sign ``expect``; a number ``b`` is
    that level at every seed of ``a``."""
    chosen = seed_values(main_budget(runs_frame(records)))
    keys = chosen.apply(lambda r: cell_key(r["task"], r["backend"], r["d_model"], r["setting"]), axis=1) \
        if not chosen.empty else pd.Series(dtype=str)
    sign = 1 if expect == "greater" else -1

    def side(pattern: str, worst: str) -> dict[int, float]:
        if chosen.empty:
            return {}
        wildcard = re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."))
        matched = chosen[keys.map(lambda k: wildcard.fullmatch(k) is not None)]
        # a seed counts only where it has every matched cell (else its worst case is unknown)
        complete = matched.groupby("seed")["test"].agg(["count", worst])
        n_cells = matched.groupby(CELL).ngroups
        return {int(seed): float(row[worst]) for seed, row in complete.iterrows() if row["count"] == n_cells}

    found = {a: side(a, "min" if sign > 0 else "max")}
    try:
        level = float(b)
    except ValueError:
        found[b] = side(b, "max" if sign > 0 else "min")
    else:
        found[b] = dict.fromkeys(found[a], level)
    return found


# -------------------------------------------------------------------------------------------------- page
def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _cell_text(row: pd.Series) -> str:
    if row["n"] < 2:
        return f"{_pct(row['mean'])} (1 seed)"
    low, high = max(0.0, row["low"]), min(1.0, row["high"])  # an accuracy's interval, within [0, 100]%
    return f"{_pct(row['mean'])} [{_pct(low)}, {_pct(high)}]"


def _seeds(part: pd.DataFrame) -> str:
    low, high = int(part["n"].min()), int(part["n"].max())
    return f"{low} seed{'s' if low > 1 else ''}" if low == high else f"{low} to {high} seeds"


def _kib(value: float) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value / 1024:,.0f}"


def accuracy_table(part: pd.DataFrame) -> list[str]:
    """Backends down, (width, setting) across: mean test accuracy in % and its interval over seeds."""
    columns = sorted({(int(d), s) for d, s in zip(part["d_model"], part["setting"])},
                     key=lambda c: (_seq_of(c[1]), c[1], c[0]))
    header = ["backend", *[f"d{d} · {s}" for d, s in columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for backend, rows in part.groupby("backend", sort=True):
        by = {(int(r["d_model"]), r["setting"]): r for _, r in rows.iterrows()}
        texts = [_cell_text(by[c]) if c in by else "" for c in columns]
        lines.append("| " + " | ".join([backend, *texts]) + " |")
    return lines


def state_table(part: pd.DataFrame) -> list[str]:
    """The measured decoding state (KiB per sequence) of each backend at each width and length."""
    columns = sorted({(int(d), int(n)) for d, n in zip(part["d_model"], part["seq_len"])}, key=lambda c: (c[1], c[0]))
    header = ["backend", *[f"d{d} · L{n}" for d, n in columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for backend, rows in part.groupby("backend", sort=True):
        by = {(int(r["d_model"]), int(r["seq_len"])): r["state_bytes"] for _, r in rows.iterrows()}
        lines.append("| " + " | ".join([backend, *[_kib(by.get(c, math.nan)) for c in columns]]) + " |")
    return lines


def _seq_of(setting: str) -> int:
    for word in setting.split():
        if word.startswith("L") and word[1:].isdigit():
            return int(word[1:])
    return 0


def figures(part: pd.DataFrame, task: str) -> dict[str, Any]:
    """Accuracy against d_model (Zoology), against the state size (Based's frontier) and against length."""
    from harness.report import plots

    frame = part.assign(accuracy=100 * part["mean"], state_kib=part["state_bytes"] / 1024)
    found: dict[str, Any] = {}
    if frame["d_model"].nunique() > 1:
        found["width"] = plots.lines_by_label(frame, "d_model", "accuracy", "backend",
                                              f"{task}: accuracy against model width", "d_model",
                                              "test accuracy (%)", logx=True, facet="setting")
    if frame["state_kib"].notna().any():
        found["state"] = plots.lines_by_label(frame.dropna(subset=["state_kib"]), "state_kib", "accuracy",
                                              "backend", f"{task}: accuracy against recurrent state size",
                                              "decoding state per sequence (KiB)", "test accuracy (%)", logx=True,
                                              facet="setting")
    if frame["seq_len"].nunique() > 1:
        found["length"] = plots.lines_by_label(frame, "seq_len", "accuracy", "backend",
                                               f"{task}: accuracy against sequence length", "sequence length",
                                               "test accuracy (%)", logx=True, facet="d_model")
    return found


def page_markdown(table: pd.DataFrame, runs: pd.DataFrame, scale: str, plots_by_task: Mapping[str, Sequence[str]],
                  title: str) -> str:
    """The page: per task the accuracy table, the state sizes, the plots and the cost."""
    lines = [f"# {title} ({scale})", "",
             "Not a table of the paper: Zoology's and MAD's recall diagnostics (docs/recall.md). A cell is the "
             "mean test accuracy (%) over seeds with its 95% t-interval (clipped to [0, 100]); per seed the "
             "learning rate is the one with the best validation accuracy (Zoology's best over its grid). "
             "Generated from the run records by `python -m harness.report`.", ""]
    if table.empty:
        lines += ["No recall run at this scale yet: `./reproduce.sh recall --scale "
                  f"{scale} --seeds 3` (or `python -m harness.run -m experiment=recall scale={scale}`).", ""]
        return "\n".join(lines)
    for task, part in table.groupby("task", sort=True):
        mine = runs[runs["task"] == task]
        budget = int(main_budget(mine)["updates"].iloc[0])
        others = sorted(set(mine["updates"]) - {budget})
        hours = mine["wall_seconds"].sum() / 3600
        lines += [f"## {task}", "",
                  f"{int(part['runs'].sum())} runs at {budget:,} updates "
                  f"({_seeds(part)} a cell; learning rates "
                  f"{', '.join(f'{lr:g}' for lr in sorted(set(mine['lr'])))})"
                  + (f"; runs at other budgets ({', '.join(map(str, others))} updates) are left out" if others
                     else "") + ".", "", *accuracy_table(part), "",
                  "Decoding state per sequence after one whole input (KiB, measured by each run from the "
                  "decoder's state):", "", *state_table(part), "",
                  f"Cost: {len(mine)} runs, {mine['wall_seconds'].mean():.0f} s a run on average, "
                  f"{hours:.2f} h in all (wall time summed over runs).", ""]
        lines += [f"![{Path(p).stem}]({p})" for p in plots_by_task.get(task, ())] + [""]
    return "\n".join(lines)
