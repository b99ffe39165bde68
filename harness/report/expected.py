"""Each run table's "expected results" block, as the best harnesses publish them (state-spaces/s4's experiments page):
per row, our number at this scale with its spread over seeds, the wall time of a run on the machine that ran it,
the paper's number, and what a seed of the row costs at paper scale in GPU-hours.

The paper-scale cost is not recomputed here (the report reads files, it builds no model): it comes from the
compute plan's CSV, ``docs/compute-plan.csv``, written by ``./reproduce.sh all --scale paper --seeds 1 --dry-run
--plan-csv docs/compute-plan.csv`` (FLOPs counted on the meta device, divided by the stated GPU's sustained
throughput; harness/reproduce/compute.py). A row's figure is the sum, over the tasks of the table that run its
backend, of the mean GPU-hours a run (Table 5: pretraining and every GLUE task; Table 6: the five LRA tasks).
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from harness.report.build import OK, BuiltTable, Row
from harness.report.render import escape, ours, paper
from harness.run_record import RECORD_FILE, RunRecord, read_record

PLAN = Path(__file__).resolve().parents[2] / "docs" / "compute-plan.csv"
PLAN_COMMAND = "./reproduce.sh all --scale paper --seeds 1 --dry-run --plan-csv docs/compute-plan.csv"


def read_plan(path: Path | None = None) -> pd.DataFrame | None:
    """The compute plan per table, task and backend (``docs/compute-plan.csv`` by default); None when it has not
    been written."""
    path = PLAN if path is None else path
    return pd.read_csv(path) if path.is_file() else None


def _hours(seconds: list[float]) -> str:
    if not seconds:
        return "–"
    mean = sum(seconds) / len(seconds)
    return f"{mean / 60:.1f} min" if mean >= 60 else f"{mean:.0f} s"


def _machine(table: BuiltTable) -> str:
    hosts = {(r.host.get("cpu_count"), r.host.get("gpu")) for row in table.rows
             for r in row.records if r.host}
    cpus = sorted({c for c, _ in hosts if c})
    return f"{'/'.join(map(str, cpus))}-core CPU" if cpus and not any(g for _, g in hosts) else "the runs' machines"


def _gpu_hours(plan: pd.DataFrame | None, table: str, backend: str | None) -> str:
    """A seed of the row at paper scale: the mean GPU-hours a run of each of the table's tasks, summed. A run the
    plan shares with an earlier table (the same config: 1+elu's masked-LM pretraining is Table 1's) is listed
    there only, so a task of the table missing for the backend is read off that other table's row."""
    if plan is None or backend is None:
        return "–"
    mine = plan[(plan["table"] == table) & (plan["backend"] == backend)]
    if mine.empty:
        return "–"
    per_task = mine.groupby("task")["gpu_hours_per_run"].mean().to_dict()
    for task in set(plan.loc[plan["table"] == table, "task"]) - set(per_task):
        shared = plan[(plan["task"] == task) & (plan["backend"] == backend)]
        if not shared.empty:
            per_task[task] = float(shared["gpu_hours_per_run"].mean())
    total = float(sum(per_task.values()))
    return f"{total:,.3g}" if math.isfinite(total) else "–"


def _row_runs(row: Row) -> list[RunRecord]:
    """Every run behind the row (all its columns), once each."""
    seen: dict[str, RunRecord] = {}
    for cell in row.cells.values():
        for record in cell.records:
            seen.setdefault(str(record.run_dir), record)
    return list(seen.values())


def pretraining_folder(record: RunRecord) -> Path | None:
    """The masked-LM run a fine-tuning started from (its record's ``data.init_from``), found beside the fine-tuning
    in the same runs folder (the recorded path is the machine's that trained it); None when there is none."""
    source = ((record.data or {}).get("init_from") or {}).get("run_dir")
    root = (record.config.get("run") or {}).get("root")
    if not source or not root:
        return None
    try:
        relative = Path(source).relative_to(root)
    except ValueError:
        return None
    return next((a / relative for a in record.folder.parents if (a / relative / RECORD_FILE).is_file()), None)


def _pretraining_seconds(records: list[RunRecord]) -> list[float]:
    """The wall times (``spent_seconds``) of the distinct pretraining runs behind ``records`` (Table 5's GLUE
    fine-tunings)."""
    folders = {folder for folder in map(pretraining_folder, records) if folder is not None}
    raws = [read_record(folder) for folder in sorted(folders)]
    spent = [RunRecord.from_json(raw).spent_seconds for raw in raws if raw]
    return [seconds for seconds in spent if seconds]


def _total(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def expected_markdown(table: BuiltTable, plan: pd.DataFrame | None) -> list[str]:
    """The block's lines (a heading, a table, how it was made, what the table's runs cost); nothing for a table
    with no run. The headline column is the table's average where it has one (Tables 5, 6), else its first."""
    if not any(cell.status == OK for row in table.rows for cell in row.cells.values()):
        return []
    columns = table.spec.columns
    first = next((c for c in columns if c.name == table.spec.average), columns[0])
    gpu = str(plan["gpu"].iloc[0]) if plan is not None and len(plan) else "no compute plan"
    lines = ["## Expected results", "",
             f"| {table.spec.label_column} | {first.label} at `{table.scale}` (ours) | wall a run | "
             f"{first.label} (paper) | GPU-hours a seed at paper scale |", "|---|---|---|---|---|"]
    runs = 0
    spent = 0.0
    everything: list[RunRecord] = []
    for row in table.rows:
        cell = row.cells[first.name]
        records = _row_runs(row)
        everything += records
        seconds = [r.spent_seconds for r in records if r.spent_seconds]
        runs, spent = runs + len(seconds), spent + sum(seconds)
        backend = records[0].backend if records else None
        lines.append(f"| {escape(row.label)} | {ours(cell)} | {_hours(seconds)} | {paper(cell) or '–'} | "
                     f"{_gpu_hours(plan, table.spec.name, backend)} |")
    lines += ["", f"Ours: mean ± standard deviation over seeds; wall a run: the mean over the row's runs on "
              f"{_machine(table)}. Paper scale: the compute plan ({gpu}; `{PLAN_COMMAND}`), the row's backend over "
              "the table's tasks, one seed." + ("" if plan is not None else " No compute plan in docs/: run that "
                                                 "command to fill the column.")]
    if runs:
        before = _pretraining_seconds(everything)
        pretrained = (f"; before them, the masked-LM pretrainings they fine-tune: {len(before)} runs, "
                      f"{_total(sum(before))}" if before else "")
        lines += ["", f"Cost of this page's runs: {runs} runs, {_total(spent)} of run time summed{pretrained} (each "
                  "run's own wall clock; runs side by side share the machine)."]
    return lines
