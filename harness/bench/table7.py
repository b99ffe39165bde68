"""Table 7: training and inference speed (steps/s) and peak memory per backend and sequence length.

``python -m harness.bench table7 [--backends ...] [--lengths 1024,3072,5120] [--scale cpu] ...``

The model is the causal LM of ``conf/`` (embeddings, backbone, tied output layer) at a scale (``cpu`` by
default: ``conf/model/lm.yaml`` + ``conf/preset/lm/<scale>.yaml``), each backend with its knobs from
``conf/attention/<backend>.yaml`` (a backend may be given as ``name:knob=value,...``, e.g.
``vanilla:impl=math`` for the materialised N x N matrix the paper's baseline used). Every
(backend, length, mode) cell runs in a fresh process:
- ``train``: forward, cross-entropy on random targets, backward, AdamW step; ``inference``: forward under
  ``torch.no_grad()`` (eval mode);
- ``warmup`` untimed steps, then ``repeats`` steps timed one by one (CUDA synchronised around each); the
  median time gives steps/s, the quartiles its spread;
- the same precision for every backend (``--precision fp32`` or ``bf16`` autocast);
- peak memory: on CUDA the allocator's peak; on a CPU the process's peak resident set size and its growth
  over the resident size just before the first step (the model, optimiser and inputs excluded);
- a memory cap (CUDA: a fraction of the device; CPU: an address-space limit, 80% of RAM by default): a cell
  that runs out of memory is recorded as OOM, longer lengths of that backend and mode are not tried, and the
  sweep goes on.
Outputs in ``--out``: ``table7.csv`` (one row per cell), ``table7.md`` (the paper's layout, "-" for OOM,
our speed ratios beside the paper's), ``environment.json``, ``table7_speed.png`` and ``table7_memory.png``
(log-log against length, one line per backend).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BACKENDS = ("vanilla", "flash", "performer", "transnormer_t2")
DEFAULT_LENGTHS = (1024, 3072, 5120)
MODES = ("train", "inference")
DEFAULT_VOCAB = 2048  # about the built-in corpus's vocabulary at cpu scale
RESULT_MARK = "TABLE7_CELL_RESULT "
OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")


@dataclass
class CellSpec:
    """Everything one measurement process needs (JSON-serialisable)."""

    label: str
    attention: dict[str, Any]
    model: dict[str, Any]
    vocab_size: int
    length: int
    batch_size: int
    mode: str
    precision: str
    device: str
    warmup: int
    repeats: int
    threads: int
    memory_cap_bytes: int | None
    causal: bool = True
    seed: int = 0


# ------------------------------------------------------------------------------------- one cell (child)
def resident_mb() -> float:
    """Current resident set size of this process (Linux /proc), in MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_resident_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def apply_memory_cap(cap_bytes: int | None, device: torch.device) -> None:
    if cap_bytes is None:
        return
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap_bytes / total), device)
    else:
        resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))


def build_model(spec: CellSpec) -> torch.nn.Module:
    from attention_zoo import build_backbone
    from tasks.lm import LanguageModel

    sizes = dict(spec.model) | {"causal": spec.causal, "max_len": max(spec.length, spec.model.get("max_len", 0))}
    backbone = build_backbone(dict(spec.attention), sizes)
    return LanguageModel(backbone, spec.vocab_size, pad_index=0)


