"""What ``./reproduce.sh`` runs for a table: its steps (a sweep, the Table 7 benchmark, the diagnostics on the
sweep's runs), each a command printed before it runs, planned from the table's experiment file."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

import tasks
from harness.compose import compose as compose_conf
from harness.config import config_hash, resolved_dict, validate
from harness.execute import run_dir_for
from harness.experiments import EXPERIMENTS, Analysis, table_plan
from harness.report.layout import Layout
from harness.reproduce.compute import Hardware
from harness.reproduce.estimate import Estimate, estimate_sweep, sweep_axes
from harness.run_record import read_record
from tasks.glue.pretrained import PRETRAINING_TASK

LAUNCHERS = {"local": "local", "joblib": "joblib", "slurm": "submitit_slurm"}


class Unavailable(Exception):
    """A table that cannot run in this checkout yet; the message says why."""


def bench_settings(scale: str) -> dict[str, Any]:
    """The Table 7 benchmark's options at ``scale`` (its experiment file's ``reproduce.bench``)."""
    return (table_plan("table7").bench or {})[scale]


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
    hardware: Hardware | None = None  # --dry-run's compute plan: the GPU it is priced on (None: no plan)
    gpus_per_run: int = 1  # > 1: each run is one SLURM job step of this many tasks, one GPU each

    def sweep(self, experiment: str, *extra: str) -> list[str]:
        seeds = ",".join(str(s) for s in range(self.seeds))
        return [
            self.python, "-m", "harness.run", "-m", f"experiment={experiment}", f"scale={self.scale}",
            f"seed={seeds}", f"hydra/launcher={LAUNCHERS[self.launcher]}", *self.launcher_overrides(),
            f"run.root={self.layout.runs}", *([] if self.wandb else ["logger=none"]), *extra, *self.overrides,
        ]

    @property
    def run_overrides(self) -> list[str]:
        """The overrides that make the runs (the launcher's, ``hydra.launcher.*``, compose only with their launcher
        selected: they go to the sweep's command, not to the planning's compositions)."""
        return [o for o in self.overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]

    def launcher_overrides(self) -> list[str]:
        """A run of several GPUs: as many SLURM tasks on its node, each a rank of the run's process group
        (harness.distributed reads the step's placement)."""
        if self.gpus_per_run == 1:
            return []
        return [f"hydra.launcher.gpus_per_node={self.gpus_per_run}",
                f"hydra.launcher.tasks_per_node={self.gpus_per_run}"]


@dataclass
class Step:
    """One command of a table; ``argv`` may be computed when the step runs (it depends on earlier steps)."""

    describe: str
    argv: Callable[[], list[str]]
    skip: Callable[[], str | None] = lambda: None  # a reason to skip (e.g. results already there)
    estimate: Callable[[], Estimate] | None = None  # a sweep's runs and their time, for --dry-run
    after_all_runs: bool = False  # reads runs that other tables' sweeps may train too (the diagnostics)


def compose(overrides: Sequence[str], hydra_section: bool = True) -> Any:
    """``conf/`` composed with these overrides, with Hydra's section (the sweep's parameters) or, as a run
    sees it, without."""
    return compose_conf(overrides, hydra_section=hydra_section)


def check_task(name: str) -> None:
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
        compose(["task=mlm", f"scale={ctx.scale}", *ctx.run_overrides])
    except Unavailable as err:
        return [], str(err)
    except Exception as err:
        return [], f"task=mlm does not compose: {type(err).__name__}: {str(err).splitlines()[0]}"
    return ["task=mlm"], ""


def first_values(overrides: Sequence[str]) -> list[str]:
    """Sweep overrides (``attention=vanilla,elu``) at their first value: what composing one config of the sweep
    needs to check it (Hydra's compose takes no sweep); lists, dicts and quoted values are kept whole."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return [f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}" if o.is_sweep_override() else o.input_line
            for o in parsed]


def plan_sweep(name: str, ctx: Context, extra: Sequence[str] = ()) -> tuple[list[str], Any]:
    """The sweep command of experiment ``name`` and its composed config; raises Unavailable."""
    if not (EXPERIMENTS / f"{name}.yaml").is_file():
        raise Unavailable(f"conf/experiment/{name}.yaml does not exist")
    try:
        cfg = compose([f"experiment={name}", f"scale={ctx.scale}", *first_values([*extra, *ctx.run_overrides])])
    except Exception as err:
        raise Unavailable(f"experiment={name} does not compose: {type(err).__name__}: "
                          f"{str(err).splitlines()[0]}") from None
    for task in sweep_tasks(cfg):
        check_task(task)
    return ctx.sweep(name, *extra), cfg


def plan_table(name: str, ctx: Context, notes: list[str]) -> list[Step]:
    """The steps that produce table ``name`` (its experiment file's plan); raises Unavailable with the reason."""
    plan = table_plan(name)
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
    phases = task_phases(name, sweep_axes(argv, cfg), ctx)
    steps = []
    if ctx.launcher == "slurm":  # the data once, here, before any job: the jobs and their ranks only read it
        given = first_values([*extra, *sweep, *ctx.run_overrides])
        for task in dict.fromkeys([t for phase in phases for t in phase] or [str(cfg.task.name)]):
            command = [ctx.python, "-m", "harness.prepare", f"experiment={name}", f"scale={ctx.scale}", *given,
                       f"task={task}"]
            steps.append(Step(f"{name}: prepare the data of task={task}", lambda command=command: command))
    for index, phase in enumerate(phases):  # one after another: a phase's sweep ends before the next starts
        phase_argv = argv if len(phases) == 1 else [  # the phase's tasks replace the sweep's (the user's too)
            *(a for a in argv if not a.startswith("task=")), f"task={','.join(phase)}"]
        describe = f"{name}: sweep" if len(phases) == 1 else (
            f"{name}: sweep, phase {index + 1} of {len(phases)} (task={','.join(phase)}"
            + ("; fine-tunes the runs of phase 1)" if index else ")"))
        steps.append(Step(describe, lambda argv=phase_argv: argv,
                          estimate=lambda argv=phase_argv, cfg=cfg: estimate_sweep(argv, cfg, ctx)))
    for analysis in plan.analysis:
        steps.append(analysis_step(analysis, name, ctx, ctx.layout.analysis_dir(ctx.scale, name)))
    return steps


def needs_pretraining(experiment: str, task: str, ctx: Context) -> bool:
    """Whether a run of ``task`` fine-tunes a pretraining run it finds itself (``task.init_from=auto``)."""
    cfg = compose([f"experiment={experiment}", f"scale={ctx.scale}", *first_values(ctx.run_overrides), f"task={task}"],
                  hydra_section=False)
    return cfg.task.get("init_from") == "auto"


def task_phases(experiment: str, axes: dict[str, tuple[str, list[str]]], ctx: Context) -> list[list[str]]:
    """The sweep's tasks in the order their runs depend on each other: the pretraining runs first, when the
    sweep holds both them and fine-tunings that need them (Table 5). One phase otherwise. Every launcher runs a
    sweep's jobs in any order (joblib and SLURM in parallel), so the orchestrator, not the job order, keeps a
    fine-tuning from starting before its pretraining has completed."""
    tasks = axes.get("task", ("task", []))[1]
    if PRETRAINING_TASK not in tasks:
        return [tasks]
    later = [t for t in tasks if t != PRETRAINING_TASK and needs_pretraining(experiment, t, ctx)]
    if not later:
        return [tasks]
    return [[t for t in tasks if t not in later], later]


def bench_options(scale: str, extra_backends: Sequence[str] = ()) -> list[str]:
    settings = dict(bench_settings(scale))
    if extra_backends:
        backends = settings.get("backends") or list(OmegaConf.load(EXPERIMENTS / "table7.yaml")["bench"]["backends"])
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
    argv = on_a_gpu(ctx, [ctx.python, "-m", "harness.bench", "table7", "--scale", ctx.scale, "--out", str(out),
                          *bench_options(ctx.scale, ctx.extra_backends)])
    return Step("table7: speed benchmark", lambda: argv, lambda: bench_done(out, ctx.scale, ctx.extra_backends))


# the submitit launcher's settings that srun takes too (hydra.launcher.<key>=<value> after ./reproduce.sh's --)
SRUN_OPTIONS = {"partition": "--partition", "account": "--account", "qos": "--qos", "constraint": "--constraint",
                "timeout_min": "--time", "cpus_per_task": "--cpus-per-task", "mem_gb": "--mem"}


def on_a_gpu(ctx: Context, argv: list[str]) -> list[str]:
    """``argv`` as a job step on one GPU of the cluster under ``--launcher slurm`` (the benchmark and the
    diagnostics measure the paper's hardware, not the submitting node's CPU), else as it is."""
    if ctx.launcher != "slurm":
        return argv
    options = []
    for override in ctx.overrides:
        key, _, value = override.partition("=")
        name = key.removeprefix("hydra.launcher.")
        if key.startswith("hydra.launcher.") and name in SRUN_OPTIONS and value not in ("", "null"):
            options.append(f"{SRUN_OPTIONS[name]}={value}G" if name == "mem_gb" else f"{SRUN_OPTIONS[name]}={value}")
    return ["srun", "--nodes=1", "--ntasks=1", "--gpus=1", *options, *argv]


def bench_done(out: Path, scale: str, extra_backends: Sequence[str] = ()) -> str | None:
    """A reason to skip the benchmark: its results exist for these settings with every cell measured."""
    settings_file, csv_file = out / "table7.json", out / "table7.csv"
    if not (settings_file.is_file() and csv_file.is_file()):
        return None
    try:
        settings = json.loads(settings_file.read_text()).get("settings", {})
    except (OSError, json.JSONDecodeError):
        return None
    if settings.get("scale") != scale or any(settings.get(k) != v for k, v in bench_settings(scale).items()):
        return None
    if any(b not in settings.get("backends", []) for b in extra_backends):
        return None
    cells = len(settings.get("backends", [])) * len(settings.get("modes", [])) * len(settings.get("lengths", []))
    return f"results with these settings exist ({csv_file})" if len(pd.read_csv(csv_file)) >= cells > 0 else None


def job_dirs(ctx: Context, experiment: str, extra: Sequence[str]) -> list[Path]:
    """The run folders of the sweep ``experiment`` (one per backend of its ``attention`` sweep and seed), as
    ``harness.run`` names them: the configuration's hash, computed the same way."""
    base = [f"experiment={experiment}", f"scale={ctx.scale}", f"run.root={ctx.layout.runs}", *extra,
            *ctx.run_overrides]
    backends = str(compose(base).hydra.sweeper.params["attention"]).split(",")
    folders = []
    for backend in backends:
        for seed in range(ctx.seeds):
            cfg = compose([*base, f"attention={backend.strip()}", f"seed={seed}"], hydra_section=False)
            folders.append(run_dir_for(validate(cfg), config_hash(resolved_dict(cfg))))
    return folders


def completed_runs(folders: Sequence[Path]) -> list[Path]:
    return [f for f in folders if (read_record(f) or {}).get("status") == "completed"]


def analysis_step(analysis: Analysis, experiment: str, ctx: Context, out: Path) -> Step:
    """``python -m harness.analyze <command>`` on the completed runs of the sweep ``experiment``."""

    def argv() -> list[str]:
        folders = job_dirs(ctx, experiment, [])
        found = completed_runs([f for f in folders if not analysis.first_seed_only or f.name.startswith("seed0-")])
        if not found:
            raise RuntimeError(f"no completed runs of experiment={experiment} at scale {ctx.scale} to analyse")
        options = analysis.options.get(ctx.scale, [])
        return on_a_gpu(ctx, [ctx.python, "-m", "harness.analyze", analysis.command, *map(str, found), "--out",
                              str(out), *options])

    return Step(f"{analysis.command} on the runs of experiment={experiment} -> {out}", argv, after_all_runs=True)


