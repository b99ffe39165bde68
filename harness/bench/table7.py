"""Table 7: training and inference speed (steps/s) and peak memory of the LM per backend and length.

``python -m harness.bench table7 [--backends ...] [--lengths 1024,3072,5120] [--scale cpu] ...``; the
defaults of the options are the ``bench`` section of ``conf/experiment/table7.yaml``.

The model is the causal LM of ``conf/`` (embeddings scaled by sqrt(D), backbone, tied output layer) at a
scale (``cpu`` by default: ``conf/model/lm.yaml`` + ``conf/preset/lm/<scale>.yaml``), each backend with its
knobs from ``conf/attention/<backend>.yaml``; a backend may be given as ``name:knob=value,...`` (e.g.
``vanilla:impl=math``, the materialised N x N matrix of the paper's baseline). Dropout is set to 0 (it
does not change the cost) and the vocabulary is ``--vocab-size`` (random tokens). Every
(backend, length, mode) cell runs in its own process (``harness.bench.runner``):
- ``train``: forward, cross-entropy, backward, AdamW step; ``inference``: forward under ``torch.no_grad()``
  in eval mode;
- ``--warmup`` untimed steps, then ``--repeats`` steps timed one by one (CUDA synchronised around each);
  steps/s is 1 / the median time, the spread the slowest and fastest step;
- the same precision for every backend (``--precision fp32``, or ``bf16`` autocast);
- peak memory above the baseline taken once the model, optimiser and inputs exist
  (``harness.bench.memory``: CPU peak resident set size, CUDA allocator peak);
- CPU cells run on glibc's heap, as the kernel benchmark's (``harness.bench.runner``: no page faults on every
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
import json
import os
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from harness.bench.cell import failure
from harness.bench.kernels import cpu_name
from harness.bench.memory import PeakMemory
from harness.bench.runner import ROOT, omp_wait_policy, run_in_subprocess
from zoo_io.atomic import write_json, write_text

if TYPE_CHECKING:
    import pandas as pd

EXPERIMENT = ROOT / "conf" / "experiment" / "table7.yaml"  # the defaults of the command-line options
MODES = ("train", "inference")
GIVE_UP = ("oom", "timeout")  # longer lengths of the same backend and mode would fail the same way
COLUMNS = (
    "label", "backend", "mode", "length", "batch_size", "precision", "device", "status", "steps_per_sec",
    "steps_per_sec_min", "steps_per_sec_max", "tokens_per_sec", "time_median_s", "time_min_s", "time_max_s",
    "spread_pct", "repeats", "times_s", "peak_memory_mib", "memory_method", "parameters", "error",
)
RUN_COLUMNS = ("run", *COLUMNS)  # table7_runs.csv: one row per cell and run


@dataclass(frozen=True)
class ModelCell:
    """One (backend, length, mode) measurement (JSON-serialisable, for ``harness.bench.runner``)."""

    label: str
    attention: dict
    model: dict
    vocab_size: int
    length: int
    batch_size: int
    mode: str
    precision: str
    device: str
    warmup: int
    repeats: int
    threads: int | None
    memory_cap_bytes: int | None = None  # CUDA only; on a CPU the runner caps the address space
    causal: bool = True
    seed: int = 0


# ------------------------------------------------------------------------------------- one cell (child)
def build_model(cell: ModelCell) -> torch.nn.Module:
    from attention_zoo import build_backbone
    from tasks.lm import LanguageModel

    sizes = dict(cell.model) | {"causal": cell.causal, "max_len": max(cell.length, cell.model.get("max_len", 1))}
    return LanguageModel(build_backbone(dict(cell.attention), sizes), cell.vocab_size, pad_index=0)


def measure(cell: ModelCell) -> dict[str, Any]:
    """Time one cell in this process (raises on failure, out of memory included)."""
    import torch.nn.functional as F

    if cell.threads:
        torch.set_num_threads(cell.threads)
    torch.manual_seed(cell.seed)
    device = torch.device(cell.device)
    if device.type == "cuda" and cell.memory_cap_bytes:
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cell.memory_cap_bytes / total), device)
    model = build_model(cell).to(device)
    tokens = torch.randint(1, cell.vocab_size, (cell.batch_size, cell.length), device=device)
    targets = torch.randint(1, cell.vocab_size, (cell.batch_size, cell.length), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cell.precision == "bf16")
    if cell.mode == "train":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step() -> None:
            with autocast:
                logits = model(tokens)
            F.cross_entropy(logits.float().flatten(0, 1), targets.flatten()).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    else:
        model.eval()

        def step() -> None:
            with torch.no_grad(), autocast:
                model(tokens)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    memory = PeakMemory(device)
    memory.reset()
    for _ in range(cell.warmup):
        step()
    times = []
    for _ in range(cell.repeats):
        synchronize()
        started = time.perf_counter()
        step()
        synchronize()
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    return {
        "status": "ok",
        "steps_per_sec": 1 / median,
        "steps_per_sec_min": 1 / max(times),
        "steps_per_sec_max": 1 / min(times),
        "tokens_per_sec": cell.batch_size * cell.length / median,
        "time_median_s": median,
        "time_min_s": min(times),
        "time_max_s": max(times),
        "spread_pct": 100 * (max(times) - min(times)) / median,
        "repeats": len(times),
        "times_s": ";".join(f"{t:.6g}" for t in times),  # every timed step: the claims' bootstrap resamples them
        "peak_memory_mib": memory.peak_mib(),
        "memory_method": memory.method,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def cell_main(argv: list[str]) -> int:
    """``python -m harness.bench.table7 CELL_JSON RESULT_PATH`` (what ``harness.bench.runner`` starts)."""
    if len(argv) != 2:
        print("usage: python -m harness.bench.table7 CELL_JSON RESULT_PATH", file=sys.stderr)
        return 2
    cell = ModelCell(**json.loads(argv[0]))
    try:
        result = measure(cell)
    except BaseException as error:  # noqa: BLE001 - every failure becomes a recorded cell
        result = failure(error)
    write_json(argv[1], result)
    return 0


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


def environment(args: argparse.Namespace, device: str) -> dict[str, Any]:
    from harness.records import git_commit, now, versions

    return {
        "command": " ".join(shlex.quote(a) for a in ["python", "-m", "harness.bench", *sys.argv[1:]]),
        "date": now(),
        "device": device,
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "torch_threads": args.threads or torch.get_num_threads(),
        "load_average_start": load_average(),
        "omp_wait_policy": omp_wait_policy(),
        "versions": versions(),
        "git": git_commit(ROOT),
    }


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (the machine may be shared: timings are only as clean as this)."""
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------------------------------- reporting
def length_label(n: int) -> str:
    return f"{n // 1024}K" if n % 1024 == 0 else str(n)


