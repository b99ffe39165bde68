"""Tables that do not come from training runs' records: Table 7 (the speed benchmark's CSV), Table 2 and
Figure 2 (the diagnostics' CSVs). Each is found under the results folder, per scale (:class:`Layout`)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.report.build import FAILED, MISSING, OK, BuiltTable, Cell, Row, column_agreement
from harness.report.layout import Layout
from harness.report.paper import NOT_IN_PAPER, paper_number, read_paper
from harness.report.specs import Column, RunTable
from harness.report.stats import SeedStats


def _table(name: str, title: str, paper_file: str, columns: tuple[Column, ...]) -> RunTable:
    return RunTable(name, title, paper_file, (), columns, lambda record, variant: None)


def length_label(n: int) -> str:
    return f"{n // 1024}K" if n % 1024 == 0 else str(n)


def build_table7(layout: Layout, scale: str, paper_dir: Path) -> BuiltTable | None:
    """Table 7 from the benchmark's ``table7.csv``: one column per (mode, length), ours beside the paper's
    (a GPU's steps/sec: compare orderings and ratios, not values). Out of memory shows as failed: OOM."""
    path = layout.bench_csv(scale)
    if not path.is_file():
        return None
    ours = pd.read_csv(path, dtype={"error": str}, keep_default_na=False)
    paper = read_paper(paper_dir, "table7.csv")
    pairs = {(str(r["mode"]), int(r["length"])) for _, r in ours.iterrows()}
    pairs |= {(str(r["mode"]), int(r["length"])) for _, r in paper.iterrows()}
    modes = ["train", "inference"]
    pairs = sorted(pairs, key=lambda p: (modes.index(p[0]) if p[0] in modes else 9, p[1]))
    columns = tuple(Column(f"{m}_{n}", f"{m} {length_label(n)}", "max") for m, n in pairs)
    spec = _table("table7", "Training and inference speed (steps/sec, higher is better)", "table7.csv", columns)

    labels = dict(zip(paper["backend"], paper["method"]))
    order = list(dict.fromkeys(list(paper["backend"]) + [str(x) for x in ours.get("label", ours["backend"])]))
    rows = []
    for key in order:
        mine = ours[ours.get("label", ours["backend"]).astype(str) == key]
        theirs = paper[paper["backend"] == key]
        cells = {}
        for (mode, length), column in zip(pairs, columns):
            found = mine[(mine["mode"] == mode) & (mine["length"].astype(int) == length)]
            cell = _bench_cell(found.iloc[0]) if len(found) else Cell(
                MISSING, reason=f"not measured: ./reproduce.sh table7 --scale {scale}")
            match = theirs[(theirs["mode"] == mode) & (theirs["length"].astype(int) == length)]
            cell.paper_text = str(match.iloc[0]["steps_per_sec"]) if len(match) else ""
            cell.paper = paper_number(cell.paper_text)
            cells[column.name] = cell
        label = labels.get(key, key) if key in labels else f"{key} {NOT_IN_PAPER}"
        row = Row(key, label if label in (key, f"{key} {NOT_IN_PAPER}") else f"{label} ({key})", cells,
                  paper_source=", ".join(sorted(set(theirs["source"]))) if len(theirs) else "")
        if len(mine) and "parameters" in mine:
            params = pd.to_numeric(mine["parameters"], errors="coerce").dropna()
            row.params_m = float(params.iloc[0]) / 1e6 if len(params) else None
        rows.append(row)
    return BuiltTable(spec, scale, "lm", rows, column_agreement(spec, rows))


def _bench_cell(row: pd.Series) -> Cell:
    status = str(row["status"])
    error = str(row.get("error", "") or "")
    if status == "ok":
        value = float(row["steps_per_sec"])
        low = float(row.get("steps_per_sec_min") or value)
        high = float(row.get("steps_per_sec_max") or value)
        return Cell(OK, SeedStats(value, 0.0, 1, low, high))
    if status == "oom" or (status == "skipped" and error.startswith("oom")):
        return Cell(FAILED, reason="OOM" + (f" ({error})" if status == "skipped" else ""))
    return Cell(FAILED, reason=f"{status}: {error}" if error else status)


def build_table2(layout: Layout, scale: str, paper_dir: Path) -> BuiltTable | None:
    """Table 2 from the diagnostics' ``table2.csv`` (one line per run: backend, deviation)."""
    path = layout.gradient_csv(scale)
    if not path.is_file():
        return None
    ours = pd.read_csv(path)
    paper = read_paper(paper_dir, "table2.csv")
    column = Column("gradient_deviation", "gradient deviation", "min")
    spec = _table("table2", "Relative standard deviation of the q/k/v gradients over training", "table2.csv",
                  (column,))
    labels = dict(zip(paper["backend"], paper["method"]))
    order = list(dict.fromkeys(list(paper["backend"]) + [str(b) for b in ours["backend"]]))
    rows = []
    for key in order:
        values = pd.to_numeric(ours.loc[ours["backend"].astype(str) == key, "deviation"], errors="coerce")
        stats = SeedStats.of(values.dropna().tolist())
        if stats:
            cell = Cell(OK, stats)
        elif len(values):  # runs analysed, but shorter than one window of updates
            cell = Cell(FAILED, reason="fewer recorded updates than one window (train longer or lower --window)")
        else:
            cell = Cell(MISSING, reason=f"not run: ./reproduce.sh table2 --scale {scale}")
        theirs = paper[paper["backend"] == key]
        cell.paper_text = str(theirs.iloc[0]["gradient_deviation"]) if len(theirs) else ""
        cell.paper = paper_number(cell.paper_text)
        rows.append(Row(key, labels.get(key, key), {column.name: cell},
                        paper_source=str(theirs.iloc[0]["source"]) if len(theirs) else ""))
    return BuiltTable(spec, scale, "lm", rows, column_agreement(spec, rows))


def read_locality(layout: Layout, scale: str) -> pd.DataFrame | None:
    """Figure 2's curves, the mean over layers only: one line per (run, ratio) with its ``model`` (the backend;
    the label in files written before the backend and seed columns) and ``seed``."""
    path = layout.locality_csv(scale)
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    frame = frame[frame["layer"].astype(str) == "all"].copy()
    backend = frame["backend"].fillna("").astype(str) if "backend" in frame else pd.Series("", index=frame.index)
    frame["model"] = backend.where(backend != "", frame["label"].astype(str))
    if "seed" not in frame:
        frame["seed"] = None
    return frame


def locality_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model and ratio: the mean score over seeds, its sample standard deviation and the seed count."""
    grouped = frame.groupby(["model", "ratio"], sort=True)["score"]
    means = grouped.agg(["mean", "std", "count"]).reset_index()
    return means.rename(columns={"mean": "score", "count": "n_seeds"})


def locality_markdown(frame: pd.DataFrame, scale: str, plot: str | None) -> str:
    """Figure 2 as a table: the locally accumulated attention at a few neighbourhood sizes per model (the mean
    over seeds, with the standard deviation when there are several)."""
    means = locality_means(frame)
    ratios = [r for r in (0.05, 0.1, 0.2, 0.4, 0.6) if (means["ratio"] - r).abs().min() < 1e-9]
    lines = ["| model | seeds | " + " | ".join(f"l(r = {r:g})" for r in ratios) + " |",
             "|---|---|" + "---|" * len(ratios)]
    for model, part in means.groupby("model", sort=True):
        cells = []
        for r in ratios:
            found = part[(part["ratio"] - r).abs() < 1e-9]
            if not len(found):
                cells.append("")
                continue
            value, std = float(found["score"].iloc[0]), found["std"].iloc[0]
            cells.append(f"{value:.3f}" + (f" ± {std:.3f}" if pd.notna(std) else ""))
        lines.append(f"| {model} | {int(part['n_seeds'].max())} | " + " | ".join(cells) + " |")
    out = [
        "# fig2: Figure 2, locally accumulated attention",
        "",
        f"Scale `{scale}`. l(r): the share of attention a token puts within the neighbourhood holding a fraction r "
        "of the sequence, averaged over tokens, heads and layers (harness/analyze/locality.py). The paper's "
        "reading: softmax attention puts about 80% of its mass within 40% of the sequence, kernel linear "
        "attention about 40% (secondary source; the paper gives a figure, no numbers). Mean over seeds ± their "
        "standard deviation; the claims page compares the models seed by seed.",
        "",
        f"Reproduce: `./reproduce.sh fig2 --scale {scale}`.",
        "",
        *lines,
        "",
    ]
    if plot:
        out += [f"![locality](plots/{plot})", ""]
    return "\n".join(out)


def fig2_status(frame: pd.DataFrame | None) -> str:
    return "missing" if frame is None or frame.empty else f"{frame['model'].nunique()} models"

