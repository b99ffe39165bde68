"""Table 7: training and inference speed (steps/s) and peak memory of the LM per backend and length.

``python -m harness.bench table7 [--backends ...] [--lengths 1024,3072,5120] [--scale cpu] ...``; the
defaults of the options are the ``bench`` section of ``conf/experiment/table7.yaml``.

The model is the causal LM of ``conf/`` (embeddings scaled by sqrt(D), backbone, tied output layer) at a
scale (``cpu`` by default: ``conf/model/lm.yaml`` + ``conf/preset/lm/<scale>.yaml``), each backend with its
knobs from ``conf/attention/<backend>.yaml``; a backend may be given as ``name:knob=value,...`` (e.g.
``vanilla:impl=math``, the materialised N x N matrix of the paper's baseline). Dropout is set to 0 (it
does not change the cost) and the vocabulary is ``--vocab-size`` (random tokens). Every
(backend, length, mode) cell runs in its own process (``harness.bench.table7_cell``):
- ``train``: forward, cross-entropy, backward, AdamW step; ``inference``: forward under ``torch.no_grad()``
  in eval mode;
- ``--warmup`` untimed steps, then ``--repeats`` steps timed one by one (CUDA synchronised around each);
  steps/s is 1 / the median time, the spread the slowest and fastest step;
- the same precision for every backend (``--precision fp32``, or ``bf16`` autocast);
- peak memory above the baseline taken once the model, optimiser and inputs exist
  (``harness.bench.memory``: CPU peak resident set size, CUDA allocator peak);
- CPU cells run on glibc's heap, as the kernel benchmark's (``harness.bench.skeleton``: no page faults on every
  step from freed blocks handed back to the kernel);
- ``--memory-cap-gb`` (CPU: the process's address space, default 80% of RAM; CUDA: a fraction of the
  device, default all of it): a cell that runs out of memory is recorded as OOM, the longer lengths of that
  backend and mode are skipped, and the sweep goes on.
``--runs R`` measures every cell R times, the backends of one (mode, length) one after the other in each
run, so that a ratio compares cells measured under the same load; the speed ratios are then per run
(median and min-max), and ``table7_runs.csv`` holds every run's row.
Outputs in ``--out`` (rewritten after every cell): ``table7.csv`` (one row per cell), ``table7.md`` (the
paper's layout, "-" for OOM, our speed ratios beside the paper's), ``table7.json`` (machine, load,
versions, commit, settings), ``table7_speed.png`` and ``table7_memory.png`` (log-log against length, one
line per backend).
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.bench.skeleton import (
    ROOT,
    GiveUp,
    add_device_argument,
    announce,
    environment,
    failed_text,
    gib,
    int_list,
    load_average,
    progress,
    require_positive,
    resolve_device,
    run_in_subprocess,
    settings_of,
    write_figure,
    write_frame,
)
from harness.bench.table7_cell import ModelCell
from harness.bench.table7_render import MODES, RUN_COLUMNS, combine_runs, figures, markdown
from zoo_io.atomic import write_json, write_text

EXPERIMENT = ROOT / "conf" / "experiment" / "table7.yaml"  # the defaults of the command-line options


# ---------------------------------------------------------------------------------------- settings
def parse_backend(text: str) -> tuple[str, str, dict[str, Any]]:
    """``name`` or ``name:knob=value,...`` -> (label, name, knob overrides); values read as YAML scalars."""
    import yaml

    name, _, knobs = text.partition(":")
    overrides = {}
    for item in filter(None, knobs.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"backend {text!r}: knob overrides are key=value pairs, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    return (text if overrides else name), name, overrides


def model_settings(scale: str, backend: str, overrides: dict[str, Any]) -> tuple[dict, dict]:
    """The attention mapping and backbone sizes of the LM at ``scale``, composed from ``conf/`` and validated
    (an unknown backend, knob or scale fails here, naming the valid choices)."""
    from omegaconf import open_dict

    from harness.compose import compose
    from harness.config import validate

    cfg = compose(["task=lm", f"scale={scale}", f"attention={backend}"])
    with open_dict(cfg):
        cfg.attention.merge_with(overrides)
    typed = validate(cfg)
    model = {k: v for k, v in asdict(typed.model).items() if k != "scale_embeddings"}
    return typed.attention.as_mapping(), model | {"dropout": 0.0}


def default_memory_cap(device: str) -> int | None:
    """80% of the RAM on a CPU (so a runaway cell fails instead of swapping); CUDA: the device's own limit."""
    return None if device == "cuda" else int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.8)


# ------------------------------------------------------------------------------------------ outputs
def write_outputs(out: Path, runs: list[dict[str, Any]], env: dict[str, Any], settings: dict[str, Any],
                  with_figures: bool) -> str:
    """table7.csv, table7_runs.csv, table7.json and table7.md (and the figures) from the rows so far."""
    import matplotlib.pyplot as plt
    import pandas as pd

    by_run = pd.DataFrame(runs, columns=list(RUN_COLUMNS))
    results = combine_runs(by_run)
    write_frame(out / "table7.csv", results)
    write_frame(out / "table7_runs.csv", by_run)
    write_json(out / "table7.json", {"environment": env, "settings": settings})
    text = markdown(results, env, settings, by_run)
    write_text(out / "table7.md", text)
    if with_figures:
        for name, figure in figures(results).items():
            write_figure(out / name, figure)
            plt.close(figure)
    return text