def paper_table() -> pd.DataFrame:
    import pandas as pd

    path = ROOT / "results" / "paper" / "table7.csv"
    if not path.is_file():
        return pd.DataFrame(columns=["method", "backend", "mode", "length", "steps_per_sec", "source"])
    return pd.read_csv(path, dtype={"steps_per_sec": str})


def cell_text(row: pd.Series, value: str, fmt: str) -> str:
    if row["status"] == "ok":
        return format(row[value], fmt)
    if row["status"] == "oom" or (row["status"] == "skipped" and str(row["error"]).startswith("oom")):
        return "-"
    return row["status"]


def layout(results: pd.DataFrame, value: str, fmt: str) -> str:
    """Rows = backends, columns = mode x length (the paper's Table 7); "-" where a cell ran out of memory."""
    paper = paper_table()
    names = dict(zip(paper["backend"], paper["method"]))
    lengths = sorted(results["length"].unique())
    modes = [m for m in MODES if m in set(results["mode"])]
    header = ["Method"] + [f"{mode} {length_label(n)}" for mode in modes for n in lengths]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, rows in results.groupby("label", sort=False):
        cells = {(r["mode"], r["length"]): cell_text(r, value, fmt) for _, r in rows.iterrows()}
        backend = rows.iloc[0]["backend"]
        name = names.get(backend, backend) + (f" (`{label}`)" if label != backend else "")
        lines.append("| " + " | ".join([name, *(cells.get((m, n), "") for m in modes for n in lengths)]) + " |")
    return "\n".join(lines)


