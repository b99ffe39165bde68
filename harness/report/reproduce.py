"""``./reproduce.sh [TABLE ...] [--scale smoke|cpu|paper] [--seeds N] [--launcher local|joblib|slurm]``.

Runs the sweeps, benchmark and diagnostics behind the paper's tables, then builds the report. With no TABLE,
the paper's core claims: Tables 1, 4, 7, Figure 2 and the layer-split (Table 8) and block-size (Table 11)
ablations (the experiment files whose ``reproduce`` section says ``core: true``); ``all`` is every table.
What a table needs besides its sweep is data in its experiment file (:class:`TablePlan`). Each table is one or
more commands, printed before they run:

- a Hydra sweep ``python -m harness.run -m experiment=<table> scale=<scale> seed=0,..,N-1 ...``: a run whose
  record says completed with the same configuration is skipped, an interrupted one resumes from its last
  checkpoint, a failed one is recorded as failed (its cell says so) and the sweep goes on; the sweep then exits
  3, the table goes on and is reported "cells failed" (exit 1 at the end); a stopped sweep (exit 75) stops the
  command;
- Table 7: ``python -m harness.bench table7`` (skipped when its results exist with the same settings);
- Table 2 and Figure 2: ``python -m harness.analyze`` on the runs their sweep trained.
A table whose task or experiment does not exist yet prints ``not yet available: <why>`` and the rest go on.
``--dry-run`` prints the commands and, under each sweep, its runs and their estimated wall time
(:func:`estimate_sweep`: completed and shared runs cost nothing, the others their updates times the seconds per
update measured on this machine's completed runs, else ``SECONDS_PER_UPDATE``).
The ablations (Tables 1, 3, 8-12 and the positional encodings) run on the masked LM as the paper's did when
that task is available, else on the causal LM (said when it happens); ``--ablation-task`` chooses, and the
no-argument run at cpu scale uses the causal LM, which learns within its budget (the masked LM does not learn
much in 200 updates) and shares its TransNormer runs with Table 4. Anything after ``--`` is passed to
every sweep as Hydra overrides (e.g. ``-- trainer.max_steps=200 task.data.source=files task.data.path=DIR``).
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.report.layout import ORDER, Layout
from harness.stop import EXIT_INTERRUPTED, STOP_SIGNALS
from harness.sweep import EXIT_CELLS_FAILED

REPO = Path(__file__).resolve().parents[2]
CONF_DIR = REPO / "conf"
ALL = ORDER
ALIASES = {"pos": "pos_ablation", "figure2": "fig2"}
SCALES = ("smoke", "cpu", "paper")
LAUNCHERS = {"local": "local", "joblib": "joblib", "slurm": "submitit_slurm"}
# The no-argument run at cpu scale trains each configuration for this many updates (instead of the preset's)
# so that the core claims with 3 seeds fit about an hour on 2 cores; ./reproduce.sh TABLE ... keeps the preset's.
CORE_CPU_STEPS = 200
# seeds per configuration unless --seeds says: enough for a confidence interval (the claims page), one at smoke
DEFAULT_SEEDS = {"smoke": 1, "cpu": 3, "paper": 3}
# Wall seconds per training update of one run, all included (data, evaluations, checkpoints), by task family and
# scale, on a 2-core CPU machine: what --dry-run multiplies by each planned run's updates when <results>/runs has
# no completed run of that task and scale to measure from (it prefers those). Sources (docs/reproduce.md, "How
# long a table takes"): the causal LM at cpu scale is the mean over Table 4's 11 backends (0.18 s for vanilla and
# TransNormer, up to 0.48 s for Performer) and agrees with the committed report docs/results/cpu/index.md (129
# runs of 200 updates, 119.2 min summed: 0.28 s); the other families: transnormer_t2 at the preset's settings
# (ListOps for LRA). None at paper scale: it depends on the GPU.
SECONDS_PER_UPDATE: dict[tuple[str, str], float] = {
    ("lm", "smoke"): 0.03, ("mlm", "smoke"): 0.04, ("glue", "smoke"): 0.03, ("lra", "smoke"): 0.03,
    ("lm", "cpu"): 0.3, ("mlm", "cpu"): 0.3, ("glue", "cpu"): 0.07, ("lra", "cpu"): 0.08,
}
# and per run, besides its updates: Hydra's job, the config check, the record (a smoke sweep of Table 4's 12
# backends took 18 s, its records' wall time 6.6 s)
SECONDS_PER_RUN = 1.0
# --data: the built-in corpus, or a WikiText folder (the causal-LM tables only: Table 7's benchmark uses random
# tokens, and the diagnostics of Table 2 and Figure 2 are kept to the built-in corpus's runs)
DATA_SETS = ("builtin", "wikitext-2", "wikitext-103")


@dataclass
class Analysis:
    """``python -m harness.analyze <command>`` on the completed runs of the table's sweep."""

    command: str
    first_seed_only: bool = False
    options: dict[str, list[str]] = field(default_factory=dict)  # scale -> extra command-line options