def measure(spec: CellSpec) -> dict[str, Any]:
    """Time one cell in this process; returns the measurement (raises on failure, OOM included)."""
    import torch.nn.functional as F

    torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)
    device = torch.device(spec.device)
    model = build_model(spec).to(device)
    tokens = torch.randint(1, spec.vocab_size, (spec.batch_size, spec.length), device=device)
    targets = torch.randint(1, spec.vocab_size, (spec.batch_size, spec.length), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.precision == "bf16")
    if spec.mode == "train":
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

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    baseline = torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else resident_mb()
    apply_memory_cap(spec.memory_cap_bytes, device)
    for _ in range(spec.warmup):
        step()
    times = []
    for _ in range(spec.repeats):
        synchronize()
        started = time.perf_counter()
        step()
        synchronize()
        times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_resident_mb()
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else times * 3
    return {
        "status": "ok",
        "steps_per_sec": 1.0 / median,
        "steps_per_sec_q1": 1.0 / q3,  # slow quartile
        "steps_per_sec_q3": 1.0 / q1,  # fast quartile
        "time_median_s": median,
        "time_min_s": min(times),
        "time_max_s": max(times),
        "tokens_per_sec": spec.batch_size * spec.length / median,
        "peak_memory_mb": peak,
        "peak_above_start_mb": peak - baseline,
        "memory_kind": "cuda_max_allocated" if device.type == "cuda" else "cpu_max_rss",
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    return isinstance(error, RuntimeError) and any(m in str(error).lower() for m in OOM_MESSAGES)


def cell_main(spec_json: str) -> int:
    """Child entry: measure one cell and print its result as one marked JSON line."""
    spec = CellSpec(**json.loads(spec_json))
    try:
        result = measure(spec)
    except BaseException as error:  # noqa: BLE001 - every failure becomes a recorded cell
        status = "oom" if is_out_of_memory(error) else "failed"
        result = {"status": status, "error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------------------------------- the sweep
def run_cell(spec: CellSpec, timeout: float) -> dict[str, Any]:
    """Measure ``spec`` in a fresh Python process; OOM, a crash or a timeout become a status."""
    command = [sys.executable, "-m", "harness.bench.table7", "--cell", json.dumps(asdict(spec))]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "error": f"no result within {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    if done.returncode == -9:  # SIGKILL: on Linux almost always the kernel's out-of-memory killer
        return {"status": "oom", "error": "killed by SIGKILL (out of memory)"}
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"status": "failed", "error": f"exit code {done.returncode}: {tail[0][:300]}"}


def parse_backend(text: str) -> tuple[str, str, dict[str, Any]]:
    """``name`` or ``name:knob=value,...`` -> (label, name, knob overrides); values parsed as YAML scalars."""
    from omegaconf import OmegaConf

    name, _, knobs = text.partition(":")
    overrides = {}
    for item in filter(None, knobs.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"backend {text!r}: knob overrides are key=value pairs, got {item!r}")
        overrides[key] = OmegaConf.create({"v": value})["v"] if value else None
    return text if overrides else name, name, overrides


def model_settings(scale: str, backend: str, overrides: dict[str, Any]) -> tuple[dict, dict]:
    """The attention mapping and backbone sizes of the LM at ``scale``, composed from ``conf/``."""
    from hydra import compose, initialize_config_dir

    from harness.config import validate

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"scale={scale}", f"attention={backend}", "task=lm"])
    for key, value in overrides.items():
        cfg.attention[key] = value
    typed = validate(cfg)
    model = {k: v for k, v in asdict(typed.model).items() if k != "scale_embeddings"}
    model["dropout"] = 0.0  # dropout changes nothing in the cost; keeps cells deterministic
    return typed.attention.as_mapping(), model


def default_memory_cap(device: str) -> int | None:
    if device == "cuda":
        return None  # the device's own memory
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.8)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return f"{names[0]} x {len(names)}" if names else platform.processor()
    except OSError:
        return platform.processor()


def environment(args: argparse.Namespace, device: str) -> dict[str, Any]:
    from harness.records import git_commit, host, now, versions

    info = {
        "date": now(),
        "device": device,
        "cpu": cpu_model(),
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "threads": args.threads,
        "load_average_1_5_15": list(os.getloadavg()),
        "versions": versions(),
        "git": git_commit(ROOT),
        "host": host(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "handler"},
    }
    return info


def length_label(n: int) -> str:
    return f"{n // 1024}K" if n % 1024 == 0 else str(n)


# ---------------------------------------------------------------------------------------- reporting
def paper_table() -> "Any":
    import pandas as pd

    path = ROOT / "results" / "paper" / "table7.csv"
    if not path.is_file():
        return pd.DataFrame(columns=["method", "backend", "mode", "length", "steps_per_sec", "source"])
    return pd.read_csv(path)


def method_names() -> dict[str, str]:
    paper = paper_table()
    return dict(zip(paper["backend"], paper["method"]))


