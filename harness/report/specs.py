"""The paper's tables as specifications: rows, columns, where our numbers come from, how runs map to rows.

Run-based tables (every table but 2, 7 and Figure 2, which come from the benchmark and the diagnostics)
are a :class:`RunTable`: a row is a backend (Tables 4-6) or a TransNormer variant (the ablations), and
``row_key(record, variant)`` says which row a run belongs to, from its backend and how its settings differ
from the defaults (:mod:`harness.variants`). ``paper_key(row)`` gives the same key to a row of the
paper's CSV (``results/paper/<table>.csv``), so ours and the paper's meet in one row whatever the scale:
layer plans are keyed by the fraction of layers (the paper's ablations have 12 layers, ours fewer).

The paper ran the ablations (Tables 1, 3, 8-12) on the bidirectional (masked) LM; ``tasks`` lists the masked
LM first and the causal LM second, and a table shows the task with the most rows run (the first on a tie).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from harness.run_record import RunRecord

PAPER_ABLATION_LAYERS = 12  # the paper's ablations: a 12-layer bidirectional LM
ABLATION_TASKS = ("mlm", "lm")
ABLATION_BACKEND = "transnormer_t2"

RowKey = Callable[[RunRecord, Mapping[str, Any]], "str | None"]


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
    plot: str = "bars"  # bars | block_size | split
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


PPL = Column("ppl", "ppl")
GLUE = (("mnli_m", "MNLI-m", "glue/mnli", 0), ("mnli_mm", "MNLI-mm", "glue/mnli", 1), ("qnli", "QNLI", "glue/qnli", 1),
        ("qqp", "QQP", "glue/qqp", 1), ("sst2", "SST-2", "glue/sst2", 1), ("mrpc", "MRPC", "glue/mrpc", 1),
        ("cola", "CoLA", "glue/cola", 1))
LRA = (("text", "Text"), ("listops", "ListOps"), ("retrieval", "Retrieval"), ("pathfinder", "Pathfinder"),
       ("image", "Image"))
MAJORITY = "majority class"  # always predicting the training split's commonest class
ABLATION_NOTE = (
    "The paper ran this ablation on the 12-layer bidirectional (masked) LM; this page shows the task with the "
    "most rows run, the masked LM on a tie (see the task line above). Layer plans are matched by the share of "
    "layers (the paper's 6/6 of 12 layers is our L/2)."
)

TABLES: dict[str, RunTable] = {
    t.name: t
    for t in (
        RunTable(
            "table1", "NormAttention vs 1+elu with and without scaling (ppl)", "table1.csv", ABLATION_TASKS,
            (PPL,), table1_row, lambda r: f"{r['backend']}:{r['knobs']}", label_column="variant",
            note=ABLATION_NOTE,
        ),
        RunTable(
            "table3", "Which layers are linear (1+elu) and which softmax (ppl)", "table3.csv", ABLATION_TASKS,
            (PPL,), table3_row, lambda r: str(r["layer_plan"]), label_column="variant", note=ABLATION_NOTE,
        ),
        RunTable(
            "table4", "Autoregressive language modelling (ppl)", "table4.csv", ("lm",),
            (Column("ppl_val", "ppl valid"), Column("ppl_test", "ppl test", split=1)), backend_row,
            lambda r: str(r["backend"]),
        ),
        RunTable(
            "table5", "GLUE dev after masked-LM pretraining", "table5.csv", ("glue",),
            tuple(Column(n, label, "max", split, task, percent=True) for n, label, task, split in GLUE)
            + (Column("avg", "AVG", "max"),),
            backend_row, lambda r: str(r["backend"]), average="avg", baseline=MAJORITY,
        ),
        RunTable(
            "table6", "Long-Range Arena (test accuracy)", "table6.csv", ("lra",),
            tuple(Column(n, label, "max", 1, f"lra/{n}", percent=True) for n, label in LRA)
            + (Column("avg", "AVG", "max"),),
            backend_row, lambda r: str(r["backend"]), average="avg", baseline=MAJORITY,
            rows=(("ls", "LS"), ("elu", "1+elu")),  # swept beside the paper's rows (conf/experiment/table6.yaml)
        ),
        RunTable(
            "table8", "Diag/Norm split point (ppl)", "table8.csv", ABLATION_TASKS, (PPL,),
            _transnormer_plan_row("split"), _paper_split_key, label_column="variant", plot="split",
            sort_key=_fraction_order, sort_rows=True, note=ABLATION_NOTE,
        ),
        RunTable(
            "table9", "Order of Diag and Norm layers (ppl)", "table9.csv", ABLATION_TASKS, (PPL,),
            _transnormer_plan_row("split", "reverse_split"), _paper_plan_key, label_column="variant",
            sort_key=_fraction_order, note=ABLATION_NOTE,
        ),
        RunTable(
            "table10", "Channel mixer: FFN vs GLU (ppl)", "table10.csv", ABLATION_TASKS, (PPL,),
            _setting_row("model.channel_mixer", "glu"), lambda r: str(r["channel_mixer"]), label_column="variant",
            note=ABLATION_NOTE,
        ),
        RunTable(
            "table11", "DiagAttention block size (ppl)", "table11.csv", ABLATION_TASKS, (PPL,),
            _setting_row("attention.block_size", 64), lambda r: str(int(r["block_size"])), label_column="variant",
            rows=(("16", "block 16"), ("256", "block 256")), plot="block_size", sort_key=_int_or_text,
            sort_rows=True, note=ABLATION_NOTE,
        ),
        RunTable(
            "table12", "Combining Diag and Norm: stacked, alternating, parallel (ppl)", "table12.csv",
            ABLATION_TASKS, (PPL,), table12_row, _paper_plan_key, label_column="variant", note=ABLATION_NOTE,
        ),
        RunTable(
            "pos_ablation", "Positional encoding of TransNormer (ppl)", None, ABLATION_TASKS, (PPL,), pos_row,
            label_column="variant",
            rows=(("none+none", "none"), ("sinusoidal+none", "sinusoidal"), ("none+rope", "RoPE"),
                  ("none+lrpe", "LRPE"), ("sinusoidal+lrpe", "sinusoidal + LRPE (the causal LM's default)"),
                  ("learned+lrpe", "learned + LRPE (the masked LM's default)")),
            note="Not a table of the paper (no paper numbers); the paper's model uses sinusoidal + LRPE. "
            + ABLATION_NOTE,
        ),
    )
}

# tables built from other sources than training runs
OTHER_TABLES = {
    "table2": "Gradient deviation over training (from the diagnostics)",
    "table7": "Training and inference speed, steps/sec (from the speed benchmark)",
    "fig2": "Figure 2: locally accumulated attention (from the diagnostics)",
}
