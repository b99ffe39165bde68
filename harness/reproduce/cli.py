"""``./reproduce.sh``'s command line (see :mod:`harness.reproduce`): which tables, at which scale, how many
seeds, on which launcher; each table's steps run one after another, then the report is built."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attention_zoo import available
from attention_zoo.registry import failed_plugins
from harness.experiments import CONF_DIR, core_tables, extra_backend_tables, table_names, table_plan
from harness.report.layout import Layout
from harness.report.report import build_report
from harness.reproduce.compute import GPUS, ComputeTotals, Hardware
from harness.reproduce.estimate import Estimate, duration
from harness.reproduce.plan import LAUNCHERS, Context, Step, Unavailable, plan_table
from harness.stop import EXIT_INTERRUPTED, STOP_SIGNALS
from harness.sweep import EXIT_CELLS_FAILED
from tasks.data.wikitext import SPLIT_FILES, resplit_valid_test
from zoo_io.atomic import atomic_write, write_text

if TYPE_CHECKING:
    import pandas as pd

REPO = CONF_DIR.parent
ALIASES = {"pos": "pos_ablation", "figure2": "fig2"}
SCALES = ("smoke", "cpu", "paper")
# The no-argument run at cpu scale trains each configuration for this many updates (instead of the preset's)
# so that the core claims with 3 seeds fit about an hour on 2 cores; ./reproduce.sh TABLE ... keeps the preset's.
CORE_CPU_STEPS = 200
# seeds per configuration unless --seeds says: enough for a confidence interval (the claims page), one at smoke
DEFAULT_SEEDS = {"smoke": 1, "cpu": 3, "paper": 3}
# --data: the built-in corpus, or a WikiText folder (the causal-LM tables only: Table 7's benchmark uses random
# tokens, and the diagnostics of Table 2 and Figure 2 are kept to the built-in corpus's runs)
DATA_SETS = ("builtin", "wikitext-2", "wikitext-103")




def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    argv = list(argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(
        prog="./reproduce.sh", description="Run the sweeps, benchmark and diagnostics behind the paper's tables, then "
        "build the report (docs/reproduce.md).",
        epilog="Tables: " + ", ".join(table_names()) + "; all = every table; none given = " + " ".join(core_tables())
        + ".",
    )
    parser.add_argument("tables", nargs="*", metavar="TABLE", help="tables to reproduce (default: the core claims)")
    parser.add_argument("--scale", choices=SCALES, default="cpu", help="smoke (seconds), cpu (default), paper (GPUs)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per configuration (seed=0..N-1; default 3, 1 at smoke scale)")
    parser.add_argument("--launcher", choices=sorted(LAUNCHERS), default="local",
                        help="local: one run after another; joblib: parallel processes; slurm: one SLURM job per run")
    parser.add_argument("--results", type=Path, default=Path("results"), help="results folder (runs/, bench/, ...)")
    parser.add_argument("--report", type=Path, default=None, help="report folder (default: <results>/report)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training updates per run (default: the scale's preset; the no-argument run at cpu "
                        f"scale uses {CORE_CPU_STEPS} to fit about an hour with 3 seeds)")
    parser.add_argument("--ablation-task", choices=["auto", "mlm", "lm"], default=None,
                        help="task of the ablations: auto (the masked LM when available, as the paper; default), "
                        "mlm or lm (the no-argument run at cpu scale: lm)")
    parser.add_argument("--extra-backends", type=backend_list, default=[], metavar="NAME[,NAME]",
                        help="registered backends (plugins included) to add as rows to "
                        + ", ".join(extra_backend_tables()) + ", marked as not in the paper")
    parser.add_argument("--data", choices=DATA_SETS, default="builtin",
                        help="training data: the built-in corpus (default) or WikiText from --data-dir (the causal "
                        "LM's run tables only; the report puts them on their own pages, <scale>-<data>)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the WikiText folder: wiki.{train,valid,test}.tokens, or valid and test alone (then train "
                        "is valid, and test is cut in two: validation, then test; docs/reproduce.md)")
    parser.add_argument("--wandb", action="store_true", help="log runs to wandb (offline) as well")
    parser.add_argument("--progress", action="store_true", help="show the runs' progress bars")
    parser.add_argument("--gpus-per-run", type=int, default=1, metavar="N",
                        help="GPUs per run (--launcher slurm): one job step of N tasks, a process group of N ranks, "
                        "the micro-batch derived from the global batch (default 1)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the commands, each sweep's runs and their estimated time; run nothing")
    parser.add_argument("--no-report", action="store_true", help="do not build the report at the end")
    parser.add_argument("--compute", action=argparse.BooleanOptionalAction, default=None,
                        help="--dry-run: count each run's FLOPs, peak memory and checkpoint storage on the meta device "
                        "and price them in GPU-hours (default: at paper scale only)")
    parser.add_argument("--gpu", choices=sorted(GPUS), default="A100", help="the GPU of the compute plan (A100)")
    parser.add_argument("--mfu", type=float, default=0.4,
                        help="the share of the GPU's dense bf16 peak a run sustains (default 0.4)")
    parser.add_argument("--gpu-memory-gb", type=float, default=None,
                        help="the GPU memory a run must fit (default: the GPU's); runs that do not are flagged")
    parser.add_argument("--plan-md", type=Path, default=None,
                        help="--dry-run: also write the compute plan as a Markdown table to this file")
    parser.add_argument("--plan-csv", type=Path, default=None,
                        help="--dry-run: also write the plan per table, task and backend (runs, FLOPs and GPU-hours "
                        "a run) to this CSV, which the report's expected-results blocks read (docs/compute-plan.csv)")
    args = parser.parse_args(argv)
    if args.seeds is None:
        args.seeds = DEFAULT_SEEDS[args.scale]
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    if args.gpus_per_run < 1:
        parser.error(f"--gpus-per-run must be at least 1, got {args.gpus_per_run}")
    if args.gpus_per_run > 1 and args.launcher != "slurm":
        parser.error(f"--gpus-per-run {args.gpus_per_run} needs --launcher slurm (each run a job step of that many "
                     "tasks); on one machine run one configuration with torchrun --nproc_per_node=N -m harness.run "
                     "(docs/cluster.md)")
    if not 0 < args.mfu <= 1:
        parser.error(f"--mfu must be in (0, 1], got {args.mfu}")
    if args.compute is None:
        args.compute = args.scale == "paper"
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    core = not args.tables
    args.tables = expand_tables(args.tables, parser)
    if args.data != "builtin":
        if args.data_dir is None:
            parser.error(f"--data {args.data} needs --data-dir DIR, the folder of its files")
        not_runs = [t for t in args.tables if not runs_only(t)]
        if core:
            args.tables = [t for t in args.tables if runs_only(t)]
        elif not_runs:
            parser.error(f"--data {args.data}: {', '.join(not_runs)} are built on the built-in corpus only (a "
                         "benchmark or a diagnostic); valid: tables of training runs")
    user_steps = any(o.lstrip("+~").startswith("trainer.max_steps=") for o in extra)
    if args.steps is None and core and args.scale == "cpu" and not user_steps:
        args.steps = CORE_CPU_STEPS
    if args.ablation_task is None:
        args.ablation_task = "lm" if core and args.scale == "cpu" else "auto"
    if args.steps is not None and not user_steps:
        extra = [f"trainer.max_steps={args.steps}", *extra]
    if not args.progress:
        extra = ["trainer.progress=false", *extra]
    args.overrides = extra
    return args


def runs_only(name: str) -> bool:
    """A table made of training runs alone (no benchmark, no diagnostics): the ones --data can move."""
    return table_plan(name).runs_only


def data_overrides(data: str, folder: Path | None, dry_run: bool = False) -> list[str]:
    """The runs' overrides for ``--data``: nothing for the built-in corpus; else the WikiText folder, made from
    a valid + test copy when it has no train file (:func:`tasks.data.wikitext.resplit_valid_test`)."""
    if data == "builtin":
        return []
    assert folder is not None
    if not all((folder / name).is_file() for name in SPLIT_FILES.values()):
        cache = Path(os.environ.get("ATTENTION_ZOO_CACHE", ".cache")) / "data" / "real" / data
        if not dry_run:
            resplit_valid_test(folder, cache if cache.is_absolute() else REPO / cache)
        folder = cache
    return ["task.data.source=files", f"task.data.path={folder}"]


def backend_list(text: str) -> list[str]:
    """``a,b`` -> registered backend names (plugins included), or an error listing the valid ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in available()]
    if unknown:
        failures = [str(f) for f in failed_plugins().values()]
        failed = "; plugin(s) that failed to load: " + "; ".join(failures) if failures else ""
        raise argparse.ArgumentTypeError(f"unknown backend(s) {unknown}; registered: {', '.join(available())}{failed}")
    return names


