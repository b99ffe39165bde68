"""Decoding against context: time per generated token, prefill time and state memory, per causal backend.

``python -m harness.bench decode [--backends ...] [--contexts 1024,4096,16384,65536] [--tokens 64]
[--shapes lm,paper] [--out results/bench/decode]``. Each cell (backend, shape, context) runs in its own
process: it builds the causal backbone (``lm``: the cpu-scale LM's, 4 layers of D = 128; ``paper``: two layers
of the paper's shape, D = 512 and 8 heads, so the presets have one Diag and one Norm layer), prefills the
context in one call (timed), then decodes ``--tokens`` tokens one at a time from the recurrent state
(attention_zoo.decoding) and reports the median time per token, and the bytes of every tensor the state holds.
Batch 1, fp32, CPU threads as set (``--threads``, default 1: a small shared machine distorts 2-thread figures).
A cell that runs out of memory or time is recorded as such. Writes ``decode.csv``, ``decode.md`` and
``decode.png`` (time per token against context, log-log).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from harness.bench.cell import is_out_of_memory
from harness.bench.runner import ROOT, run_in_subprocess
from zoo_io.atomic import write_json, write_text

CAUSAL_BACKENDS = ["vanilla", "elu", "performer", "cosformer", "norm_attention", "transnormer_t1", "transnormer_t2",
                   "flash", "flash_quad", "ls"]
SHAPES = {"lm": {"d_model": 128, "n_layers": 4, "n_heads": 4},  # conf/preset/lm/cpu.yaml
          "paper": {"d_model": 512, "n_layers": 2, "n_heads": 8}}
FIELDS = ["backend", "shape", "context", "status", "seconds_per_token", "seconds_per_token_min",
          "seconds_per_token_max", "prefill_seconds", "state_mib", "tokens", "repeats", "threads", "error"]


@dataclass(frozen=True)
class DecodeCell:
    backend: str
    shape: str
    context: int
    tokens: int
    threads: int
    device: str = "cpu"


def state_bytes(state) -> int:
    """Bytes of every tensor a decoding state holds (its parts included)."""
    return sum(t.numel() * t.element_size() for t in state.tensors.values()) + sum(map(state_bytes, state.parts))


def build_backbone(cell: DecodeCell):
    from attention_zoo import build_backbone as build

    knobs = {"max_len": cell.context + cell.tokens} if cell.backend == "cosformer" else {}
    sizes = SHAPES[cell.shape] | {"causal": True, "dropout": 0.0, "max_len": cell.context + cell.tokens}
    return build({"name": cell.backend, **knobs}, sizes).eval()


@torch.no_grad()
def measure(cell: DecodeCell) -> dict:
    torch.set_num_threads(cell.threads)
    torch.manual_seed(0)
    backbone = build_backbone(cell)
    d_model = SHAPES[cell.shape]["d_model"]
    context = torch.randn(1, cell.context, d_model)
    state = backbone.init_state(1)
    started = time.perf_counter()
    backbone.step(context, state)
    prefill = time.perf_counter() - started
    times = []
    for _ in range(cell.tokens):
        token = torch.randn(1, 1, d_model)
        started = time.perf_counter()
        backbone.step(token, state)
        times.append(time.perf_counter() - started)
    return {"status": "ok", "seconds_per_token": statistics.median(times), "seconds_per_token_min": min(times),
            "seconds_per_token_max": max(times), "prefill_seconds": prefill, "state_mib": state_bytes(state) / 2**20}


@dataclass(frozen=True)
class GrowthCell:
    """Time per token at the shortest and the longest context, in one process, steps interleaved: the ratio
    is immune to the load swings that separate processes see."""

    backend: str
    shape: str
    short: int
    long: int
    tokens: int
    threads: int
    device: str = "cpu"


@torch.no_grad()
def measure_growth(cell: GrowthCell) -> dict:
    torch.set_num_threads(cell.threads)
    torch.manual_seed(0)
    backbone = build_backbone(DecodeCell(cell.backend, cell.shape, cell.long, cell.tokens, cell.threads))
    d_model = SHAPES[cell.shape]["d_model"]
    states = {n: backbone.init_state(1) for n in (cell.short, cell.long)}
    for n, state in states.items():
        backbone.step(torch.randn(1, n, d_model), state)
    times: dict[int, list[float]] = {n: [] for n in states}
    for _ in range(cell.tokens):
        for n, state in states.items():  # alternate: a burst of load hits both
            token = torch.randn(1, 1, d_model)
            started = time.perf_counter()
            backbone.step(token, state)
            times[n].append(time.perf_counter() - started)
    pairs = sorted(b / a for a, b in zip(times[cell.short], times[cell.long]))
    return {"status": "ok", "growth": statistics.median(times[cell.long]) / statistics.median(times[cell.short]),
            "pair_ratio_q25": pairs[len(pairs) // 4], "pair_ratio_q75": pairs[3 * len(pairs) // 4],
            "short_ms": statistics.median(times[cell.short]) * 1e3,
            "long_ms": statistics.median(times[cell.long]) * 1e3,
            "state_mib_short": state_bytes(states[cell.short]) / 2**20,
            "state_mib_long": state_bytes(states[cell.long]) / 2**20}


def cell_main(spec_json: str, result_path: str) -> None:
    spec = json.loads(spec_json)
    cell = GrowthCell(**spec) if "short" in spec else DecodeCell(**spec)
    try:
        result = measure_growth(cell) if isinstance(cell, GrowthCell) else measure(cell)
    except Exception as err:  # recorded, not raised: the sweep goes on
        result = {"status": "oom" if is_out_of_memory(err) else "failed", "error": f"{type(err).__name__}: {err}"}
    write_json(result_path, result)


# ------------------------------------------------------------------------------------------------ sweep
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backends", nargs="+", default=CAUSAL_BACKENDS, help="default: every causal backend")
    parser.add_argument("--contexts", default="1024,4096,16384,65536", help="comma-separated context lengths")
    parser.add_argument("--tokens", type=int, default=64, help="tokens decoded after the prefill (default 64)")
    parser.add_argument("--shapes", default="lm,paper", help=f"comma-separated, of {sorted(SHAPES)}")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1,
                        help="measure every cell this many times, interleaved (all cells, then again); the table "
                        "shows the median over repeats and the spread")
    parser.add_argument("--timeout-s", type=float, default=600, help="per cell")
    parser.add_argument("--memory-cap-gb", type=float, default=16, help="address-space cap per cell")
    parser.add_argument("--growth", action="store_true",
                        help="also measure, per backend and shape in one process with interleaved steps, the time "
                        "per token at the longest context over the shortest (decode_growth.csv, in decode.md)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "decode")


def run(args: argparse.Namespace) -> int:
    contexts = [int(n) for n in args.contexts.split(",")]
    shapes = [s.strip() for s in args.shapes.split(",")]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown or args.tokens < 1:
        print(f"error: unknown shape(s) {unknown} (valid: {sorted(SHAPES)}) or --tokens < 1", file=sys.stderr)
        return 2
    cells = [DecodeCell(b, s, c, args.tokens, args.threads) for s in shapes for b in args.backends for c in contexts]
    measured: dict[DecodeCell, list[dict]] = {cell: [] for cell in cells}
    for _ in range(max(args.repeats, 1)):  # interleaved: a burst of load on the machine hits every cell alike
        for cell in cells:
            if measured[cell] and measured[cell][-1]["status"] != "ok":
                continue  # out of memory or time once: not again
            result = run_in_subprocess(cell, memory_cap_bytes=int(args.memory_cap_gb * 2**30),
                                       timeout_s=args.timeout_s, module="harness.bench.decode")
            measured[cell].append(result)
            print(describe(asdict(cell) | result), flush=True)
    growth = []
    for cell in [GrowthCell(b, s, min(contexts), max(contexts), args.tokens, args.threads)
                 for s in shapes for b in args.backends] if args.growth else []:
        result = run_in_subprocess(cell, memory_cap_bytes=int(args.memory_cap_gb * 2**30),
                                   timeout_s=args.timeout_s, module="harness.bench.decode")
        growth.append(asdict(cell) | result)
        print(f"{cell.shape:5s} {cell.backend:15s} growth {cell.short}->{cell.long}: "
              + (f"{result['growth']:.2f}x" if result["status"] == "ok" else result["status"]), flush=True)
    write_results([asdict(cell) | combine(results) for cell, results in measured.items()], args, growth)
    return 0


def combine(results: list[dict]) -> dict:
    """One row from a cell's repeats: the median of their medians, the spread of all tokens' times."""
    ok = [r for r in results if r["status"] == "ok"]
    if not ok:
        return results[-1]
    return {"status": "ok", "repeats": len(ok),
            "seconds_per_token": statistics.median(r["seconds_per_token"] for r in ok),
            "seconds_per_token_min": min(r["seconds_per_token_min"] for r in ok),
            "seconds_per_token_max": max(r["seconds_per_token_max"] for r in ok),
            "prefill_seconds": statistics.median(r["prefill_seconds"] for r in ok),
            "state_mib": ok[-1]["state_mib"]}


def describe(row: dict) -> str:
    head = f"{row['shape']:5s} {row['backend']:15s} {row['context']:>6d}  "
    if row["status"] != "ok":
        return head + f"{row['status']}: {row.get('error', '')}"
    return head + (f"{row['seconds_per_token'] * 1e3:8.2f} ms/token  prefill {row['prefill_seconds']:7.2f} s  "
                   f"state {row['state_mib']:8.2f} MiB")


def write_results(rows: list[dict], args: argparse.Namespace, growth: list[dict] = ()) -> None:
    import pandas as pd

    out = Path(args.out)
    frame = pd.DataFrame(rows).reindex(columns=FIELDS)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "decode.csv", frame.to_csv(index=False))
    settings = {"contexts": args.contexts, "tokens": args.tokens, "shapes": args.shapes, "threads": args.threads,
                "repeats": args.repeats,
                "load_average_end": list(os.getloadavg()), "torch": torch.__version__}
    write_json(out / "decode.json", {"settings": settings})
    text = markdown(frame, settings)
    if growth:
        growth_frame = pd.DataFrame(growth)
        write_text(out / "decode_growth.csv", growth_frame.to_csv(index=False))
        text += growth_markdown(growth_frame)
    write_text(out / "decode.md", text)
    plot(frame, out / "decode.png")


def markdown(frame, settings: dict) -> str:
    lines = ["# Decoding: time per token against context", "",
             f"Batch 1, fp32, {settings['threads']} thread(s); median over {settings['tokens']} tokens after a "
             f"one-call prefill (median over {settings['repeats']} interleaved repeat(s)); state = bytes of the "
             f"recurrent state (KV cache for vanilla). Load average at the end {settings['load_average_end']}.", ""]
    for shape, part in frame.groupby("shape", sort=False):
        contexts = sorted(part["context"].unique())
        lines += [f"## shape `{shape}` ({SHAPES[shape]})", "",
                  "| backend | " + " | ".join(f"{c // 1024}K ms/token (state MiB)" for c in contexts)
                  + " | growth 1st -> last |", "|---|" + "---|" * (len(contexts) + 1)]
        for backend, rows in part.groupby("backend", sort=False):
            cells, times = [], []
            for context in contexts:
                row = rows[rows["context"] == context]
                if len(row) and row.iloc[0]["status"] == "ok":
                    r = row.iloc[0]
                    cells.append(f"{r['seconds_per_token'] * 1e3:.2f} ({r['state_mib']:.2f})")
                    times.append(r["seconds_per_token"])
                else:
                    cells.append(str(row.iloc[0]["status"]) if len(row) else "–")
            growth = f"{times[-1] / times[0]:.2f}x" if len(times) == len(contexts) and len(times) > 1 else "–"
            lines.append(f"| {backend} | " + " | ".join(cells) + f" | {growth} |")
        lines.append("")
    return "\n".join(lines)


def growth_markdown(frame) -> str:
    lines = ["## Growth of the time per token, measured in one process (steps interleaved)", "",
             "| shape | backend | context | ms/token short / long | growth (median ratio) | per-step ratio q25-q75 "
             "| state MiB short / long |", "|---|---|---|---|---|---|---|"]
    for _, r in frame.iterrows():
        if r["status"] != "ok":
            lines.append(f"| {r['shape']} | {r['backend']} | {r['short']}->{r['long']} | {r['status']} | | | |")
            continue
        lines.append(f"| {r['shape']} | {r['backend']} | {r['short']}->{r['long']} | {r['short_ms']:.2f} / "
                     f"{r['long_ms']:.2f} | {r['growth']:.2f}x | {r['pair_ratio_q25']:.2f}-{r['pair_ratio_q75']:.2f} "
                     f"| {r['state_mib_short']:.2f} / {r['state_mib_long']:.2f} |")
    return "\n".join(lines) + "\n"


def plot(frame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zoo_io.atomic import atomic_write

    ok = frame[frame["status"] == "ok"]
    shapes = list(dict.fromkeys(frame["shape"]))
    figure, axes = plt.subplots(1, len(shapes), figsize=(6 * len(shapes), 4.5), squeeze=False)
    for ax, shape in zip(axes[0], shapes):
        for backend, rows in ok[ok["shape"] == shape].groupby("backend", sort=False):
            ax.plot(rows["context"], rows["seconds_per_token"] * 1e3, marker="o", label=backend)
        ax.set(xscale="log", yscale="log", xlabel="context (tokens)", ylabel="ms per generated token",
               title=f"decoding, shape {shape}")
        ax.legend(fontsize=7)
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    plt.close(figure)


if __name__ == "__main__":
    cell_main(sys.argv[1], sys.argv[2])