@dataclass
class TablePlan:
    """What ./reproduce.sh does for a table besides its sweep: the ``reproduce`` section of
    ``conf/experiment/<table>.yaml`` (a run ignores it). ``sweep``: overrides added to the sweep, resolved
    against the composed experiment (read there, e.g. Table 8's every split point)."""

    core: bool = False  # one of the core claims: run by ./reproduce.sh with no TABLE
    ablation: bool = False  # on the masked LM when available, as the paper's (--ablation-task)
    extra_backends: bool = False  # --extra-backends adds rows to this table
    sweep: list[str] = field(default_factory=list)
    analysis: list[Analysis] = field(default_factory=list)
    bench: dict[str, dict[str, Any]] | None = None  # scale -> `harness.bench table7` options, instead of a sweep
    cost: dict[str, str] = field(default_factory=dict)  # scale -> what a run of the table costs (the report says it)


def table_plan(name: str) -> TablePlan:
    """The plan of table ``name`` read off its experiment file (the default plan when it has none)."""
    from omegaconf import OmegaConf

    path = CONF_DIR / "experiment" / f"{name}.yaml"
    node = OmegaConf.load(path).get("reproduce") if path.is_file() else None
    if node is None:
        return TablePlan()
    plain = {k: v for k, v in node.items() if k != "sweep"}  # the sweep's interpolations need the composed config
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TablePlan), plain))
    except Exception as err:
        raise ValueError(f"{path}: invalid reproduce section: {str(err).splitlines()[0]}") from None


PLANS = {name: table_plan(name) for name in ORDER}
CORE = [name for name in ORDER if PLANS[name].core]
EXTRA_BACKEND_TABLES = tuple(name for name in ORDER if PLANS[name].extra_backends)
ABLATIONS = {name for name in ORDER if PLANS[name].ablation}
BENCH: dict[str, dict[str, Any]] = PLANS["table7"].bench or {}  # the benchmark's options per scale