def expand_tables(names: Sequence[str], parser: argparse.ArgumentParser | None = None) -> list[str]:
    """TABLE arguments -> table names in the paper's order; ``all`` is every table; none: the core claims; a
    table brings the tables of its ``with_tables`` (``recall``: ``recall_order``, whose runs share its page)."""
    if not names:
        return core_tables()

    def error(message: str) -> None:
        if parser is None:
            raise ValueError(message)
        parser.error(message)

    wanted = set()
    for name in names:
        name = ALIASES.get(name.lower(), name.lower())
        if name == "all":
            wanted |= set(table_names())
        elif name in table_names():
            brought = table_plan(name).with_tables
            unknown = sorted(set(brought) - set(table_names()))
            if unknown:
                error(f"conf/experiment/{name}.yaml: reproduce.with_tables names no table: {unknown}; "
                      f"valid: {', '.join(table_names())}")
            wanted |= {name, *brought}
        else:
            error(f"unknown table {name!r}; valid: {', '.join(table_names())}, all")
    return [n for n in table_names() if n in wanted]


@dataclass
class Outcome:
    table: str
    status: str  # done | cells failed | failed | interrupted | unavailable | planned
    detail: str = ""
    seconds: float = 0.0
    estimates: list[Estimate] = field(default_factory=list)  # --dry-run: the planned sweeps


