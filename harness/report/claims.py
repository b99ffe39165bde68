"""The paper's claims decided from our runs: a difference with a 95% confidence interval and a verdict.

The claims are data (the ``claims`` section of each table's ``conf/experiment/<table>.yaml``): each compares
two cells of a table (``a`` minus ``b``, or ``a / b`` for speed) or fits a trend over a table's rows, with the
sign the paper gives it. Per claim:

- training runs (Tables 1, 3-6, 8-12): one value per seed and side, from the runs the table page shows (the
  settings of the rest of the column). Runs that share their seed share their data order and initial weights,
  so the difference is taken seed by seed and its interval is Student's t over the seeds' differences
  (``scipy.stats.ttest_1samp(...).confidence_interval``, n - 1 degrees of freedom); sides without common
  seeds fall back to Welch's interval (``scipy.stats.ttest_ind(equal_var=False)``). A trend is the
  least-squares slope per seed (``scipy.stats.linregress``), then the same t-interval over the seeds' slopes;
- Table 2 and Figure 2: the diagnostics' value per run (seed), paired the same way;
- Table 7: speed is not a seed's matter but the timer's: the timed steps of each cell are resampled
  (``scipy.stats.bootstrap``, percentile interval, independent samples) for the log of the ratio of
  median steps/s.

Verdict: *holds* when the whole interval lies on the paper's side of zero (1 for a ratio), *contradicted* when
it lies on the other, *inconclusive* when it crosses zero or there is a single seed (no interval), *not run*
when a side has no runs (with the command that runs it). The same claim is decided again at every other
training budget (``trainer.max_steps``) both sides were run with: the page says whether the verdict moves.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import stats as sps

from harness.experiments import EXPERIMENTS, section, table_names
from harness.report import recall
from harness.report.build import column_runs, column_value, dominant_context, table_runs
from harness.report.layout import Layout
from harness.report.specs import Column, RunTable, run_tables
from harness.run_record import RunRecord

CONFIDENCE = 0.95
RECALL_SOURCES = recall.PAGES  # claims about the recall page's cells (harness/report/recall.py)
HOLDS, CONTRADICTED, INCONCLUSIVE, NOT_RUN = "holds", "contradicted", "inconclusive", "not run"
VERDICTS = (HOLDS, CONTRADICTED, INCONCLUSIVE, NOT_RUN)
KINDS = ("difference", "trend")
FIELDS = {"id", "table", "paper", "kind", "a", "b", "rows", "x", "column", "expect", "ratio"}


# --------------------------------------------------------------------------------------------- the claims
def sources() -> tuple[str, ...]:
    """The tables a claim can name: the run tables and the benchmark's and diagnostics' (in the paper's order)."""
    return tuple(name for name in table_names()
                 if name in run_tables() or name in ("table2", "table7", "fig2", *RECALL_SOURCES))


@dataclass(frozen=True)
class Claim:
    id: str
    table: str
    paper: str
    column: str
    expect: str  # less | greater: the sign of a - b (or of the slope) that the paper claims
    kind: str = "difference"
    a: str = ""
    b: str = ""
    rows: tuple[str, ...] = ()
    x: str = "linear"  # linear | log2: the trend's x axis (the row key as a number)
    ratio: bool = False

    @property
    def sign(self) -> int:
        return -1 if self.expect == "less" else 1


def load_claims(path: str | Path | None = None) -> list[Claim]:
    """The paper's claims, checked: each table's from the ``claims`` section of its experiment file (its ``table``
    implied), in the tables' order; or those of one YAML file ``path`` (``claims: [...]``, each naming its
    table). A wrong key or value fails naming the file, the claim and the valid choices."""
    entries: list[tuple[Path, int, object]] = []
    if path is not None:
        path = Path(path)
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        entries = [(path, i, entry) for i, entry in enumerate(data.get("claims") or [])]
    else:
        for table in table_names():
            for i, entry in enumerate(section(table, "claims") or []):
                where = EXPERIMENTS / f"{table}.yaml"
                if isinstance(entry, dict):
                    entry = {"table": table, **entry}
                if isinstance(entry, dict) and entry["table"] != table:
                    raise ValueError(f"{where}: claim {i + 1} ({entry.get('id', '?')}): table={entry['table']!r}; "
                                     f"a claim in this file is about {table} (leave table out)")
                entries.append((where, i, entry))
    claims, seen = [], set()
    for path, index, entry in entries:
        name = entry.get("id", "?") if isinstance(entry, dict) else repr(entry)
        where = f"{path}: claim {index + 1} ({name})"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping with keys {sorted(FIELDS)}")
        unknown = sorted(set(entry) - FIELDS)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; valid: {sorted(FIELDS)}")
        for key in ("id", "table", "paper", "column", "expect"):
            if key not in entry:
                raise ValueError(f"{where}: missing key {key!r}")
        checks = (("table", sources()), ("expect", ("less", "greater")),
                  ("kind", KINDS), ("x", ("linear", "log2")))
        for key, valid in checks:
            if key in entry and entry[key] not in valid:
                raise ValueError(f"{where}: {key}={entry[key]!r} is not valid; valid: {list(valid)}")
        kind = entry.get("kind", "difference")
        needed = ("a", "b") if kind == "difference" else ("rows",)
        if any(not entry.get(key) for key in needed):
            raise ValueError(f"{where}: a {kind} claim needs {' and '.join(needed)}")
        if entry["id"] in seen:
            raise ValueError(f"{where}: duplicate id {entry['id']!r}")
        seen.add(entry["id"])
        claims.append(Claim(
            id=str(entry["id"]), table=str(entry["table"]), paper=str(entry["paper"]), column=str(entry["column"]),
            expect=str(entry["expect"]), kind=kind, a=str(entry.get("a", "")), b=str(entry.get("b", "")),
            rows=tuple(str(r) for r in entry.get("rows") or ()), x=str(entry.get("x", "linear")),
            ratio=bool(entry.get("ratio", False)),
        ))
    return claims




# ---------------------------------------------------------------------------------------------- evidence
@dataclass
class Evidence:
    """The values of a claim's rows at one setting: row key -> seed -> value (Table 7: row -> timed steps)."""

    by_row: dict[str, dict[int, float]] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)  # Table 7: steps/s of each timed step
    budget: int | None = None  # the training updates of these runs (None: not a training budget)


