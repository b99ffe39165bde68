"""Markdown for the tables and the index pages."""
from __future__ import annotations

import math
from collections.abc import Sequence

from harness.report.build import FAILED, MISSING, OK, RUNNING, BuiltTable, Cell
from harness.report.stats import RankAgreement

REASON_CHARS = 90
COMPACT_ABOVE = 3  # metric columns


def number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def ours(cell: Cell) -> str:
    if cell.status == OK:
        stats = cell.stats
        text = number(stats.mean)
        if stats.n > 1:
            text += f" ± {stats.std:.2g} ({stats.n} seeds)"
        return text + (" ⚠" if cell.reason else "")
    if cell.status == FAILED:
        reason = cell.reason if len(cell.reason) <= REASON_CHARS else cell.reason[: REASON_CHARS - 1] + "…"
        return f"failed: {escape(reason)}"
    if cell.status == RUNNING:
        return "incomplete"
    return f"missing: {escape(cell.reason)}" if cell.reason else "missing"


def paper(cell: Cell) -> str:
    return number(cell.paper) if cell.paper is not None else escape(cell.paper_text)


def diff(cell: Cell) -> str:
    return f"{cell.diff:+.3g}" if cell.diff is not None else ""


def agreement(value: RankAgreement | None) -> str:
    if value is None:
        return "n/a (needs two rows with both numbers, and numbers that differ)"
    return f"τ = {value.tau:+.2f} (p = {value.p:.2g}, {value.n} rows)"


def stray_markdown(table: BuiltTable) -> list[str]:
    columns = [c for c in table.spec.columns if c.name != table.spec.average]
    lines = ["| " + " | ".join([table.spec.label_column, "setting", *(f"{c.label} (ours)" for c in columns)]) + " |",
             "|" + "---|" * (len(columns) + 2)]
    for row in table.stray:
        cells = [ours(row.cells[c.name]) if row.cells[c.name].records else "" for c in columns]
        lines.append("| " + " | ".join([escape(row.label), escape(row.detail), *cells]) + " |")
    return lines


def table_markdown(table: BuiltTable, plots: Sequence[str], paper_file: str | None) -> str:
    spec = table.spec
    variant_table = spec.label_column == "variant"
    compact = len(spec.columns) > COMPACT_ABOVE  # wide tables: "ours / paper" in one cell, Δ in the CSV only
    header = [spec.label_column] + (["our setting"] if variant_table else [])
    for column in spec.columns:
        header += [f"{column.label} (ours / paper)"] if compact else [
            f"{column.label} (ours)", f"{column.label} (paper)", "Δ"]
    header += ["params M (ours)"] + (["params M (paper)"] if any(r.paper_params_m for r in table.rows) else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.rows:
        cells = [escape(row.label)] + ([escape(row.detail)] if variant_table else [])
        for column in spec.columns:
            cell = row.cells[column.name]
            cells += [f"{ours(cell)} / {paper(cell) or '–'}"] if compact else [ours(cell), paper(cell), diff(cell)]
        cells.append(number(row.params_m))
        if len(header) > len(cells):
            cells.append(number(row.paper_params_m))
        lines.append("| " + " | ".join(cells) + " |")
    if table.baseline is not None:
        cells = [f"*{escape(table.baseline.label)}*"] + ([""] if variant_table else [])
        for column in spec.columns:
            value = ours(table.baseline.cells[column.name])
            cells += [f"{value} / –"] if compact else [value, "", ""]
        lines.append("| " + " | ".join(cells + [""] * (len(header) - len(cells))) + " |")

    counts = table.counts()
    warned = any(cell.status == OK and cell.reason for row in table.rows for cell in row.cells.values())
    tasks = sorted({c.task for c in spec.columns if c.task}) or [table.task]
    out = [
        f"# {spec.name}: {spec.title}",
        "",
        f"Scale `{table.scale}`; task{'s' if len(tasks) > 1 else ''} {', '.join(f'`{t}`' for t in tasks)}; cells: "
        f"{counts[OK]} ok, {counts[FAILED]} failed, {counts[RUNNING]} incomplete, {counts[MISSING]} missing. "
        + (f"Paper numbers: `results/paper/{paper_file}` (column `source`: paper, secondary or unverified)."
           if paper_file else "No paper numbers for this table."),
        "",
        f"Reproduce: `./reproduce.sh {spec.name} --scale {table.scale}`; this page: "
        f"`python -m harness.report --scale {table.scale} --tables {spec.name}`.",
        "",
        *lines,
        "",
        "Ours: mean over seeds (± sample standard deviation, number of seeds when more than one); Δ = ours − "
        "paper" + (" (in the CSV)" if compact else "") + "."
        + (" ⚠: some seeds failed (reasons in the CSV)." if warned else "")
        + " Our absolute numbers come from another model size, data and machine; compare orderings, not values."
        + (f" *{table.baseline.label}*: the score of always predicting the training split's commonest class, on "
           "our data (a model below it has learnt nothing)." if table.baseline is not None else ""),
        "",
        "Rank agreement with the paper (Kendall's tau-b over rows with both numbers):",
        "",
    ]
    out += [f"- {column.label}: {agreement(table.agreement[column.name])}" for column in spec.columns]
    if spec.note:
        out += ["", spec.note]
    if table.notes:
        out += ["", "Notes:", ""] + [f"- {escape(note)}" for note in table.notes]
    if table.expected:
        out += ["", *table.expected]
    if table.stray:
        out += ["", "Runs with other settings than the rest of their column (training, data or model size): not "
                "compared in the table above nor in the rank agreement:", "", *stray_markdown(table)]
    if plots:
        out += [""] + [f"![{name}](plots/{name})" for name in plots]
    out.append("")
    return "\n".join(out)
