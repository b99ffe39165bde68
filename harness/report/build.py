"""Build one paper table from run records: rows and columns of the paper, our value beside the paper's.

Every cell is filled from the runs that map to its row (:mod:`harness.report.specs`) and its column's task.
Runs that differ only by seed form a group; a cell shows one group (the one with the most completed seeds,
then the most recent), its mean and spread over seeds, the paper's number and the difference. A cell whose
runs all failed says so with the reason; a cell with no run says missing; the rest of the table is built
regardless.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.report.paper import NOT_IN_PAPER, paper_number, read_paper
from harness.report.specs import Column, RunTable, backend_row
from harness.report.stats import RankAgreement, SeedStats, rank_agreement
from harness.run_record import RunRecord

OK, FAILED, RUNNING, MISSING = "ok", "failed", "running", "missing"


@dataclass
class Cell:
    status: str
    stats: SeedStats | None = None
    paper: float | None = None
    paper_text: str = ""
    reason: str = ""
    records: list[RunRecord] = field(default_factory=list)
    ignored_groups: int = 0  # other configurations that also map to this cell

    @property
    def diff(self) -> float | None:
        if self.stats is None or self.paper is None:
            return None
        return self.stats.mean - self.paper


@dataclass
class Row:
    key: str
    label: str
    cells: dict[str, Cell]
    detail: str = ""
    params_m: float | None = None
    paper_params_m: float | None = None
    paper_source: str = ""

    @property
    def records(self) -> list[RunRecord]:
        """The runs shown in this row (the first column that has any)."""
        return next((cell.records for cell in self.cells.values() if cell.records), [])


@dataclass
class BuiltTable:
    spec: RunTable
    scale: str
    task: str
    rows: list[Row]
    agreement: dict[str, RankAgreement | None]
    notes: list[str] = field(default_factory=list)
    baseline: Row | None = None  # the trivial predictor's scores (spec.baseline), shown below the rows
    stray: list[Row] = field(default_factory=list)  # runs with other settings than their column's: not compared
    expected: list[str] = field(default_factory=list)  # the page's expected-results block (harness/report/expected.py)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((OK, FAILED, RUNNING, MISSING), 0)
        for row in self.rows:
            for name, cell in row.cells.items():
                if name != self.spec.average:
                    counts[cell.status] += 1
        return counts


def _task_matches(record_task: str, wanted: str) -> bool:
    return record_task == wanted or record_task.startswith(wanted + "/")


def column_value(record: RunRecord, column: Column) -> float | None:
    """The run's value for ``column`` (a fraction shown as a percentage where the column says so)."""
    value = record.primary_value(column.split)
    if value is not None and column.percent and abs(value) <= 1.0:
        value *= 100.0
    return value


def choose_group(records: list[RunRecord], context: str | None = None) -> tuple[list[RunRecord], int]:
    """The runs of one group: first a group sharing ``context`` (the settings of the rest of the column),
    then the one with the most completed seeds, then the most recent; and how many other groups there were."""
    groups: dict[str, list[RunRecord]] = defaultdict(list)
    for record in records:
        groups[record.group].append(record)
    ranked = sorted(
        groups.values(),
        key=lambda runs: (runs[0].context == context, sum(r.status == "completed" for r in runs),
                          max(r.last_written for r in runs)),
        reverse=True,
    )
    chosen = sorted(ranked[0], key=lambda r: r.seed)
    return chosen, len(ranked) - 1


def dominant_context(rows: Iterable[list[RunRecord]]) -> str | None:
    """The context (:attr:`RunRecord.context`) that the most rows have a completed run with (ties: the one with
    the most completed runs)."""
    rows_with, runs_with = Counter(), Counter()
    for runs in rows:
        done = [r.context for r in runs if r.status == "completed"]
        rows_with.update(set(done))
        runs_with.update(done)
    return max(rows_with, key=lambda c: (rows_with[c], runs_with[c])) if rows_with else None


