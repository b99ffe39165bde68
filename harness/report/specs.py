"""The paper's tables as specifications: rows, columns, where our numbers come from, how runs map to rows.

Each table's spec is data in its experiment file's ``report`` section (:func:`run_tables` reads them); this
module holds what data cannot say: the row keys it names. Run-based tables (every table but 2, 7 and Figure 2,
which come from the benchmark and the diagnostics) are a :class:`RunTable`: a row is a backend (Tables 4-6) or a
TransNormer variant (the ablations), and ``row_key(record, variant)`` says which row a run belongs to, from its
backend and the variant its record states (how its settings differ from the defaults). ``paper_key(row)`` gives
the same key to a row of the paper's CSV (``results/paper/<table>.csv``), so ours and the paper's meet in one row
whatever the scale: layer plans are keyed by the fraction of layers (the paper's ablations have 12 layers, ours
fewer).

The paper ran the ablations (Tables 1, 3, 8-12) on the bidirectional (masked) LM; ``tasks`` lists the masked
LM first and the causal LM second, and a table shows the task with the most rows run (the first on a tie).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from fractions import Fraction
from typing import Any

from harness.experiments import EXPERIMENTS, TablePlan, section, table_names, table_plan
from harness.run_record import RunRecord

PAPER_ABLATION_LAYERS = 12  # the paper's ablations: a 12-layer bidirectional LM
ABLATION_TASKS = ("mlm", "lm")
ABLATION_BACKEND = "transnormer_t2"

RowKey = Callable[[RunRecord, Mapping[str, Any]], "str | None"]
PLOTS = ("bars", "block_size", "split")  # the bars of every table, or an ablation's curve against its axis


@dataclass(frozen=True)
class Column:
    """One metric column. ``split``: 0 = the split the best checkpoint is chosen on (validation), 1 = the
    reported split (test). ``task``: only runs of this task fill the column (None: the table's task).
    ``percent``: a fraction in [-1, 1] is shown as a percentage, as the paper does."""

    name: str
    label: str
    mode: str = "min"
    split: int = 0
    task: str | None = None
    percent: bool = False


@dataclass(frozen=True)
class RunTable:
    name: str
    title: str
    paper_file: str | None
    tasks: tuple[str, ...]
    columns: tuple[Column, ...]
    row_key: RowKey
    paper_key: Callable[[Mapping[str, Any]], str] | None = None
    label_column: str = "method"
    rows: tuple[tuple[str, str], ...] = ()  # (key, label) shown even when the paper has no number for them
    average: str | None = None  # a column that is the mean of the others (the paper's AVG)
    plot: str = "bars"  # one of PLOTS
    sort_key: Callable[[str], Any] = str
    sort_rows: bool = False  # every row in sort_key order (a numeric axis), else the paper's rows first
    baseline: str = ""  # label of a reference row from the runs' trivial predictor (RunRecord.baseline_value)
    note: str = ""
    unrun: Mapping[str, str] = field(default_factory=dict)  # row key -> why a missing cell has no run


# ------------------------------------------------------------------------------------------- row keys
def backend_row(record: RunRecord, variant: Mapping[str, Any]) -> str | None:
    """Tables 4-6: a backend with its default settings."""
    return record.backend if not variant else None


def _only(variant: Mapping[str, Any], *allowed: str) -> bool:
    return set(variant) <= set(allowed)


def fraction_key(k: int, n_layers: int) -> str:
    """A split point as a share of the layers: ``0``, ``1``, ``half`` (k = L // 2, the preset), or ``a/b``."""
    if k == n_layers // 2 and 0 < k < n_layers:
        return "half"
    return str(Fraction(k, n_layers)) if n_layers else str(k)


def plan_key(plan: Any, n_layers: int) -> str | None:
    """The key of a TransNormer layer-plan shorthand (None: the preset, Diag in the first half)."""
    if plan is None:
        return "split:half"
    if not isinstance(plan, str):
        return None
    kind, _, arg = plan.partition(":")
    if kind in ("split", "reverse_split") and arg.isdigit():
        return f"{kind}:{fraction_key(int(arg), n_layers)}"
    return plan if kind in ("alternate", "parallel") and not arg else None


def _attention(record: RunRecord) -> dict[str, Any]:
    return record.config.get("attention", {})


def table1_row(record: RunRecord, variant: Mapping[str, Any]) -> str | None:
    knobs = _attention(record)
    if record.backend == "elu" and _only(variant, "attention.normalize"):
        return f"elu:normalize={str(bool(knobs.get('normalize', True))).lower()}"
    if record.backend == "norm_attention" and _only(variant, "attention.norm", "attention.pos") \
            and knobs.get("pos") == "none":  # as 1+elu, which has no relative positions
        return f"norm_attention:norm={knobs.get('norm', 'srmsnorm')}"
    return None


def _spec_name(spec: Any) -> str:
    return spec.get("name", "?") if isinstance(spec, Mapping) else str(spec)


def table3_row(record: RunRecord, variant: Mapping[str, Any]) -> str | None:
    if record.backend == "elu" and not variant:
        return "elu"
    plan = _attention(record).get("layer_plan")
    if not (_only(variant, "attention.layer_plan") and isinstance(plan, Mapping) and "split" in plan):
        return None
    key = f"{_spec_name(plan.get('first'))}->{_spec_name(plan.get('second'))}"
    k, n = int(plan["split"]), record.n_layers
    return key if k == n // 2 else f"{key} ({k}/{n - k})"


def _transnormer_plan_row(*kinds: str) -> RowKey:
    def row(record: RunRecord, variant: Mapping[str, Any]) -> str | None:
        if record.backend != ABLATION_BACKEND or not _only(variant, "attention.layer_plan"):
            return None
        key = plan_key(_attention(record).get("layer_plan"), record.n_layers)
        return key if key is not None and key.partition(":")[0] in kinds else None

    return row


def table12_row(record: RunRecord, variant: Mapping[str, Any]) -> str | None:
    key = _transnormer_plan_row("split", "alternate", "parallel")(record, variant)
    return key if key in ("split:half", "alternate", "parallel") else None


def _setting_row(path: str, default: Any) -> RowKey:
    """Rows of one setting of the TransNormer preset (e.g. ``attention.block_size``)."""
    section, _, key = path.partition(".")

    def row(record: RunRecord, variant: Mapping[str, Any]) -> str | None:
        if record.backend != ABLATION_BACKEND or not _only(variant, path):
            return None
        return str(record.config.get(section, {}).get(key, default))

    return row


def pos_row(record: RunRecord, variant: Mapping[str, Any]) -> str | None:
    if record.backend != ABLATION_BACKEND or not _only(variant, "model.positional", "attention.pos"):
        return None
    return f"{record.config.get('model', {}).get('positional')}+{_attention(record).get('pos')}"


# --------------------------------------------------------------------------------------- paper keys
def _paper_plan_key(row: Mapping[str, Any]) -> str:
    return plan_key(str(row["layer_plan"]), PAPER_ABLATION_LAYERS) or str(row["layer_plan"])


def _paper_split_key(row: Mapping[str, Any]) -> str:
    diag, norm = int(row["diag_layers"]), int(row["norm_layers"])
    return f"split:{fraction_key(diag, diag + norm)}"


def _int_or_text(key: str) -> tuple[int, Any]:
    try:
        return (0, int(key))
    except ValueError:
        return (1, key)


def _fraction_order(key: str) -> tuple[int, Any]:
    kind, _, arg = key.partition(":")
    value = Fraction(1, 2) if arg == "half" else Fraction(arg) if arg else Fraction(0)
    return (kind != "split", value)


MAJORITY = "majority class"  # always predicting the training split's commonest class
ABLATION_NOTE = (
    "The paper ran this ablation on the 12-layer bidirectional (masked) LM; this page shows the task with the "
    "most rows run, the masked LM on a tie (see the task line above). Layer plans are matched by the share of "
    "layers (the paper's 6/6 of 12 layers is our L/2)."
)

# what an experiment file's ``report`` section may name: how runs become rows (``rows: {by: NAME, ...}``, the rest
# its arguments), how the paper's CSV rows are keyed (``paper_key``: one of these, else a format string over the
# CSV's columns, e.g. "{backend}"), and how rows beyond the paper's are ordered (``sort``)
ROW_KEYS: dict[str, Callable[..., RowKey]] = {
    "backend": lambda: backend_row, "table1": lambda: table1_row, "table3": lambda: table3_row,
    "table12": lambda: table12_row, "positional": lambda: pos_row,
    "layer_plan": lambda kinds: _transnormer_plan_row(*kinds), "setting": _setting_row,
}
PAPER_KEYS: dict[str, Callable[[Mapping[str, Any]], str]] = {"split_share": _paper_split_key,
                                                             "plan_share": _paper_plan_key}
SORT_KEYS: dict[str, Callable[[str], Any]] = {"text": str, "number": _int_or_text, "split_share": _fraction_order}
REPORT_KEYS = ("title", "paper", "tasks", "columns", "rows", "paper_key", "label_column", "extra_rows", "average",
               "plot", "sort", "sort_rows", "baseline", "note", "unrun")
COLUMN_KEYS = tuple(f.name for f in fields(Column))


def _choice(where: str, key: str, value: Any, valid: Mapping[str, Any] | tuple[str, ...]) -> Any:
    if value not in valid:
        raise ValueError(f"{where}: {key}={value!r} is not valid; valid: {sorted(valid)}")
    return valid[value] if isinstance(valid, Mapping) else value


def _paper_key(where: str, value: str) -> Callable[[Mapping[str, Any]], str]:
    if value in PAPER_KEYS:
        return PAPER_KEYS[value]
    if "{" not in value:
        raise ValueError(f"{where}: paper_key={value!r} is neither one of {sorted(PAPER_KEYS)} nor a format string "
                         "over the paper CSV's columns (e.g. \"{backend}\")")
    return lambda row: value.format(**row)


def run_table(name: str, report: Mapping[str, Any], plan: TablePlan, where: str) -> RunTable:
    """Table ``name``'s spec from its experiment file's ``report`` section (and its plan: an ablation runs on the
    masked LM first and carries the ablation note)."""
    unknown = sorted(set(report) - set(REPORT_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} in report; valid: {list(REPORT_KEYS)}")
    rows = dict(report["rows"])
    row_key = _choice(where, "rows.by", rows.pop("by", None), ROW_KEYS)(**rows)
    columns = []
    for column in report.get("columns") or []:
        wrong = sorted(set(column) - set(COLUMN_KEYS))
        if wrong:
            raise ValueError(f"{where}: unknown column key(s) {wrong}; valid: {list(COLUMN_KEYS)}")
        columns.append(Column(**column))
    tasks = report.get("tasks") or (ABLATION_TASKS if plan.ablation else None)
    if not tasks or not columns:
        raise ValueError(f"{where}: report needs tasks and columns")
    notes = [report["note"]] if report.get("note") else []
    return RunTable(
        name, str(report["title"]), report.get("paper"), tuple(tasks), tuple(columns), row_key,
        _paper_key(where, str(report["paper_key"])) if report.get("paper_key") else None,
        label_column=str(report.get("label_column", "method")),
        rows=tuple((str(key), str(label)) for key, label in report.get("extra_rows") or ()),
        average=report.get("average"), plot=_choice(where, "plot", report.get("plot", "bars"), PLOTS),
        sort_key=_choice(where, "sort", report.get("sort", "text"), SORT_KEYS),
        sort_rows=bool(report.get("sort_rows", False)), baseline=str(report.get("baseline", "")),
        note=" ".join(notes + ([ABLATION_NOTE] if plan.ablation else [])), unrun=dict(report.get("unrun") or {}),
    )


@functools.cache
def run_tables() -> dict[str, RunTable]:
    """Every table made of training runs, in the paper's order, from the experiment files."""
    found = {}
    for name in table_names():
        report = section(name, "report")
        if report and "rows" in report:
            found[name] = run_table(name, report, table_plan(name), f"{EXPERIMENTS / name}.yaml")
    return found


@functools.cache
def other_tables() -> dict[str, str]:
    """The titles of the tables built from other sources than training runs (the benchmark, the diagnostics)."""
    return {name: str((section(name, "report") or {}).get("title", name)) for name in table_names()
            if name not in run_tables()}