def run_table(name: str, ctx: Context, dry_run: bool, notes: list[str]) -> Outcome:
    """Plan table ``name`` and run its steps one after another."""
    try:
        steps = plan_table(name, ctx, notes)
    except Unavailable as err:
        print(f"[{name}] not yet available: {err}", flush=True)
        return Outcome(name, "unavailable", str(err))
    return run_steps(name, steps, ctx, dry_run)


def run_steps(name: str, steps: Sequence[Step], ctx: Context, dry_run: bool) -> Outcome:
    started = time.perf_counter()
    estimates: list[Estimate] = []
    failed_sweeps: list[str] = []
    for step in steps:
        reason = step.skip()
        if reason:
            print(f"[{name}] {step.describe}: skipped, {reason}", flush=True)
            continue
        try:
            argv = step.argv()
        except RuntimeError as err:
            if dry_run:
                print(f"[{name}] {step.describe}: (after the sweep)", flush=True)
                continue
            print(f"[{name}] {step.describe}: failed: {err}", flush=True)
            return Outcome(name, "failed", str(err), time.perf_counter() - started)
        print(f"[{name}] {step.describe}:\n  {shlex.join(argv)}", flush=True)
        if dry_run:
            if step.estimate is not None:
                try:
                    estimates.append(step.estimate())
                    print(f"  {estimates[-1].describe()}", flush=True)
                    for line in estimates[-1].describe_compute(ctx.hardware) if ctx.hardware else ():
                        print(f"  {line}", flush=True)
                except Exception as err:  # the plan is printed whatever happens to its estimate
                    print(f"  time not estimated: {type(err).__name__}: {str(err).splitlines()[0]}", flush=True)
            continue
        code = run_child(argv)
        if code == EXIT_INTERRUPTED:
            return Outcome(name, "interrupted", f"{step.describe} was stopped; run the same command again to resume",
                           time.perf_counter() - started)
        if code == EXIT_CELLS_FAILED and argv[1:4] == ["-m", "harness.run", "-m"]:  # the sweep said which
            failed_sweeps.append(step.describe)
        elif code != 0:
            return Outcome(name, "failed", f"{step.describe} exited with {code}", time.perf_counter() - started)
    if dry_run:
        return Outcome(name, "planned", "", estimates=estimates)
    if failed_sweeps:
        return Outcome(name, "cells failed", f"failed cells in {', '.join(failed_sweeps)} (see its summary above)",
                       time.perf_counter() - started)
    return Outcome(name, "done", "", time.perf_counter() - started)