@dataclass
class Decision:
    claim: Claim
    verdict: str
    estimate: float | None = None  # a - b (ratio: a / b; trend: the slope)
    low: float | None = None
    high: float | None = None
    n: int = 0  # seeds (Table 7: timed steps per side)
    method: str = ""
    a_mean: float | None = None
    b_mean: float | None = None
    budget: int | None = None
    main: bool = True  # the setting the table page shows (False: another budget)
    reason: str = ""


def _verdict(claim: Claim, low: float, high: float) -> str:
    zero = 1.0 if claim.ratio else 0.0
    if claim.sign * (low - zero) > 0 and claim.sign * (high - zero) > 0:
        return HOLDS
    if claim.sign * (low - zero) < 0 and claim.sign * (high - zero) < 0:
        return CONTRADICTED
    return INCONCLUSIVE


def _finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def decide_difference(claim: Claim, a: Mapping[int, float], b: Mapping[int, float]) -> Decision:
    """a - b over seeds: paired t-interval on the common seeds, else Welch's; one seed: inconclusive."""
    a_mean = float(np.mean(list(a.values()))) if a else None
    b_mean = float(np.mean(list(b.values()))) if b else None
    if not a or not b:
        missing = " and ".join(name for name, side in ((claim.a, a), (claim.b, b)) if not side)
        return Decision(claim, NOT_RUN, a_mean=a_mean, b_mean=b_mean, reason=f"no runs of {missing}")
    common = sorted(set(a) & set(b))
    if len(common) >= 2:
        diffs = np.array([a[s] - b[s] for s in common])
        estimate, method, n = float(diffs.mean()), "paired t", len(common)
        if np.ptp(diffs) == 0:
            low = high = estimate
        else:
            low, high = sps.ttest_1samp(diffs, 0.0).confidence_interval(CONFIDENCE)
    elif len(a) >= 2 and len(b) >= 2:
        xs, ys = np.array(list(a.values())), np.array(list(b.values()))
        estimate, method, n = float(xs.mean() - ys.mean()), "Welch t (unpaired)", min(len(xs), len(ys))
        low, high = sps.ttest_ind(xs, ys, equal_var=False).confidence_interval(CONFIDENCE)
    else:
        estimate = a_mean - b_mean
        return Decision(claim, INCONCLUSIVE, estimate, n=1, a_mean=a_mean, b_mean=b_mean,
                        reason="one seed: no interval (--seeds 3)")
    low, high = float(low), float(high)
    verdict = _verdict(claim, low, high) if _finite(low, high) else INCONCLUSIVE
    return Decision(claim, verdict, estimate, low, high, n, method, a_mean, b_mean)