class Unavailable(Exception):
    """A table that cannot run in this checkout yet; the message says why."""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    argv = list(argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(
        prog="./reproduce.sh", description="Run the sweeps, benchmark and diagnostics behind the paper's tables, then "
        "build the report (docs/reproduce.md).",
        epilog="Tables: " + ", ".join(ALL) + "; all = every table; none given = " + " ".join(CORE) + ".",
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
                        + ", ".join(EXTRA_BACKEND_TABLES) + ", marked as not in the paper")
    parser.add_argument("--data", choices=DATA_SETS, default="builtin",
                        help="training data: the built-in corpus (default) or WikiText from --data-dir (the causal "
                        "LM's run tables only; the report puts them on their own pages, <scale>-<data>)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the WikiText folder: wiki.{train,valid,test}.tokens, or valid and test alone (then train "
                        "is valid, and test is cut in two: validation, then test; docs/reproduce.md)")
    parser.add_argument("--wandb", action="store_true", help="log runs to wandb (offline) as well")
    parser.add_argument("--progress", action="store_true", help="show the runs' progress bars")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the commands, each sweep's runs and their estimated time; run nothing")
    parser.add_argument("--no-report", action="store_true", help="do not build the report at the end")
    args = parser.parse_args(argv)
    if args.seeds is None:
        args.seeds = DEFAULT_SEEDS[args.scale]
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
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
    plan = PLANS.get(name) or table_plan(name)
    return plan.bench is None and not plan.analysis


def data_overrides(data: str, folder: Path | None, dry_run: bool = False) -> list[str]:
    """The runs' overrides for ``--data``: nothing for the built-in corpus; else the WikiText folder, made from
    a valid + test copy when it has no train file (:func:`tasks.data.wikitext.resplit_valid_test`)."""
    if data == "builtin":
        return []
    from tasks.data.wikitext import SPLIT_FILES, resplit_valid_test

    assert folder is not None
    if not all((folder / name).is_file() for name in SPLIT_FILES.values()):
        cache = Path(os.environ.get("ATTENTION_ZOO_CACHE", ".cache")) / "data" / "real" / data
        if not dry_run:
            resplit_valid_test(folder, cache if cache.is_absolute() else REPO / cache)
        folder = cache
    return ["task.data.source=files", f"task.data.path={folder}"]


def backend_list(text: str) -> list[str]:
    """``a,b`` -> registered backend names (plugins included), or an error listing the valid ones."""
    from attention_zoo import available
    from attention_zoo.registry import failed_plugins

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in available()]
    if unknown:
        failures = [str(f) for f in failed_plugins().values()]
        failed = "; plugin(s) that failed to load: " + "; ".join(failures) if failures else ""
        raise argparse.ArgumentTypeError(f"unknown backend(s) {unknown}; registered: {', '.join(available())}{failed}")
    return names


def expand_tables(names: Sequence[str], parser: argparse.ArgumentParser | None = None) -> list[str]:
    """TABLE arguments -> table names in the paper's order; ``all`` is every table; none: the core claims."""
    if not names:
        return list(CORE)
    wanted = set()
    for name in names:
        name = ALIASES.get(name.lower(), name.lower())
        if name == "all":
            wanted |= set(ALL)
        elif name in ALL:
            wanted.add(name)
        else:
            message = f"unknown table {name!r}; valid: {', '.join(ALL)}, all"
            if parser is None:
                raise ValueError(message)
            parser.error(message)
    return [n for n in ALL if n in wanted]


# ------------------------------------------------------------------------------------------ planning
@dataclass
class Context:
    scale: str
    seeds: int
    launcher: str
    layout: Layout
    overrides: list[str] = field(default_factory=list)
    wandb: bool = False
    ablation_task: str = "auto"  # auto | mlm | lm
    extra_backends: list[str] = field(default_factory=list)  # rows beyond the paper's, Tables 4-7
    python: str = sys.executable
    planned: set[str] = field(default_factory=set)  # run folders of the sweeps planned so far (--dry-run)

    def sweep(self, experiment: str, *extra: str) -> list[str]:
        seeds = ",".join(str(s) for s in range(self.seeds))
        return [
            self.python, "-m", "harness.run", "-m", f"experiment={experiment}", f"scale={self.scale}",
            f"seed={seeds}", f"hydra/launcher={LAUNCHERS[self.launcher]}", f"run.root={self.layout.runs}",
            *([] if self.wandb else ["logger=none"]), *extra, *self.overrides,
        ]


@dataclass
class Step:
    """One command of a table; ``argv`` may be computed when the step runs (it depends on earlier steps)."""

    describe: str
    argv: Callable[[], list[str]]
    skip: Callable[[], str | None] = lambda: None  # a reason to skip (e.g. results already there)
    estimate: Callable[[], Estimate] | None = None  # a sweep's runs and their time, for --dry-run