def run_tables_together(names: Sequence[str], ctx: Context, notes: list[str]) -> list[Outcome]:
    """Every table's sweeps and benchmark submitted at once (each table's own steps in order: its phases depend on
    each other), then the diagnostics, which read runs that another table's sweep may be training. Planning
    composes conf/, which Hydra allows one thread at a time: the tables are planned first, here."""
    planned: dict[str, list[Step]] = {}
    outcomes: dict[str, Outcome] = {}
    for name in names:
        try:
            planned[name] = plan_table(name, ctx, notes)
        except Unavailable as err:
            print(f"[{name}] not yet available: {err}", flush=True)
            outcomes[name] = Outcome(name, "unavailable", str(err))

    def runs(name: str) -> Outcome:
        return run_steps(name, [s for s in planned[name] if not s.after_all_runs], ctx, False)

    with forwarding_stop_signals(), ThreadPoolExecutor(max_workers=max(1, len(planned))) as pool:
        outcomes |= dict(zip(planned, pool.map(runs, planned)))
    for name, steps in planned.items():
        analyses = [s for s in steps if s.after_all_runs]
        if analyses and outcomes[name].status in ("done", "cells failed"):
            after = run_steps(name, analyses, ctx, False)
            seconds = outcomes[name].seconds + after.seconds
            outcomes[name] = (Outcome(name, after.status, after.detail, seconds) if after.status != "done" else
                              dataclasses.replace(outcomes[name], seconds=seconds))
    return [outcomes[name] for name in names]


LIVE: set[subprocess.Popen] = set()  # the steps running now (several, when tables run together)