def decide_ratio(claim: Claim, a: Sequence[float], b: Sequence[float]) -> Decision:
    """a / b of median speeds: a percentile bootstrap of the log ratio over each side's timed steps."""
    if not len(a) or not len(b):
        missing = " and ".join(name for name, side in ((claim.a, a), (claim.b, b)) if not len(side))
        return Decision(claim, NOT_RUN, reason=f"no measured cell for {missing}")
    xs, ys = np.asarray(a, float), np.asarray(b, float)
    estimate = float(np.median(xs) / np.median(ys))
    n = min(len(xs), len(ys))
    if n < 2:
        return Decision(claim, INCONCLUSIVE, estimate, n=n, a_mean=float(np.median(xs)), b_mean=float(np.median(ys)),
                        reason="one timed step: no interval")

    def log_ratio(x, y, axis=-1):
        return np.log(np.median(x, axis=axis) / np.median(y, axis=axis))

    result = sps.bootstrap((xs, ys), log_ratio, paired=False, vectorized=True, method="percentile",
                           confidence_level=CONFIDENCE, n_resamples=9999, rng=np.random.default_rng(0))
    low, high = float(np.exp(result.confidence_interval.low)), float(np.exp(result.confidence_interval.high))
    return Decision(claim, _verdict(claim, low, high), estimate, low, high, n, "bootstrap of timed steps",
                    float(np.median(xs)), float(np.median(ys)))


def decide_trend(claim: Claim, by_row: Mapping[str, Mapping[int, float]]) -> Decision:
    """The slope of the column against x (the rows' keys) per seed, then a t-interval over the seeds."""
    present = [r for r in claim.rows if by_row.get(r)]
    if len(present) < 2:
        return Decision(claim, NOT_RUN, reason=f"needs two of the rows {list(claim.rows)} run, has {present}")
    seeds = sorted(set.intersection(*(set(by_row[r]) for r in present)))
    xs = np.array([float(r) for r in present])
    xs = np.log2(xs) if claim.x == "log2" else xs
    slopes = [float(sps.linregress(xs, [by_row[r][s] for r in present]).slope) for s in seeds]
    if not slopes:
        return Decision(claim, INCONCLUSIVE, reason="no seed has every row")
    estimate = float(np.mean(slopes))
    if len(slopes) < 2:
        return Decision(claim, INCONCLUSIVE, estimate, n=1, method="least-squares slope",
                        reason="one seed: no interval (--seeds 3)")
    slopes_arr = np.array(slopes)
    if np.ptp(slopes_arr) == 0:
        low = high = estimate
    else:
        low, high = (float(v) for v in sps.ttest_1samp(slopes_arr, 0.0).confidence_interval(CONFIDENCE))
    return Decision(claim, _verdict(claim, low, high), estimate, low, high, len(slopes), "t over seeds' slopes")


def decide(claim: Claim, evidence: Evidence) -> Decision:
    if claim.ratio:
        decision = decide_ratio(claim, evidence.samples.get(claim.a, []), evidence.samples.get(claim.b, []))
    elif claim.kind == "trend":
        decision = decide_trend(claim, evidence.by_row)
    else:
        decision = decide_difference(claim, evidence.by_row.get(claim.a, {}), evidence.by_row.get(claim.b, {}))
    decision.budget = evidence.budget
    return decision