def ratio_table(results: pd.DataFrame, reference: str, runs: pd.DataFrame | None = None) -> str:
    """Each backend's speed over ``reference``'s at the same mode and length, ours and, in brackets, the
    paper's (GPU) where it has both numbers (backends without knob overrides only). With several runs
    (``runs``, measured side by side): the median of the per-run ratios and their min-max."""
    paper = paper_table().assign(steps_per_sec=lambda t: pd_numeric(t["steps_per_sec"])).dropna()
    theirs = {(r["backend"], r["mode"], r["length"]): r["steps_per_sec"] for _, r in paper.iterrows()}
    ok = results[results["status"] == "ok"]
    speed = {(r["label"], r["mode"], r["length"]): r["steps_per_sec"] for _, r in ok.iterrows()}
    paired = paired_ratios(runs, reference) if runs is not None and runs["run"].nunique() > 1 else {}
    lengths = sorted(results["length"].unique())
    lines = ["| backend | mode | " + " | ".join(length_label(n) for n in lengths) + " |",
             "|---|---|" + "---|" * len(lengths)]
    for (label, mode), rows in ok.groupby(["label", "mode"], sort=False):
        if label == reference:
            continue
        backend, cells = rows.iloc[0]["backend"], []
        for n in lengths:
            ours, base = speed.get((label, mode, n)), speed.get((reference, mode, n))
            found = paired.get((label, mode, n))
            if found:
                text = f"{statistics.median(found):.2f} [{min(found):.2f}-{max(found):.2f}, {len(found)} runs]"
            else:
                text = f"{ours / base:.2f}" if ours and base else ""
            paper_pair = theirs.get((backend, mode, n)), theirs.get((reference, mode, n))
            if None not in paper_pair and label == backend:  # knob overrides are not the paper's model
                text += f" ({paper_pair[0] / paper_pair[1]:.2f})"
            cells.append(text)
        lines.append(f"| {label} | {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def memory_growth_table(results: pd.DataFrame) -> str:
    """Per backend and mode: peak memory against length, a least-squares line (MiB per 1K tokens, R^2) and
    the largest growth when the length doubles (2.0 = linear, 4.0 = quadratic)."""
    import numpy as np

    ok = results[results["status"] == "ok"]
    lines = ["| backend | mode | MiB per 1K tokens | R^2 of a line | largest growth per doubling |",
             "|---|---|---|---|---|"]
    for (label, mode), rows in ok.groupby(["label", "mode"], sort=False):
        if len(rows) < 2:
            continue
        n, mib = rows["length"].to_numpy(float), rows["peak_memory_mib"].to_numpy(float)
        slope, intercept = np.polyfit(n, mib, 1)
        r2 = 1 - ((mib - (slope * n + intercept)) ** 2).sum() / max(((mib - mib.mean()) ** 2).sum(), 1e-12)
        peak = dict(zip(rows["length"], rows["peak_memory_mib"]))
        doublings = [peak[2 * k] / peak[k] for k in peak if 2 * k in peak and peak[k] > 0]
        worst = f"{max(doublings):.2f}" if doublings else "n/a"
        fit = f"{r2:.3f}" if len(rows) > 2 else "n/a"  # two points always lie on a line
        lines.append(f"| {label} | {mode} | {slope * 1024:.0f} | {fit} | {worst} |")
    return "\n".join(lines)


def pd_numeric(series: pd.Series) -> pd.Series:
    import pandas as pd

    return pd.to_numeric(series, errors="coerce")


def markdown(results: pd.DataFrame, env: dict[str, Any], settings: dict[str, Any],
             runs: pd.DataFrame | None = None) -> str:
    git = env.get("git") or {}
    lines = [
        "# Table 7: speed (steps/s, higher is better) and peak memory",
        "",
        f"Command: `{env['command']}`",
        "",
        f"- machine: {env['cpu']}, {env['logical_cpus']} logical CPUs, {env['torch_threads']} torch threads, "
        f"device {env['device']}{' (' + env['gpu'] + ')' if env['gpu'] else ''}",
        f"- load average (1, 5, 15 min): {env['load_average_start']} at the start"
        + (f", {env['load_average_end']} at the end" if "load_average_end" in env else ""),
        f"- model: the LM at scale `{settings['scale']}` (vocabulary {settings['vocab_size']}), batch "
        f"{settings['batch_size']}, {'bidirectional' if settings['bidirectional'] else 'causal'}, "
        f"{settings['precision']}; {settings['warmup']} warm-up + {settings['repeats']} timed steps per cell"
        + (f", {settings['runs']} runs of every cell, the backends side by side in each (table7_runs.csv)"
           if settings.get("runs", 1) > 1 else ""),
        f"- torch {env['versions'].get('torch')}, python {env['versions'].get('python')}, commit "
        f"{git.get('commit', 'unknown')}{' (uncommitted changes)' if git.get('dirty') else ''}",
        "",
        '## Steps per second (median; "-" = out of memory)',
        "",
        layout(results, "steps_per_sec", ".3g"),
        "",
        "## Peak memory above the baseline (MiB; the baseline holds the model, optimiser and inputs)",
        "",
        layout(results, "peak_memory_mib", ".0f"),
    ]
    lines += ["", "## Growth of peak memory with length", "", memory_growth_table(results)]
    if "vanilla" in set(results["label"]):
        lines += ["", "## Speed relative to vanilla (in round brackets: the paper's, on a GPU; in square brackets: "
                  "the min-max of the per-run ratios)", ""]
        lines.append(ratio_table(results, "vanilla", runs))
    return "\n".join(lines) + "\n"


def figures(results: pd.DataFrame) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = results[results["status"] == "ok"]
    modes = [m for m in MODES if m in set(results["mode"])]
    out = {}
    for name, value, ylabel in (("table7_speed.png", "steps_per_sec", "steps / s"),
                                ("table7_memory.png", "peak_memory_mib", "peak memory above baseline (MiB)")):
        fig, axes = plt.subplots(1, len(modes), figsize=(5.2 * len(modes), 4), squeeze=False)
        for ax, mode in zip(axes[0], modes):
            for label, rows in ok[ok["mode"] == mode].groupby("label", sort=False):
                rows = rows.sort_values("length")
                ax.plot(rows["length"], rows[value].clip(lower=1e-3), marker="o", label=label)
            ax.set(xscale="log", yscale="log", xlabel="sequence length", ylabel=ylabel, title=mode)
            ax.grid(alpha=0.3, which="both")
            if ax.lines:
                ax.legend(fontsize=7)
        fig.tight_layout()
        out[name] = fig
    return out


def combine_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per cell from its runs: steps/s the median of the runs' medians, the spread from the slowest
    to the fastest step of any run, every timed step in ``times_s``; a cell is ok when every run of it was
    (else the first failure is shown)."""
    import pandas as pd

    rows = []
    for _, group in runs.groupby(["label", "mode", "length"], sort=False):
        failed = group[group["status"] != "ok"]
        if len(failed) or len(group) == 1:
            rows.append((failed if len(failed) else group).iloc[0].drop("run"))
            continue
        row = group.iloc[0].drop("run").copy()
        times = [float(t) for text in group["times_s"] for t in str(text).split(";") if t]
        median = statistics.median(group["time_median_s"].astype(float))
        row["steps_per_sec"], row["time_median_s"] = 1 / median, median
        row["tokens_per_sec"] = row["batch_size"] * row["length"] / median
        row["time_min_s"], row["time_max_s"] = min(times), max(times)
        row["steps_per_sec_min"], row["steps_per_sec_max"] = 1 / max(times), 1 / min(times)
        row["spread_pct"] = 100 * (max(times) - min(times)) / median
        row["repeats"], row["times_s"] = len(times), ";".join(f"{t:.6g}" for t in times)
        row["peak_memory_mib"] = float(group["peak_memory_mib"].astype(float).median())
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS)).reset_index(drop=True)


def paired_ratios(runs: pd.DataFrame, reference: str) -> dict[tuple[str, str, int], list[float]]:
    """(label, mode, length) -> its speed over ``reference``'s, one ratio per run (cells measured side by side)."""
    ok = runs[runs["status"] == "ok"]
    speed = {(r["run"], r["label"], r["mode"], r["length"]): r["steps_per_sec"] for _, r in ok.iterrows()}
    ratios: dict[tuple[str, str, int], list[float]] = {}
    for (run, label, mode, length), value in speed.items():
        base = speed.get((run, reference, mode, length))
        if label != reference and base:
            ratios.setdefault((label, mode, length), []).append(value / base)
    return ratios


def write_outputs(out: Path, runs: list[dict[str, Any]], env: dict[str, Any], settings: dict[str, Any],
                  with_figures: bool) -> str:
    import matplotlib.pyplot as plt
    import pandas as pd

    from harness.analyze.files import save_figure, write_csv

    by_run = pd.DataFrame(runs, columns=list(RUN_COLUMNS))
    results = combine_runs(by_run)
    write_csv(results, out / "table7.csv")
    write_csv(by_run, out / "table7_runs.csv")
    write_json(out / "table7.json", {"environment": env, "settings": settings})
    text = markdown(results, env, settings, by_run)
    write_text(out / "table7.md", text)
    if with_figures:
        for name, figure in figures(results).items():
            save_figure(figure, out / name)
            plt.close(figure)
    return text


# -------------------------------------------------------------------------------------------- CLI
def int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return sorted(set(values))


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
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
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
    for name in ("vocab_size", "batch_size", "repeats", "runs"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be a positive integer", file=sys.stderr)
            return 2
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    cap = int(args.memory_cap_gb * 2**30) if args.memory_cap_gb else default_memory_cap(device)
    from hydra.errors import HydraException

    try:
        plan = []
        for text in args.backends:
            label, name, overrides = parse_backend(text)
            plan.append((label, name, *model_settings(args.scale, name, overrides)))
    except (ValueError, HydraException) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    env = environment(args, device)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "handler"}
    settings["memory_cap_bytes"] = cap
    print(f"{env['cpu']} | {env['logical_cpus']} logical CPUs | {env['torch_threads']} threads | device {device}"
          f" | load {env['load_average_start']}", flush=True)
    runs: list[dict[str, Any]] = []
    total = args.runs * len(plan) * len(args.modes) * len(args.lengths)
    gave_up: dict[tuple[str, str], dict[str, Any]] = {}
    # backends innermost: the cells compared in a ratio run next to each other, under the same load
    for run in range(args.runs):
        for mode in args.modes:
            for length in args.lengths:
                for label, name, attention, model in plan:
                    cell = ModelCell(label, attention, model, args.vocab_size, length, args.batch_size, mode,
                                     args.precision, device, args.warmup, args.repeats, args.threads,
                                     cap if device == "cuda" else None, causal=not args.bidirectional)
                    failed = gave_up.get((label, mode))
                    if failed and failed["length"] <= length:
                        result = {"status": "skipped", "error": f"{failed['status']} at N={failed['length']}"}
                    else:
                        result = run_in_subprocess(cell, memory_cap_bytes=cap, timeout_s=args.timeout_s,
                                                   module="harness.bench.table7")
                        if result["status"] in GIVE_UP:
                            gave_up[(label, mode)] = result | {"length": length}
                    row = {"run": run, "label": label, "backend": name, "mode": mode, "length": length,
                           "batch_size": args.batch_size, "precision": args.precision, "device": device} | result
                    runs.append({column: row.get(column) for column in RUN_COLUMNS})
                    write_outputs(args.out, runs, env, settings, with_figures=False)
                    print(progress_line(len(runs), total, runs[-1]), flush=True)
    env["load_average_end"] = load_average()
    text = write_outputs(args.out, runs, env, settings, with_figures=True)
    print("\n" + text + f"\nwrote {args.out}/table7.{{csv,md,json}}, table7_runs.csv, table7_speed.png, "
          "table7_memory.png")
    return 0


def progress_line(index: int, total: int, row: dict[str, Any]) -> str:
    head = f"[{index:>3}/{total}] {row['label']:<24} {row['mode']:<9} {row['length']:>6}  "
    if row["status"] != "ok":
        return head + f"{row['status']}: {row.get('error') or ''}"
    return head + (f"{row['steps_per_sec']:8.3f} steps/s ({row['steps_per_sec_min']:.3f}-"
                   f"{row['steps_per_sec_max']:.3f})  peak +{row['peak_memory_mib']:.0f} MiB")


if __name__ == "__main__":
    sys.exit(cell_main(sys.argv[1:]))