def make_cell(records: list[RunRecord], column: Column, context: str | None = None) -> Cell:
    if not records:
        return Cell(MISSING)
    chosen, ignored = choose_group(records, context)
    completed = [r for r in chosen if r.status == "completed"]
    values = [v for v in (column_value(r, column) for r in completed) if v is not None]
    failed = [r for r in chosen if r.status == "failed"]
    if values:
        reason = f"{len(failed)} of {len(chosen)} seeds failed: {failed[0].reason}" if failed else ""
        return Cell(OK, SeedStats.of(values), reason=reason, records=chosen, ignored_groups=ignored)
    if failed:
        return Cell(FAILED, reason=failed[0].reason or "failed (no reason recorded)", records=chosen,
                    ignored_groups=ignored)
    if completed:
        return Cell(FAILED, reason=f"completed but no value for split {column.split} of the primary metric",
                    records=chosen, ignored_groups=ignored)
    interrupted = [r for r in chosen if r.status == "interrupted"]
    if interrupted:
        return Cell(RUNNING, reason=f"interrupted: {interrupted[0].reason or 'stopped by a signal'}",
                    records=chosen, ignored_groups=ignored)
    return Cell(RUNNING, reason="started, not finished (still running, or killed: rerun to resume)",
                records=chosen, ignored_groups=ignored)


def describe_variant(record: RunRecord, variant: Mapping[str, Any]) -> str:
    """Our concrete setting of a row, e.g. ``Diag 2 + Norm 2`` or ``block_size=32``."""
    parts = []
    if record.preset and "attention.layer_plan" not in variant:
        parts.append(describe_plan(None, record.n_layers))
    for path, value in sorted(variant.items()):
        if path == "attention.layer_plan":
            parts.append(describe_plan(value, record.n_layers))
        else:
            parts.append(f"{path.split('.', 1)[1]}={value}")
    return ", ".join(parts) or "defaults"


def describe_plan(plan: Any, n_layers: int) -> str:
    if plan is None:
        return f"Diag {n_layers // 2} + Norm {n_layers - n_layers // 2}"
    if isinstance(plan, str):
        kind, _, arg = plan.partition(":")
        if arg.isdigit():
            k = int(arg)
            first, second = ("Diag", "Norm") if kind == "split" else ("Norm", "Diag")
            return f"{first} {k} + {second} {n_layers - k}"
        return f"{plan} ({n_layers} layers)"
    if isinstance(plan, Mapping) and "split" in plan:
        names = [s.get("name", "?") if isinstance(s, Mapping) else str(s) for s in (plan["first"], plan["second"])]
        k = int(plan["split"])
        return f"{names[0]} {k} + {names[1]} {n_layers - k}"
    return str(plan)


def _choose_task(spec: RunTable, keyed: list[tuple[RunRecord, str]]) -> str:
    """The task with the most rows completed; on a tie the first of ``spec.tasks`` (the paper's)."""
    def filled(task: str) -> int:
        return len({key for record, key in keyed if record.status == "completed" and _task_matches(record.task, task)})

    return max(spec.tasks, key=lambda task: (filled(task), -spec.tasks.index(task)))


def table_runs(
    spec: RunTable, records: Iterable[RunRecord], scale: str
) -> tuple[str, dict[str, list[RunRecord]], dict[int, Mapping[str, Any]]]:
    """The table's task (the one with the most rows run), its runs by row key, and each run's variant (by
    ``id(record)``): what both the table page and the claims read."""
    candidates = [r for r in records if r.scale == scale and any(_task_matches(r.task, t) for t in spec.tasks)]
    keyed, variants = [], {}
    for record in candidates:
        variant = record.variant
        if variant is None:  # conf/ could not be composed for it when it ran: no row to place it in
            continue
        key = spec.row_key(record, variant)
        if key is not None:
            keyed.append((record, key))
            variants[id(record)] = variant
    task = _choose_task(spec, keyed)
    by_row: dict[str, list[RunRecord]] = defaultdict(list)
    for record, key in keyed:
        by_row[key].append(record)
    return task, by_row, variants


def column_runs(by_row: Mapping[str, list[RunRecord]], key: str, column: Column, task: str) -> list[RunRecord]:
    """The runs of row ``key`` that fill ``column`` (its task, else the table's)."""
    return [r for r in by_row.get(key, []) if _task_matches(r.task, column.task or task)]