def layout(results: "Any", value: str, fmt: str) -> str:
    """Rows = backends, columns = mode x length (the paper's Table 7), "-" where a cell ran out of memory."""
    names = method_names()
    lengths = sorted(results["length"].unique())
    modes = [m for m in MODES if m in set(results["mode"])]
    header = ["Method"] + [f"{mode} {length_label(n)}" for mode in modes for n in lengths]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label in dict.fromkeys(results["label"]):
        rows = results[results["label"] == label]
        cells = []
        for mode in modes:
            for n in lengths:
                cell = rows[(rows["mode"] == mode) & (rows["length"] == n)]
                if cell.empty:
                    cells.append("")
                elif cell.iloc[0]["status"] == "ok":
                    cells.append(format(cell.iloc[0][value], fmt))
                else:
                    cells.append("-" if cell.iloc[0]["status"] == "oom" else cell.iloc[0]["status"])
        name = names.get(rows.iloc[0]["backend"], label)
        lines.append("| " + " | ".join([name if name == label else f"{name} (`{label}`)", *cells]) + " |")
    return "\n".join(lines)


def ratio_lines(results: "Any", reference: str) -> list[str]:
    """Each backend's speed over ``reference``'s at the same (mode, length), ours and the paper's."""
    paper = paper_table()
    paper = paper[paper["steps_per_sec"].astype(str) != "OOM"].assign(
        steps_per_sec=lambda t: t["steps_per_sec"].astype(float)
    )
    ok = results[results["status"] == "ok"]
    lines = [f"| backend | mode | length | ours: speed / {reference} | paper (GPU): speed / {reference} |",
             "|---|---|---|---|---|"]
    for _, row in ok[ok["label"] != reference].iterrows():
        ref = ok[(ok["label"] == reference) & (ok["mode"] == row["mode"]) & (ok["length"] == row["length"])]
        ours = f"{row['steps_per_sec'] / ref.iloc[0]['steps_per_sec']:.2f}" if len(ref) else "n/a"
        mine = paper[(paper["backend"] == row["backend"]) & (paper["mode"] == row["mode"])
                     & (paper["length"] == row["length"])]
        base = paper[(paper["backend"] == reference) & (paper["mode"] == row["mode"])
                     & (paper["length"] == row["length"])]
        theirs = f"{mine.iloc[0]['steps_per_sec'] / base.iloc[0]['steps_per_sec']:.2f}" if len(mine) and len(base) \
            else "n/a"
        lines.append(f"| {row['label']} | {row['mode']} | {row['length']} | {ours} | {theirs} |")
    return lines


def markdown(results: "Any", env: dict[str, Any]) -> str:
    settings = env["settings"]
    lines = [
        "# Table 7: speed (steps/s, higher is better) and peak memory",
        "",
        f"- device: {env['device']}; CPU: {env['cpu']}; GPU: {env['gpu'] or 'none'}; threads: {env['threads']}",
        f"- load average (1, 5, 15 min) at start: {', '.join(f'{x:.2f}' for x in env['load_average_1_5_15'])}",
        f"- model: LM at scale `{settings['scale']}`, vocabulary {settings['vocab_size']}, batch "
        f"{settings['batch_size']}, {'causal' if not settings['bidirectional'] else 'bidirectional'}, "
        f"precision {settings['precision']}; {settings['warmup']} warm-up + {settings['repeats']} timed steps",
        f"- torch {env['versions'].get('torch')}, python {env['versions'].get('python')}, commit "
        f"{(env['git'] or {}).get('commit', 'unknown')}{' (dirty)' if (env['git'] or {}).get('dirty') else ''}",
        "",
        "## Steps per second (median; \"-\" = out of memory)",
        "",
        layout(results, "steps_per_sec", ".3g"),
        "",
        f"## Peak memory (MiB, {results['memory_kind'].dropna().iloc[0] if results['memory_kind'].notna().any() else ''})",
        "",
        layout(results, "peak_memory_mb", ".0f"),
        "",
        "## Growth of memory over the start of the first step (MiB)",
        "",
        layout(results, "peak_above_start_mb", ".0f"),
    ]
    if "vanilla" in set(results["label"]):
        lines += ["", "## Speed relative to vanilla, ours beside the paper's (GPU)", "", *ratio_lines(results, "vanilla")]
    return "\n".join(lines) + "\n"