def describe(row: dict[str, Any]) -> str:
    head = f"{row['label']:<24} {row['mode']:<9} {row['length']:>6}  "
    if row["status"] != "ok":
        return head + failed_text(row)
    return head + (f"{row['steps_per_sec']:8.3f} steps/s ({row['steps_per_sec_min']:.3f}-"
                   f"{row['steps_per_sec_max']:.3f})  peak +{row['peak_memory_mib']:.0f} MiB")


# -------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options; their defaults are the ``bench`` section of conf/experiment/table7.yaml."""
    from omegaconf import OmegaConf

    defaults = OmegaConf.to_container(OmegaConf.load(EXPERIMENT)["bench"])
    parser.set_defaults(**defaults | {"out": ROOT / defaults["out"]})
    parser.add_argument("--backends", nargs="+", metavar="NAME[:KNOB=VALUE,...]",
                        help="backends, optionally with knobs (default: %(default)s, the paper's rows)")
    parser.add_argument("--lengths", type=int_list, help="comma-separated sequence lengths (default: %(default)s)")
    parser.add_argument("--modes", nargs="+", choices=MODES, help="default: %(default)s")
    parser.add_argument("--scale", help="model size: the LM at this scale, smoke | cpu | paper (default: %(default)s)")
    parser.add_argument("--vocab-size", type=int, help="default: %(default)s")
    parser.add_argument("--batch-size", type=int, help="default: %(default)s")
    parser.add_argument("--bidirectional", action="store_true", help="bidirectional model instead of causal")
    parser.add_argument("--precision", choices=["fp32", "bf16"], help="one for every backend (default: %(default)s)")
    add_device_argument(parser)
    parser.add_argument("--warmup", type=int, help="untimed steps per cell (default: %(default)s)")
    parser.add_argument("--repeats", type=int, help="timed steps per cell (default: %(default)s)")
    parser.add_argument("--runs", type=int, help="measure every cell this many times, the backends side by side "
                        "in each run; ratios are then per run (median, min-max) (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per cell (default: torch's)")
    parser.add_argument("--memory-cap-gb", type=float, default=None,
                        help="per cell: CPU address space (default 80%% of RAM), CUDA memory (default all)")
    parser.add_argument("--timeout-s", type=float, help="seconds before a cell is given up (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="output folder (default: %(default)s)")
    unknown = sorted(set(defaults) - {action.dest for action in parser._actions})
    if unknown:
        raise ValueError(f"{EXPERIMENT}: unknown key(s) {unknown} under bench; valid keys: "
                         f"{sorted(a.dest for a in parser._actions if a.dest != 'help')}")


def run(args: argparse.Namespace) -> int:
    from hydra.errors import HydraException

    try:
        require_positive(args, "vocab_size", "batch_size", "repeats", "runs")
        plan = []
        for text in args.backends:
            label, name, overrides = parse_backend(text)
            plan.append((label, name, *model_settings(args.scale, name, overrides)))
    except (ValueError, HydraException) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    device = resolve_device(args.device)
    cap = gib(args.memory_cap_gb) or default_memory_cap(device)
    env = environment(device, args.threads)
    options = settings_of(args) | {"memory_cap_bytes": cap}
    announce(env)
    runs: list[dict[str, Any]] = []
    total = args.runs * len(plan) * len(args.modes) * len(args.lengths)
    give_up = GiveUp()
    # backends innermost: the cells compared in a ratio run next to each other, under the same load
    for run_index in range(args.runs):
        for mode in args.modes:
            for length in args.lengths:
                for label, name, attention, model in plan:
                    cell = ModelCell(label, attention, model, args.vocab_size, length, args.batch_size, mode,
                                     args.precision, device, args.warmup, args.repeats, args.threads,
                                     cap if device == "cuda" else None, causal=not args.bidirectional)
                    result = give_up.skipped((label, mode), length)
                    if result is None:
                        result = run_in_subprocess(cell, memory_cap_bytes=cap, timeout_s=args.timeout_s,
                                                   module="harness.bench.table7_cell")
                        give_up.note((label, mode), length, result["status"])
                    row = {"run": run_index, "label": label, "backend": name, "mode": mode, "length": length,
                           "batch_size": args.batch_size, "precision": args.precision, "device": device} | result
                    runs.append({column: row.get(column) for column in RUN_COLUMNS})
                    write_outputs(args.out, runs, env, options, with_figures=False)
                    progress(len(runs), total, describe(runs[-1]))
    env["load_average_end"] = load_average()
    text = write_outputs(args.out, runs, env, options, with_figures=True)
    print("\n" + text + f"\nwrote {args.out}/table7.{{csv,md,json}}, table7_runs.csv, table7_speed.png, "
          "table7_memory.png")
    return 0