def compose(overrides: Sequence[str], hydra_section: bool = True) -> Any:
    """``conf/`` composed with these overrides, with Hydra's section (the sweep's parameters) or, as a run
    sees it, without."""
    from harness.compose import compose as compose_conf

    return compose_conf(overrides, hydra_section=hydra_section)


def check_task(name: str) -> None:
    import tasks

    try:
        tasks.task_class(name)
    except ValueError as err:
        raise Unavailable(f"task {name!r}: {err}") from None


def sweep_tasks(cfg: Any) -> list[str]:
    """The task names a composed experiment runs: its sweep's ``task`` values, else its task."""
    params = (cfg.hydra.sweeper.get("params") or {}) if "hydra" in cfg else {}
    swept = params.get("task")
    return [t.strip() for t in str(swept).split(",")] if swept else [str(cfg.task.name)]


def masked_lm(ctx: Context) -> tuple[list[str], str]:
    """``(["task=mlm"], "")`` when the masked LM can run at this scale, else ``([], why not)``."""
    try:
        check_task("mlm")
        compose(["task=mlm", f"scale={ctx.scale}", *ctx.overrides])
    except Unavailable as err:
        return [], str(err)
    except Exception as err:
        return [], f"task=mlm does not compose: {type(err).__name__}: {str(err).splitlines()[0]}"
    return ["task=mlm"], ""