def figures(results: "Any") -> dict[str, "Any"]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = results[results["status"] == "ok"]
    out = {}
    for name, value, ylabel in (("table7_speed.png", "steps_per_sec", "steps / s"),
                                ("table7_memory.png", "peak_above_start_mb", "peak memory growth (MiB)")):
        modes = [m for m in MODES if m in set(results["mode"])]
        fig, axes = plt.subplots(1, len(modes), figsize=(5.2 * len(modes), 4), squeeze=False)
        for ax, mode in zip(axes[0], modes):
            for label, rows in ok[ok["mode"] == mode].groupby("label", sort=False):
                rows = rows.sort_values("length")
                ax.plot(rows["length"], rows[value].clip(lower=1e-3), marker="o", label=label)
            ax.set(xscale="log", yscale="log", xlabel="sequence length", ylabel=ylabel, title=mode)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
        fig.tight_layout()
        out[name] = fig
    return out


# -------------------------------------------------------------------------------------------- CLI
def int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backends", nargs="+", default=list(DEFAULT_BACKENDS),
                        help="backend names, optionally name:knob=value,... (default: the paper's Table 7 rows)")
    parser.add_argument("--lengths", type=int_list, default=list(DEFAULT_LENGTHS),
                        help="comma-separated sequence lengths (default 1024,3072,5120)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--scale", default="cpu", help="model size: the LM at this scale (smoke, cpu, paper)")
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--bidirectional", action="store_true", help="bidirectional instead of causal")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="the same for every backend")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--memory-cap-gb", type=float, default=None,
                        help="per-cell cap (CPU: address space, default 80%% of RAM; CUDA: default the device)")
    parser.add_argument("--cell-timeout", type=float, default=1800, help="seconds before a cell is given up")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "table7")


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from harness.analyze.files import save_figure, write_csv
    from tasks.data.atomic import write_json, write_text

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    cap = int(args.memory_cap_gb * 2**30) if args.memory_cap_gb else default_memory_cap(device)
    env = environment(args, device)
    print(f"{env['cpu']} | GPU {env['gpu'] or 'none'} | {args.threads} threads | load {env['load_average_1_5_15']}")
    plan = []
    for text in args.backends:
        label, name, overrides = parse_backend(text)
        attention, model = model_settings(args.scale, name, overrides)
        plan.append((label, name, attention, model))
    rows, total, index = [], len(plan) * len(args.lengths) * len(args.modes), 0
    for label, name, attention, model in plan:
        for mode in args.modes:
            gave_up = None
            for length in sorted(args.lengths):
                index += 1
                spec = CellSpec(label, attention, model, args.vocab_size, length, args.batch_size, mode,
                                args.precision, device, args.warmup, args.repeats, args.threads, cap,
                                causal=not args.bidirectional)
                if gave_up is None:
                    result = run_cell(spec, args.cell_timeout)
                else:
                    result = {"status": gave_up["status"], "error": f"not run: {gave_up['status']} at a shorter length"}
                if result["status"] in ("oom", "timeout"):
                    gave_up = gave_up or result
                rows.append({"label": label, "backend": name, "mode": mode, "length": length,
                             "batch_size": args.batch_size, "precision": args.precision, "device": device} | result)
                shown = (f"{result['steps_per_sec']:.3g} steps/s, peak {result['peak_memory_mb']:.0f} MiB "
                         f"(+{result['peak_above_start_mb']:.0f})" if result["status"] == "ok"
                         else f"{result['status']}: {result.get('error', '')}")
                print(f"[{index}/{total}] {label} {mode} N={length}: {shown}", flush=True)
    env["load_average_1_5_15_end"] = list(os.getloadavg())
    results = pd.DataFrame(rows)
    for column in ("steps_per_sec", "peak_memory_mb", "peak_above_start_mb", "memory_kind"):
        if column not in results:
            results[column] = math.nan
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"wrote {write_csv(results, args.out / 'table7.csv')}")
    write_json(args.out / "environment.json", env)
    text = markdown(results, env)
    write_text(args.out / "table7.md", text)
    print(f"wrote {args.out / 'table7.md'}")
    for name, figure in figures(results).items():
        print(f"wrote {save_figure(figure, args.out / name)}")
    print(text)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--cell":
        sys.exit(cell_main(sys.argv[2]))
    standalone = argparse.ArgumentParser(prog="python -m harness.bench table7", description=__doc__.split("\n")[0])
    add_arguments(standalone)
    sys.exit(run(standalone.parse_args()))