# ------------------------------------------------------------------------------- evidence from the sources
def _max_steps(record: RunRecord) -> int | None:
    value = record.config.get("trainer", {}).get("max_steps")
    return int(value) if value is not None else None


def run_evidence(claim: Claim, records: Sequence[RunRecord], scale: str) -> list[Evidence]:
    """The seeds' values of the claim's rows: first at the settings the table page shows, then at each other
    training budget (runs that differ from those only in ``trainer.max_steps``)."""
    spec = run_tables()[claim.table]
    column = next((c for c in spec.columns if c.name == claim.column), None)
    if column is None:
        raise ValueError(f"claim {claim.id}: {claim.table} has no column {claim.column!r}; valid: "
                         f"{[c.name for c in spec.columns]}")
    task, by_row, _ = table_runs(spec, records, scale)
    keys = [claim.a, claim.b] if claim.kind == "difference" else list(claim.rows)
    if column.name == spec.average:
        return [average_evidence(spec, by_row, task, keys)]
    runs = {key: [r for r in column_runs(by_row, key, column, task) if r.status == "completed"] for key in keys}
    everything = [r for key in by_row for r in column_runs(by_row, key, column, task)]
    main = dominant_context(column_runs(by_row, key, column, task) for key in by_row)
    if main is None:
        return [Evidence({key: {} for key in keys})]
    reference = next(r for r in everything if r.context == main)
    budgets = {main: _max_steps(reference)}
    for record in (r for rs in runs.values() for r in rs):
        if record.context not in budgets and record.context_any_budget == reference.context_any_budget:
            budgets[record.context] = _max_steps(record)
    found = []
    for context, budget in budgets.items():
        by_key = {}
        for key, mine in runs.items():
            values = {}
            for record in sorted((r for r in mine if r.context == context), key=lambda r: r.last_written):
                value = _value(record, column)
                if value is not None:
                    values[record.seed] = value
            by_key[key] = values
        found.append(Evidence(by_key, budget=budget))
    return found


def _value(record: RunRecord, column: Column) -> float | None:
    value = column_value(record, column) if record.status == "completed" else None
    return value if value is not None and math.isfinite(value) else None


def average_evidence(spec: RunTable, by_row: Mapping[str, list[RunRecord]], task: str, keys: Sequence[str]) -> Evidence:
    """The table's average column per seed (Tables 5, 6): the mean over its other columns of that seed's runs,
    each column at the settings of the rest of it; a seed missing a column has no average."""
    columns = [c for c in spec.columns if c.name != spec.average]
    contexts = {c.name: dominant_context(column_runs(by_row, key, c, task) for key in by_row) for c in columns}
    by_key = {}
    for key in keys:
        per_seed: dict[int, list[float]] = defaultdict(list)
        for c in columns:
            for record in column_runs(by_row, key, c, task):
                value = _value(record, c) if record.context == contexts[c.name] else None
                if value is not None:
                    per_seed[record.seed].append(value)
        by_key[key] = {seed: float(np.mean(v)) for seed, v in per_seed.items() if len(v) == len(columns)}
    return Evidence(by_key)


def recall_evidence(claim: Claim, records: Sequence[RunRecord]) -> Evidence:
    """The seeds' values of a recall claim's cells (harness/report/recall.py: chosen learning rate, worst
    matched cell)."""
    return Evidence(recall.claim_sides(claim.a, claim.b, claim.expect, records))


def table2_evidence(layout: Layout, scale: str) -> Evidence:
    path = layout.gradient_csv(scale)
    by_row: dict[str, dict[int, float]] = defaultdict(dict)
    if path.is_file():
        frame = pd.read_csv(path)
        for index, line in frame.iterrows():
            seed = int(line["seed"]) if "seed" in frame and pd.notna(line["seed"]) else int(index)
            if pd.notna(line.get("deviation")):
                by_row[str(line["backend"])][seed] = float(line["deviation"])
    return Evidence(dict(by_row))


