"""``--dry-run``'s estimates: a sweep's runs, each composed and named as ``harness.run`` names it, and the wall
time of those still to train."""
from __future__ import annotations

import dataclasses
import itertools
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hydra.core.override_parser.overrides_parser import OverridesParser

from harness.compose import compose
from harness.config import config_hash, resolved_dict, validate
from harness.execute import run_dir_for
from harness.report.layout import Layout
from harness.reproduce.compute import ComputeTotals, Hardware, run_cost
from harness.run_record import RunRecord, is_completed, read_record

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
    ("recall", "smoke"): 0.02, ("recall", "cpu"): 0.02,
}
# and per run, besides its updates: Hydra's job, the config check, the record (a smoke sweep of Table 4's 12
# backends took 18 s, its records' wall time 6.6 s)
SECONDS_PER_RUN = 1.0


class Planning(Protocol):
    """What an estimate needs of the invocation (:class:`harness.reproduce.plan.Context`)."""

    scale: str
    layout: Layout
    planned: set[str]
    hardware: Hardware | None  # None: no compute plan


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
    compute: ComputeTotals | None = None  # the runs to train, counted (the compute plan)

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

    def describe_compute(self, hardware: Hardware) -> list[str]:
        if self.compute is None:
            return []
        return [self.compute.describe(hardware), *(f"warning: {w}" for w in self.compute.warnings),
                *self.compute.uncounted]


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def sweep_axes(argv: Sequence[str], cfg: Any) -> dict[str, tuple[str, list[str]]]:
    """The keys a sweep command varies (-> the key as written, with its ``+`` if any, and the values), as
    Hydra's basic sweeper takes them: the experiment file's ``hydra.sweeper.params``, a key given on the command
    line replacing the file's, and the command line's own sweeps (``seed=0,1,2``)."""
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
            record = RunRecord.from_json(json.loads(record_file.read_text()))
            steps = int(record.config["trainer"]["max_steps"])
            if record.status == "completed" and record.spent_seconds and steps > 0:
                measured.append(record.spent_seconds / steps)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if measured:
        return statistics.median(measured), f"the median of {len(measured)} completed {task} runs under {runs}"
    family = task.split("/", 1)[0]
    figure = SECONDS_PER_UPDATE.get((family, scale))
    if figure is None:
        return None, f"{task}: no documented figure at scale {scale} and no completed run under {runs}"
    return figure, f"the documented figure for {family} at scale {scale} (docs/reproduce.md)"


def estimate_sweep(argv: Sequence[str], cfg: Any, ctx: Planning) -> Estimate:
    """The runs of a sweep command, each composed and named as ``harness.run`` names it, and the wall time of
    those still to train: each one's ``trainer.max_steps`` times its task's :func:`seconds_per_update`. A run
    already completed, or planned by an earlier table of this invocation (``ctx.planned``), costs nothing."""
    axes = sweep_axes(argv, cfg)
    seeds = [int(s) for s in axes.pop("seed", ("seed", [str(cfg.get("seed", 0))]))[1]]
    fixed = [o.input_line for o in OverridesParser.create().parse_overrides(list(argv[4:]))
             if o.key_or_group not in axes and o.key_or_group != "seed" and not o.key_or_group.startswith("hydra")]
    estimate, rates = Estimate(0, 0.0, compute=ComputeTotals() if ctx.hardware else None), {}
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
            else:
                if rate is None or estimate.seconds is None:
                    estimate.seconds = None
                else:
                    estimate.seconds += typed.trainer.max_steps * rate + SECONDS_PER_RUN
                if estimate.compute is not None and ctx.hardware is not None:
                    estimate.compute.add(run_cost(typed, overrides), f"{task} {typed.attention.name}", ctx.hardware)
            ctx.planned.add(folder)
        sources = (f"{task}: {typed.trainer.max_steps} updates x {rate:.2g} s + {SECONDS_PER_RUN:g} s, {source}"
                   if rate is not None else source)
        if sources not in estimate.sources:
            estimate.sources.append(sources)
    return estimate