@contextlib.contextmanager
def forwarding_stop_signals() -> Iterator[None]:
    """A stop signal to this process is passed on to every step running (each checkpoints and exits 75)."""

    def forward(signum: int, frame: Any) -> None:
        for process in list(LIVE):
            process.send_signal(signum)

    previous = {number: signal.signal(number, forward) for number in (getattr(signal, n) for n in STOP_SIGNALS)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run_child(argv: list[str]) -> int:
    """Run one step; a stop signal to this process is passed on to it (it checkpoints and exits 75)."""
    process = subprocess.Popen(argv, cwd=REPO)
    LIVE.add(process)
    try:
        if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
            with forwarding_stop_signals():
                return process.wait()
        return process.wait()
    finally:
        LIVE.discard(process)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    layout = Layout(args.results)
    try:
        overrides = [*data_overrides(args.data, args.data_dir, args.dry_run), *args.overrides]
    except (OSError, ValueError) as err:
        print(f"reproduce: --data {args.data}: {err}", file=sys.stderr)
        return 2
    ctx = Context(args.scale, args.seeds, args.launcher, layout, overrides, args.wandb, args.ablation_task,
                  args.extra_backends)
    ctx.gpus_per_run = args.gpus_per_run
    if args.dry_run and args.compute:
        ctx.hardware = Hardware(args.gpu, args.mfu, args.gpu_memory_gb)
    data = "" if args.data == "builtin" else f", data {args.data}"
    print(f"reproduce: {' '.join(args.tables)} at scale {args.scale}, {args.seeds} seed(s){data}, launcher "
          f"{args.launcher}; results in {layout.root}", flush=True)
    started = time.perf_counter()
    notes: list[str] = []
    outcomes = []
    if args.launcher == "slurm" and not args.dry_run and len(args.tables) > 1:  # the cluster runs them at once
        outcomes = run_tables_together(args.tables, ctx, notes)
    for name in args.tables if not outcomes else ():
        outcomes.append(run_table(name, ctx, args.dry_run, notes))
        if outcomes[-1].status == "interrupted":  # asked to stop: start nothing more, report what is there
            break
    report = None
    if not (args.dry_run or args.no_report):
        report = build_report(layout.root, args.report, scales=[args.scale])
    print(f"\nreproduce: summary ({(time.perf_counter() - started) / 60:.1f} min)")
    for outcome in outcomes:
        detail = f": {outcome.detail}" if outcome.detail else ""
        if outcome.estimates:
            detail = ": " + "; ".join(e.summary() for e in outcome.estimates)
        status = "not yet available" if outcome.status == "unavailable" else outcome.status
        print(f"  {outcome.table:13s} {status}{detail}" + (f" ({outcome.seconds / 60:.1f} min)" if outcome.seconds
                                                            else ""))
    for note in notes:
        print(f"  note: {note}")
    if args.dry_run:
        print(planned_total(outcomes))
        if ctx.hardware is not None:
            print(compute_total(outcomes, ctx.hardware))
            if args.plan_md is not None:
                write_text(args.plan_md, compute_plan_markdown(outcomes, ctx.hardware, args))
                print(f"compute plan: {args.plan_md}")
            if args.plan_csv is not None:
                plan = compute_plan_frame(outcomes, ctx.hardware)
                atomic_write(args.plan_csv, lambda tmp: plan.to_csv(tmp, index=False))
                print(f"compute plan per run: {args.plan_csv}")
    if report is not None:
        print(f"report: {report.parent / args.scale / 'index.md'}")
    if any(o.status == "interrupted" for o in outcomes):
        return EXIT_INTERRUPTED
    return 1 if any(o.status in ("failed", "cells failed") for o in outcomes) else 0


def planned_total(outcomes: Sequence[Outcome]) -> str:
    """The dry run's last line: how many runs it planned and their estimated time, one after another."""
    estimates = [e for o in outcomes for e in o.estimates]
    known = [e for e in estimates if e.seconds is not None]
    text = f"planned: {sum(e.new for e in estimates)} runs to train"
    if known:
        text += f", about {duration(sum(e.seconds or 0.0 for e in known))} one after another"
        if len(known) < len(estimates):
            text += f" for the {sum(e.new for e in known)} with an estimate"
    return text + " (benchmarks and analyses not included; how: above each sweep)"


def _table_totals(outcome: Outcome) -> ComputeTotals:
    totals = ComputeTotals()
    for estimate in outcome.estimates:
        if estimate.compute is not None:
            totals.merge(estimate.compute)
    return totals


def compute_total(outcomes: Sequence[Outcome], hardware: Hardware) -> str:
    """The dry run's compute line: every planned run to train, counted and priced."""
    total = ComputeTotals()
    for outcome in outcomes:
        total.merge(_table_totals(outcome))
    return "total " + total.describe(hardware) + "".join(f"\n  warning: {w}" for w in total.warnings)


def compute_plan_frame(outcomes: Sequence[Outcome], hardware: Hardware) -> pd.DataFrame:
    """One line per table, task and backend of the plan: its counted runs, FLOPs and GPU-hours a run (mean)."""
    import pandas as pd

    rows = []
    for outcome in outcomes:
        for label, flops in sorted(_table_totals(outcome).per_label.items()):
            task, backend = label.split(" ", 1)
            mean = sum(flops) / len(flops)
            rows.append({"table": outcome.table, "task": task, "backend": backend, "runs": len(flops),
                         "flops_per_run": mean, "gpu_hours_per_run": mean / hardware.flops_per_second / 3600,
                         "gpu": hardware.describe()})
    return pd.DataFrame(rows, columns=["table", "task", "backend", "runs", "flops_per_run", "gpu_hours_per_run", "gpu"])


def compute_plan_markdown(outcomes: Sequence[Outcome], hardware: Hardware, args: argparse.Namespace) -> str:
    """The compute plan as a page: per table and in total, the runs, FLOPs, GPU-hours, peak memory, storage."""
    tables = ["all"] if list(args.tables) == list(table_names()) else list(args.tables)
    command = shlex.join(["./reproduce.sh", *tables, "--scale", args.scale, "--seeds", str(args.seeds),
                          "--dry-run", "--gpu", args.gpu, "--mfu", f"{args.mfu:g}"])
    lines = [f"Generated by `{command}` (benchmarks and analyses not included). FLOPs are counted by PyTorch's "
             "FlopCounterMode on a meta-device forward+backward of each configuration (evaluations not counted); "
             f"GPU-hours at {hardware.describe()}; peak memory is the activations saved for the backward at the "
             "run's micro-batch plus weights, gradients and AdamW's moments (fp32: an upper bound under bf16).", "",
             "| table | runs to train | counted | FLOPs | GPU-hours | peak GB (largest run) | checkpoints GB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    total = ComputeTotals()
    for outcome in outcomes:
        table = _table_totals(outcome)
        total.merge(table)
        if table.runs:
            lines.append(f"| {outcome.table} | {table.runs} | {table.counted} | {table.flops:.3g} | "
                         f"{table.gpu_hours(hardware):,.0f} | {table.peak_bytes / 1e9:.1f} | "
                         f"{table.checkpoint_bytes / 1e9:,.0f} |")
    lines.append(f"| **total** | {total.runs} | {total.counted} | {total.flops:.3g} | {total.gpu_hours(hardware):,.0f} "
                 f"| {total.peak_bytes / 1e9:.1f} | {total.checkpoint_bytes / 1e9:,.0f} |")
    if total.warnings or total.uncounted:
        lines += ["", *(f"- warning: {w}" for w in total.warnings), *(f"- {u}" for u in total.uncounted)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