def fig2_evidence(frame: pd.DataFrame | None, ratio: float) -> Evidence:
    by_row: dict[str, dict[int, float]] = defaultdict(dict)
    if frame is not None:
        part = frame[(frame["ratio"] - ratio).abs() < 1e-9]
        for index, line in part.iterrows():
            seed = int(line["seed"]) if pd.notna(line.get("seed")) else int(index)
            by_row[str(line["model"])][seed] = float(line["score"])
    return Evidence(dict(by_row))


def table7_evidence(layout: Layout, scale: str, column: str) -> Evidence:
    """steps/s of every timed step of the cell ``<mode>_<length>`` per backend (the benchmark's ``times_s``)."""
    path = layout.bench_csv(scale)
    samples: dict[str, list[float]] = {}
    if path.is_file():
        frame = pd.read_csv(path, dtype={"times_s": str, "error": str}, keep_default_na=False)
        mode, _, length = column.rpartition("_")
        part = frame[(frame["mode"] == mode) & (frame["length"].astype(str) == length) & (frame["status"] == "ok")]
        for _, line in part.iterrows():
            times = [float(t) for t in str(line.get("times_s") or "").split(";") if t]
            label = str(line.get("label") or line["backend"])
            samples[label] = [1.0 / t for t in times] if times else [float(line["steps_per_sec"])]
    return Evidence(samples=samples)


def decide_all(claims: Iterable[Claim], records: Sequence[RunRecord], scale: str, layout: Layout | None,
               locality: pd.DataFrame | None = None,
               not_run: Mapping[str, str] | None = None) -> list[Decision]:
    """Every claim at ``scale`` (and its other budgets); ``layout`` None: the training-run claims only (a data
    set other than the built-in corpus has no benchmark or diagnostics). ``not_run``: table -> why a table
    has no runs, added to a not-run verdict's reason."""
    decisions = []
    for claim in claims:
        if claim.table in run_tables():
            found = [decide(claim, evidence) for evidence in run_evidence(claim, records, scale)]
            for extra in found[1:]:
                extra.main = False
            found = found[:1] + [d for d in found[1:] if d.verdict != NOT_RUN]  # budgets both sides ran
        elif claim.table in RECALL_SOURCES:
            found = [decide(claim, recall_evidence(claim, records))]
        elif layout is None:
            found = [Decision(claim, NOT_RUN, reason="built on the built-in corpus's runs only")]
        elif claim.table == "table2":
            found = [decide(claim, table2_evidence(layout, scale))]
        elif claim.table == "table7":
            found = [decide(claim, table7_evidence(layout, scale, claim.column))]
        elif claim.table == "fig2":
            found = [decide(claim, fig2_evidence(locality, float(claim.column)))]
        else:
            found = [Decision(claim, NOT_RUN, reason=f"{claim.table} has no report builder")]
        for decision in found:
            if decision.verdict == NOT_RUN:
                command = f"./reproduce.sh {claim.table} --scale {scale} --seeds 3"
                why = (not_run or {}).get(claim.table, "")
                decision.reason = "; ".join(p for p in (decision.reason, why, f"run: {command}") if p)
        decisions += found
    return decisions


# ------------------------------------------------------------------------------------------------ output
FRAME_COLUMNS = ("claim", "table", "paper", "a", "b", "column", "expect", "measure", "budget_updates", "main",
                 "verdict", "estimate", "ci_low", "ci_high", "confidence", "n", "method", "a_mean", "b_mean", "reason")


def frame(decisions: Sequence[Decision]) -> pd.DataFrame:
    """One line per (claim, budget): what claims.md shows and more (no claim: the header alone)."""
    return pd.DataFrame([frame_row(d) for d in decisions], columns=list(FRAME_COLUMNS))


def frame_row(d: Decision) -> dict[str, Any]:
    """One decision's line of ``frame``, keyed by ``FRAME_COLUMNS``."""
    return {
        "claim": d.claim.id, "table": d.claim.table, "paper": d.claim.paper, "a": d.claim.a or ",".join(d.claim.rows),
        "b": d.claim.b, "column": d.claim.column, "expect": d.claim.expect,
        "measure": "ratio a/b" if d.claim.ratio else "slope" if d.claim.kind == "trend" else "a - b",
        "budget_updates": d.budget, "main": d.main, "verdict": d.verdict, "estimate": d.estimate,
        "ci_low": d.low, "ci_high": d.high, "confidence": CONFIDENCE, "n": d.n, "method": d.method,
        "a_mean": d.a_mean, "b_mean": d.b_mean, "reason": d.reason,
    }