def first_values(overrides: Sequence[str]) -> list[str]:
    """Sweep overrides (``attention=vanilla,elu``) at their first value: what composing one config of the sweep
    needs to check it (Hydra's compose takes no sweep); lists, dicts and quoted values are kept whole."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return [f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}" if o.is_sweep_override() else o.input_line
            for o in parsed]


def plan_sweep(name: str, ctx: Context, extra: Sequence[str] = ()) -> tuple[list[str], Any]:
    """The sweep command of experiment ``name`` and its composed config; raises Unavailable."""
    if not (CONF_DIR / "experiment" / f"{name}.yaml").is_file():
        raise Unavailable(f"conf/experiment/{name}.yaml does not exist")
    try:
        cfg = compose([f"experiment={name}", f"scale={ctx.scale}", *first_values([*extra, *ctx.overrides])])
    except Exception as err:
        raise Unavailable(f"experiment={name} does not compose: {type(err).__name__}: "
                          f"{str(err).splitlines()[0]}") from None
    for task in sweep_tasks(cfg):
        check_task(task)
    return ctx.sweep(name, *extra), cfg


def plan_table(name: str, ctx: Context, notes: list[str]) -> list[Step]:
    """The steps that produce table ``name`` (its experiment file's plan); raises Unavailable with the reason."""
    plan = PLANS.get(name) or table_plan(name)
    if plan.bench is not None:
        return [bench_step(ctx)]
    extra: list[str] = []
    if plan.ablation and ctx.ablation_task == "mlm":
        extra = ["task=mlm"]
    elif plan.ablation and ctx.ablation_task == "lm":
        notes.append(f"{name}: on the causal LM (task=lm); the paper's is the masked LM (--ablation-task mlm)")
    elif plan.ablation:
        extra, why = masked_lm(ctx)
        if why:
            notes.append(f"{name}: the masked LM is not available ({why}); running on the causal LM (task=lm)")
    argv, cfg = plan_sweep(name, ctx, extra)
    if plan.extra_backends and ctx.extra_backends:
        swept = [b.strip() for b in str(cfg.hydra.sweeper.params.attention).split(",")]
        # a command-line sweep of a key replaces the experiment's sweep of it
        extra = [*extra, "attention=" + ",".join(swept + [b for b in ctx.extra_backends if b not in swept])]
    sweep = [str(o) for o in (cfg.get("reproduce") or {}).get("sweep") or []]
    if sweep or extra:
        argv = ctx.sweep(name, *extra, *sweep)
    steps = [Step(f"{name}: sweep", lambda argv=argv: argv,
                  estimate=lambda argv=argv, cfg=cfg: estimate_sweep(argv, cfg, ctx))]
    for analysis in plan.analysis:
        steps.append(analysis_step(analysis, name, ctx, ctx.layout.analysis_dir(ctx.scale, name)))
    return steps


def bench_options(scale: str, extra_backends: Sequence[str] = ()) -> list[str]:
    settings = dict(BENCH[scale])
    if extra_backends:
        from omegaconf import OmegaConf

        from harness.bench.table7 import EXPERIMENT

        backends = settings.get("backends") or list(OmegaConf.load(EXPERIMENT)["bench"]["backends"])
        settings["backends"] = [*backends, *(b for b in extra_backends if b not in backends)]
    options = []
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if key == "backends":
            options += [flag, *value]
        elif isinstance(value, list):
            options += [flag, ",".join(map(str, value))]
        else:
            options += [flag, str(value)]
    return options


def bench_step(ctx: Context) -> Step:
    out = ctx.layout.bench_dir(ctx.scale)
    argv = [ctx.python, "-m", "harness.bench", "table7", "--scale", ctx.scale, "--out", str(out),
            *bench_options(ctx.scale, ctx.extra_backends)]
    return Step("table7: speed benchmark", lambda: argv, lambda: bench_done(out, ctx.scale, ctx.extra_backends))


def bench_done(out: Path, scale: str, extra_backends: Sequence[str] = ()) -> str | None:
    """A reason to skip the benchmark: its results exist for these settings with every cell measured."""
    settings_file, csv_file = out / "table7.json", out / "table7.csv"
    if not (settings_file.is_file() and csv_file.is_file()):
        return None
    try:
        settings = json.loads(settings_file.read_text()).get("settings", {})
    except (OSError, json.JSONDecodeError):
        return None
    if settings.get("scale") != scale or any(settings.get(k) != v for k, v in BENCH[scale].items()):
        return None
    if any(b not in settings.get("backends", []) for b in extra_backends):
        return None
    import pandas as pd

    cells = len(settings.get("backends", [])) * len(settings.get("modes", [])) * len(settings.get("lengths", []))
    return f"results with these settings exist ({csv_file})" if len(pd.read_csv(csv_file)) >= cells > 0 else None


def job_dirs(ctx: Context, experiment: str, extra: Sequence[str]) -> list[Path]:
    """The run folders of the sweep ``experiment`` (one per backend of its ``attention`` sweep and seed), as
    ``harness.run`` names them: the configuration's hash, computed the same way."""
    from harness.config import config_hash, resolved_dict, validate
    from harness.run import run_dir_for

    base = [f"experiment={experiment}", f"scale={ctx.scale}", f"run.root={ctx.layout.runs}", *extra, *ctx.overrides]
    backends = str(compose(base).hydra.sweeper.params["attention"]).split(",")
    folders = []
    for backend in backends:
        for seed in range(ctx.seeds):
            cfg = compose([*base, f"attention={backend.strip()}", f"seed={seed}"], hydra_section=False)
            folders.append(run_dir_for(validate(cfg), config_hash(resolved_dict(cfg))))
    return folders


def completed_runs(folders: Sequence[Path]) -> list[Path]:
    from harness.records import read_record

    return [f for f in folders if (read_record(f) or {}).get("status") == "completed"]


def analysis_step(analysis: Analysis, experiment: str, ctx: Context, out: Path) -> Step:
    """``python -m harness.analyze <command>`` on the completed runs of the sweep ``experiment``."""

    def argv() -> list[str]:
        folders = job_dirs(ctx, experiment, [])
        found = completed_runs([f for f in folders if not analysis.first_seed_only or f.name.startswith("seed0-")])
        if not found:
            raise RuntimeError(f"no completed runs of experiment={experiment} at scale {ctx.scale} to analyse")
        options = analysis.options.get(ctx.scale, [])
        return [ctx.python, "-m", "harness.analyze", analysis.command, *map(str, found), "--out", str(out),
                *options]

    return Step(f"{analysis.command} on the runs of experiment={experiment} -> {out}", argv)


# --------------------------------------------------------------------------------------- time estimates
@dataclass
class Estimate:
    """What a sweep will run and how long that takes one run after another (``seconds`` None: no figure for
    some of its runs). ``runs`` counts the sweep's configurations x seeds; ``completed`` of them have a
    completed record and ``shared`` are runs of an earlier table of this invocation: neither is trained again."""

    runs: int
    seconds: float | None
    sources: list[str] = field(default_factory=list)
    completed: int = 0
    shared: int = 0

    @property
    def new(self) -> int:
        return self.runs - self.completed - self.shared

    def summary(self) -> str:
        time_text = "time not estimated" if self.seconds is None else f"about {duration(self.seconds)}"
        return f"{self.runs} runs, {self.new} to train, {time_text}"

    def describe(self) -> str:
        skipped = [f"{n} {what}" for n, what in ((self.completed, "already completed"),
                                                 (self.shared, "shared with an earlier table")) if n]
        text = f"{self.runs} runs" + (f" ({', '.join(skipped)})" if skipped else "")
        if self.seconds is None:
            return f"{text}; time not estimated ({'; '.join(self.sources)})"
        sources = "; ".join(self.sources)
        return f"{text}: {self.new} to train, about {duration(self.seconds)} one after another ({sources})"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def sweep_axes(argv: Sequence[str], cfg: Any) -> dict[str, tuple[str, list[str]]]:
    """The keys a sweep command varies (-> the key as written, with its ``+`` if any, and the values), as
    Hydra's basic sweeper takes them: the experiment file's ``hydra.sweeper.params``, a key given on the command
    line replacing the file's, and the command line's own sweeps (``seed=0,1,2``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()

    def values(override: Any) -> list[str]:
        return [str(v) for v in override.sweep_string_iterator()] if override.is_sweep_override() else [
            override.get_value_element_as_str()]

    params = (cfg.hydra.sweeper.get("params") or {}) if "hydra" in cfg else {}
    axes = {o.key_or_group: (o.get_key_element(), values(o))
            for o in parser.parse_overrides([f"{k}={v}" for k, v in params.items()])}
    for override in parser.parse_overrides(list(argv[4:])):  # after "python -m harness.run -m" (Context.sweep)
        if override.key_or_group in axes or override.is_sweep_override():
            axes[override.key_or_group] = (override.get_key_element(), values(override))
    return axes


def seconds_per_update(task: str, scale: str, runs: Path) -> tuple[float | None, str]:
    """Wall seconds per update for ``task`` at ``scale`` and where the figure comes from: the median of the
    completed runs under ``runs`` (this machine), else ``SECONDS_PER_UPDATE``."""
    measured = []
    for record_file in sorted((runs / task).glob(f"*/{scale}/*/record.json")):
        try:
            record = json.loads(record_file.read_text())
            steps = int(record["config"]["trainer"]["max_steps"])
            if record.get("status") == "completed" and record.get("wall_seconds") and steps > 0:
                measured.append(float(record["wall_seconds"]) / steps)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if measured:
        return statistics.median(measured), f"the median of {len(measured)} completed {task} runs under {runs}"
    family = task.split("/", 1)[0]
    figure = SECONDS_PER_UPDATE.get((family, scale))
    if figure is None:
        return None, f"{task}: no documented figure at scale {scale} and no completed run under {runs}"
    return figure, f"the documented figure for {family} at scale {scale} (docs/reproduce.md)"


def estimate_sweep(argv: Sequence[str], cfg: Any, ctx: Context) -> Estimate:
    """The runs of a sweep command, each composed and named as ``harness.run`` names it, and the wall time of
    those still to train: each one's ``trainer.max_steps`` times its task's :func:`seconds_per_update`. A run
    already completed, or planned by an earlier table of this invocation (``ctx.planned``), costs nothing."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from harness.config import config_hash, resolved_dict, validate
    from harness.records import is_completed, read_record
    from harness.run import run_dir_for

    axes = sweep_axes(argv, cfg)
    seeds = [int(s) for s in axes.pop("seed", ("seed", [str(cfg.get("seed", 0))]))[1]]
    fixed = [o.input_line for o in OverridesParser.create().parse_overrides(list(argv[4:]))
             if o.key_or_group not in axes and o.key_or_group != "seed" and not o.key_or_group.startswith("hydra")]
    estimate, rates = Estimate(0, 0.0), {}
    for combination in itertools.product(*(values for _, values in axes.values())):
        overrides = [*fixed, *(f"{key}={value}" for (key, _), value in zip(axes.values(), combination))]
        try:
            composed = compose(overrides, hydra_section=False)
            typed, resolved = validate(composed), resolved_dict(composed)
        except Exception as err:  # the run will fail at once: no time, and the dry run says why
            estimate.runs += len(seeds)
            estimate.sources.append(f"{' '.join(overrides[len(fixed):])} does not compose: {type(err).__name__}: "
                                    f"{str(err).splitlines()[0]}")
            continue
        task = typed.task.name
        if task not in rates:
            rates[task] = seconds_per_update(task, ctx.scale, ctx.layout.runs)
        rate, source = rates[task]
        for seed in seeds:
            digest = config_hash(resolved | {"seed": seed})
            folder = str(run_dir_for(dataclasses.replace(typed, seed=seed), digest))
            estimate.runs += 1
            if folder in ctx.planned:
                estimate.shared += 1
            elif is_completed(read_record(folder), digest):
                estimate.completed += 1
            elif rate is None or estimate.seconds is None:
                estimate.seconds = None
            else:
                estimate.seconds += typed.trainer.max_steps * rate + SECONDS_PER_RUN
            ctx.planned.add(folder)
        sources = (f"{task}: {typed.trainer.max_steps} updates x {rate:.2g} s + {SECONDS_PER_RUN:g} s, {source}"
                   if rate is not None else source)
        if sources not in estimate.sources:
            estimate.sources.append(sources)
    return estimate


# ----------------------------------------------------------------------------------------- running
@dataclass
class Outcome:
    table: str
    status: str  # done | cells failed | failed | interrupted | unavailable | planned
    detail: str = ""
    seconds: float = 0.0
    estimates: list[Estimate] = field(default_factory=list)  # --dry-run: the planned sweeps


def run_table(name: str, ctx: Context, dry_run: bool, notes: list[str]) -> Outcome:
    started = time.perf_counter()
    try:
        steps = plan_table(name, ctx, notes)
    except Unavailable as err:
        print(f"[{name}] not yet available: {err}", flush=True)
        return Outcome(name, "unavailable", str(err))
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


def run_child(argv: list[str]) -> int:
    """Run one step; a stop signal to this process is passed on to it (it checkpoints and exits 75)."""
    process = subprocess.Popen(argv, cwd=REPO)

    def forward(signum: int, frame: Any) -> None:
        process.send_signal(signum)

    previous = {number: signal.signal(number, forward) for number in (getattr(signal, n) for n in STOP_SIGNALS)}
    try:
        return process.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


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
    data = "" if args.data == "builtin" else f", data {args.data}"
    print(f"reproduce: {' '.join(args.tables)} at scale {args.scale}, {args.seeds} seed(s){data}, launcher "
          f"{args.launcher}; results in {layout.root}", flush=True)
    started = time.perf_counter()
    notes: list[str] = []
    outcomes = []
    for name in args.tables:
        outcomes.append(run_table(name, ctx, args.dry_run, notes))
        if outcomes[-1].status == "interrupted":  # asked to stop: start nothing more, report what is there
            break
    report = None
    if not (args.dry_run or args.no_report):
        from harness.report.report import build_report

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


if __name__ == "__main__":
    sys.exit(main())