def build_run_table(
    spec: RunTable, records: Iterable[RunRecord], scale: str, paper_dir: str | Path
) -> BuiltTable:
    """The table ``spec`` at ``scale`` from ``records`` (any scale; others are ignored)."""
    task, by_row, variants = table_runs(spec, records, scale)

    paper = read_paper(paper_dir, spec.paper_file)
    paper_rows: dict[str, Mapping[str, Any]] = {}
    if paper is not None and spec.paper_key is not None:
        for _, row in paper.iterrows():
            paper_rows.setdefault(spec.paper_key(row), row)
    labels = {key: str(row.get(spec.label_column, key)) for key, row in paper_rows.items()}
    for key, label in spec.rows:
        labels.setdefault(key, label)
    extra = sorted((k for k in by_row if k not in labels), key=spec.sort_key)
    always = set(labels)  # the paper's rows and the spec's: shown even without a run
    order = list(labels) + extra
    if spec.row_key is backend_row:  # a backend the paper did not run (a plugin, a successor): said in every view
        labels |= {key: f"{key} {NOT_IN_PAPER}" for key in extra}
    if spec.sort_rows:
        order.sort(key=spec.sort_key)

    def runs(key: str, column: Column) -> list[RunRecord]:
        return column_runs(by_row, key, column, task)

    contexts = {c.name: dominant_context(runs(key, c) for key in order) for c in spec.columns}
    references = {c.name: next((r for key in order for r in runs(key, c) if r.context == contexts[c.name]), None)
                  for c in spec.columns}
    rows, stray, notes = [], [], defaultdict(list)  # notes: (row, note) -> the columns it applies to
    unrun = False
    for key in order:
        paper_row = paper_rows.get(key, {})
        label = labels.get(key, key)
        cells, others = {}, {}
        for column in spec.columns:
            if column.name == spec.average:
                continue
            found = runs(key, column)
            fair = [r for r in found if r.context == contexts[column.name]]
            cell = make_cell(fair, column, contexts[column.name])
            if not found:
                cell.reason = spec.unrun.get(key) or "not run"
                unrun = True
            elif not fair:
                cell.reason = "no run with the column's settings (runs with other settings: below the table)"
            unfair = [r for r in found if r.context != contexts[column.name]]
            if unfair:  # runs with other settings than the column's: shown below the table, not in it
                others[column.name] = make_cell(unfair, column)
            cell.paper_text = str(paper_row.get(column.name, ""))
            cell.paper = paper_number(cell.paper_text)
            if cell.ignored_groups:
                notes[label, f"{cell.ignored_groups} other configuration(s) also match, not shown (shown: the one "
                       "with the most seeds, then the most recent)"].append(column.label)
            cells[column.name] = cell
        if spec.average:
            cells[spec.average] = _average_cell(cells, str(paper_row.get(spec.average, "")),
                                                 [c for c in spec.columns if c.name != spec.average])
        if others:
            stray.append(_stray_row(spec, key, label, others, references, variants))
        if key not in always and not any(cell.records for cell in cells.values()):
            continue  # a row only runs with other settings made: below the table alone
        row = Row(key, label, cells, paper_source=str(paper_row.get("source", "")))
        _describe_row(row, variants)
        row.paper_params_m = paper_number(str(paper_row.get("params_m", "")))
        rows.append(row)
    lines = [f"{label} ({', '.join(columns)}): {note}" for (label, note), columns in notes.items()]
    if unrun:
        lines.append(f"missing: not run: no run of the row at this scale; `./reproduce.sh {spec.name} --scale {scale}` "
                     "runs it")
    baseline = baseline_row(spec, rows) if spec.baseline else None
    return BuiltTable(spec, scale, task, rows, column_agreement(spec, rows), lines, baseline, stray)


def _describe_row(row: Row, variants: Mapping[int, Mapping[str, Any]]) -> None:
    shown = next((cell.records[0] for cell in row.cells.values() if cell.records), None)
    if shown is not None:
        row.detail = describe_variant(shown, variants.get(id(shown), {}))
        total = shown.parameters.get("total")
        row.params_m = total / 1e6 if total else None


def _stray_row(spec: RunTable, key: str, label: str, others: dict[str, Cell],
               references: Mapping[str, RunRecord | None], variants: Mapping[int, Mapping[str, Any]]) -> Row:
    """A row of runs whose settings differ from their column's: its cells, and how the settings differ."""
    cells = {c.name: others.get(c.name, Cell(MISSING, reason="")) for c in spec.columns if c.name != spec.average}
    row = Row(key, label, cells)
    _describe_row(row, variants)
    name = next(iter(others))
    reference, shown = references.get(name), others[name].records[0]
    if reference is not None:
        row.detail = (row.detail + "; " if row.detail else "") + context_difference(shown, reference)
    return row


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def context_difference(record: RunRecord, reference: RunRecord, limit: int = 4) -> str:
    """The settings outside the row's business where ``record`` differs from ``reference`` (the column's runs),
    e.g. ``trainer.max_steps=800 (the table: 200)``."""
    mine, theirs = _flatten(record.context_config), _flatten(reference.context_config)
    keys = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    parts = [f"{k}={mine.get(k)} (the table: {theirs.get(k)})" for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f"and {len(keys) - limit} more")
    return ", ".join(parts) or "other settings"