def _num(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def measured(d: Decision) -> str:
    """``-1.2 [-2.0, -0.4]`` (ratio: ``1.3x [1.1, 1.5]``), or what there is."""
    if d.estimate is None:
        return ""
    unit = "x" if d.claim.ratio else ""
    text = f"{_num(d.estimate)}{unit}" if d.claim.ratio else f"{d.estimate:+.3g}"
    if d.low is not None and d.high is not None:
        text += f" [{_num(d.low)}, {_num(d.high)}]" if d.claim.ratio else f" [{d.low:+.3g}, {d.high:+.3g}]"
    return text


def sides(d: Decision) -> str:
    if d.claim.kind == "trend":
        axis = "log2 of the row" if d.claim.x == "log2" else "the row"
        return f"{d.claim.column} against {axis}: " + ", ".join(d.claim.rows)

    def side(key: str, mean: float | None) -> str:
        return f"{key} {_num(mean)}" if mean is not None else f"{key} (no runs)"

    return f"{side(d.claim.a, d.a_mean)} vs {side(d.claim.b, d.b_mean)}"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _other_budgets(d: Decision, decisions: Sequence[Decision]) -> str:
    others = [o for o in decisions if o.claim.id == d.claim.id and not o.main]
    return "; ".join(f"{o.budget} updates: {o.verdict} {measured(o)} ({o.n})" for o in others)


def counts(decisions: Sequence[Decision]) -> dict[str, int]:
    main = [d for d in decisions if d.main]
    return {v: sum(d.verdict == v for d in main) for v in VERDICTS}


def flipped(decisions: Sequence[Decision]) -> list[Decision]:
    """The main decisions whose verdict differs at another training budget."""
    return [d for d in decisions if d.main and any(o.claim.id == d.claim.id and not o.main and o.verdict != d.verdict
                                                   for o in decisions)]


def budget_line(decisions: Sequence[Decision]) -> str:
    """What the other budgets change, in a sentence ("" when no claim was run at another budget)."""
    others = sorted({o.budget for o in decisions if not o.main and o.budget is not None})
    if not others:
        return ""
    changed = [f"`{d.claim.id}` ({d.verdict} → " + ", ".join(
        f"{o.verdict} at {o.budget}" for o in decisions if o.claim.id == d.claim.id and not o.main) + ")"
        for d in flipped(decisions)]
    budgets = ", ".join(str(b) for b in others)
    return (f"Decided again at {budgets} updates: " + ("; ".join(changed) if changed else "no verdict changes")
            + ".")


def summary_line(decisions: Sequence[Decision]) -> str:
    return ", ".join(f"{n} {v}" for v, n in counts(decisions).items() if n) or "no claims"


def page_of(table: str) -> str:
    """The page that holds ``table`` (recall_order's runs are rows of the recall page)."""
    return recall.PAGE if table in recall.PAGES else table


def verdict_table(decisions: Sequence[Decision], link: str = "") -> list[str]:
    """The compact verdict table (the index page and the README; ``link``: the tables' folder from there)."""
    lines = ["| claim | table | verdict | ours [95% CI] | n |", "|---|---|---|---|---|"]
    for d in (d for d in decisions if d.main):
        table = f"[{d.claim.table}]({link}{page_of(d.claim.table)}.md)"
        lines.append(f"| {_escape(d.claim.paper)} | {table} | **{d.verdict}** | {measured(d)} | {d.n or ''} |")
    return lines


def claims_markdown(decisions: Sequence[Decision], scale: str, data: str, plot: str | None) -> str:
    has_budgets = any(not d.main for d in decisions)
    header = ["claim", "table", "the paper", "ours (means)", "measured [95% CI]", "n", "method", "verdict"]
    header += ["at other budgets"] if has_budgets else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for d in (d for d in decisions if d.main):
        what = "a / b" if d.claim.ratio else "slope" if d.claim.kind == "trend" else "a − b"
        cells = [f"`{d.claim.id}`", f"[{d.claim.table}]({page_of(d.claim.table)}.md)", _escape(d.claim.paper),
                 _escape(sides(d)), f"{what} = {measured(d)}" if d.estimate is not None else "", str(d.n or ""),
                 d.method, f"**{d.verdict}**" + (f": {_escape(d.reason)}" if d.reason else "")]
        cells += [_escape(_other_budgets(d, decisions))] if has_budgets else []
        lines.append("| " + " | ".join(cells) + " |")
    flips = flipped(decisions)
    out = [
        f"# The paper's claims at scale `{scale}` ({data})",
        "",
        f"Verdicts: {summary_line(decisions)} (each table's `conf/experiment/<table>.yaml` lists its claims; this "
        f"page: `python -m harness.report --scale {scale}`; every number is in `claims.csv`).",
        "",
        "How to read: each claim compares two cells of a table (a − b, or a / b for speed) or fits a trend over "
        "its rows, with the sign the paper gives it. Training runs that share a seed share their data order "
        "and initial weights, so differences are taken seed by seed and the 95% interval is Student's t over "
        "the seeds (n − 1 degrees of freedom; Welch's when the sides share no seeds); a trend is the least-squares "
        "slope per seed, then the same interval. Speed (Table 7) is a percentile bootstrap over each cell's timed "
        "steps (n: steps per side). **holds**: the whole interval is on the paper's side of 0 (of 1 for a "
        "ratio); **contradicted**: on the other side; **inconclusive**: it crosses 0, or one seed gives no "
        "interval; **not run**: a side has no runs (the command is given). Our models are small and briefly "
        "trained: a verdict here says what this scale shows, not what the paper's scale would.",
        "",
        *lines,
        "",
    ]
    if has_budgets:
        out += ["## Budget sensitivity", "",
                "The same claims decided again on runs that differ only in their training budget "
                "(`trainer.max_steps`; column *at other budgets* above: verdict, measured, n). "
                + (f"Verdicts that change with the budget: {', '.join(f'`{d.claim.id}`' for d in flips)}."
                   if flips else "No verdict changes with the budget."), ""]
        if plot:
            out += [f"![budget](plots/{plot})", ""]
    return "\n".join(out)


def budget_frame(records: Sequence[RunRecord], scale: str, table: str = "table4",
                 column: str = "ppl_test") -> pd.DataFrame:
    """Per backend (row) and training budget: the column's mean, std and seeds, over the runs that differ from
    the table page's only in ``trainer.max_steps`` (the plot of ppl against updates)."""
    spec = run_tables()[table]
    col = next(c for c in spec.columns if c.name == column)
    task, by_row, _ = table_runs(spec, records, scale)
    main = dominant_context(column_runs(by_row, key, col, task) for key in by_row)
    if main is None:
        return pd.DataFrame(columns=["row", "updates", "mean", "std", "n"])
    reference = next(r for key in by_row for r in column_runs(by_row, key, col, task) if r.context == main)
    lines = []
    for key in by_row:
        # one value per seed and budget, the latest run's, as the claims take it: two runs of one seed
        # (Table 4's and Table 2's, which only adds gradient logging) are one sample, not two
        per_budget: dict[int, dict[int, float]] = defaultdict(dict)
        for record in sorted(column_runs(by_row, key, col, task), key=lambda r: r.last_written):
            value = record.primary_value(col.split) if record.status == "completed" else None
            if value is not None and record.context_any_budget == reference.context_any_budget:
                per_budget[_max_steps(record)][record.seed] = value
        for updates, by_seed in per_budget.items():
            values = list(by_seed.values())
            lines.append({"row": key, "updates": updates, "mean": float(np.mean(values)),
                          "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, "n": len(values)})
    result = pd.DataFrame(lines, columns=["row", "updates", "mean", "std", "n"])
    multi = result.groupby("row")["updates"].nunique()
    return result[result["row"].isin(multi[multi > 1].index)]