def baseline_row(spec: RunTable, rows: list[Row]) -> Row | None:
    """The trivial predictor's score per column, from the runs shown (the same data gives every run the same
    value; the mean covers columns whose runs saw different data). None when no run records one."""
    cells = {}
    for column in spec.columns:
        if column.name == spec.average:
            continue
        values = []
        for row in rows:
            for record in row.cells[column.name].records:
                value = record.baseline_value(column.split)
                if value is not None:
                    values.append(value * 100.0 if column.percent and abs(value) <= 1.0 else value)
        cells[column.name] = Cell(OK, SeedStats.of([sum(values) / len(values)])) if values else Cell(MISSING)
    if all(cell.status == MISSING for cell in cells.values()):
        return None
    if spec.average:
        cells[spec.average] = _average_cell(cells, "")
    return Row(spec.baseline.replace(" ", "_"), spec.baseline, cells)


def _average_cell(cells: dict[str, Cell], paper_text: str, columns: Sequence[Column] = ()) -> Cell:
    """The mean over the other columns. Per seed where every column's runs have that seed (its spread is then
    the seeds', as the claims page's paired comparison of the average); else the mean of the columns' means."""
    parts = list(cells.values())
    if parts and all(c.status == OK for c in parts):
        by_seed = _per_seed_average(cells, columns)
        values = list(by_seed.values()) or [sum(c.stats.mean for c in parts) / len(parts)]
        cell = Cell(OK, SeedStats.of(values))
    else:
        cell = Cell(MISSING, reason="needs every column")
    cell.paper_text, cell.paper = paper_text, paper_number(paper_text)
    return cell


def _per_seed_average(cells: dict[str, Cell], columns: Sequence[Column]) -> dict[int, float]:
    """seed -> the mean over the columns of that seed's run, for the seeds every column has."""
    per_column = []
    for column in columns:
        cell = cells.get(column.name)
        if cell is None or not cell.records:
            return {}
        values = {r.seed: column_value(r, column) for r in cell.records}
        per_column.append({seed: v for seed, v in values.items() if v is not None and math.isfinite(v)})
    if not per_column:
        return {}
    common = sorted(set.intersection(*(set(values) for values in per_column)))
    return {seed: sum(values[seed] for values in per_column) / len(per_column) for seed in common}


def column_agreement(spec: RunTable, rows: list[Row]) -> dict[str, RankAgreement | None]:
    result = {}
    for column in spec.columns:
        pairs = [(row.cells[column.name].stats.mean, row.cells[column.name].paper) for row in rows
                 if row.cells[column.name].status == OK and row.cells[column.name].paper is not None]
        result[column.name] = rank_agreement([p[0] for p in pairs], [p[1] for p in pairs])
    return result


def long_frame(table: BuiltTable) -> pd.DataFrame:
    """One line per (row, column): everything the Markdown shows, and the run folders behind it."""
    lines = []
    for row in table.rows + ([table.baseline] if table.baseline else []):
        for column in table.spec.columns:
            cell = row.cells[column.name]
            stats = cell.stats
            lines.append({
                "table": table.spec.name, "scale": table.scale, "task": column.task or table.task,
                "row_key": row.key, "row": row.label, "setting": row.detail, "column": column.name,
                "status": "baseline" if row is table.baseline else cell.status,
                "ours_mean": stats.mean if stats else None,
                "ours_std": stats.std if stats else None, "n_seeds": stats.n if stats else 0,
                "ours_min": stats.low if stats else None, "ours_max": stats.high if stats else None,
                "paper": cell.paper, "paper_text": cell.paper_text, "paper_source": row.paper_source,
                "diff": cell.diff, "reason": cell.reason, "params_m": row.params_m,
                "paper_params_m": row.paper_params_m,
                "config_group": cell.records[0].group[:16] if cell.records else "",
                "run_dirs": ";".join(r.relative_folder for r in cell.records),  # under the runs root
            })
    return pd.DataFrame(lines)
