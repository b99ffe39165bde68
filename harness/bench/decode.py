"""Decoding against context: time per generated token, prefill time and state memory, per causal backend.

``python -m harness.bench decode [--backends ...] [--contexts 1024,4096,16384,65536] [--tokens 64]
[--shapes lm,paper] [--out results/bench/decode]``. Each cell (backend, shape, context) runs in its own
process (``harness.bench.decode_cell``): it builds the causal backbone (``lm``: the cpu-scale LM's, 4 layers of
D = 128; ``paper``: two layers of the paper's shape, D = 512 and 8 heads, so the presets have one Diag and one
Norm layer), prefills the context in one call (timed), then decodes ``--tokens`` tokens one at a time from the
recurrent state (attention_zoo.decoding) and reports the median time per token, and the bytes of every tensor
the state holds. Batch 1, fp32, CPU threads as set (``--threads``, default 1: a small shared machine distorts
2-thread figures). A cell that runs out of memory or time is recorded as such. Writes ``decode.csv``,
``decode.md``, ``decode.json`` and ``decode.png`` (time per token against context, log-log).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attention_zoo.registry import DELTA_AND_SSD, SUCCESSORS
from harness.bench.decode_cell import SHAPES, DecodeCell, GrowthCell
from harness.bench.skeleton import (
    ROOT,
    add_device_argument,
    environment,
    failed_text,
    gib,
    int_list,
    length_label,
    load_average,
    progress,
    resolve_device,
    run_in_subprocess,
    write_figure,
    write_frame,
)
from zoo_io.atomic import write_json, write_text

if TYPE_CHECKING:
    import pandas as pd

CAUSAL_BACKENDS = ["vanilla", "elu", "performer", "cosformer", "norm_attention", "transnormer_t1", "transnormer_t2",
                   "flash", "flash_quad", "ls", *SUCCESSORS, *DELTA_AND_SSD, "hgrn2", "based"]
FIELDS = ["backend", "shape", "context", "status", "seconds_per_token", "seconds_per_token_min",
          "seconds_per_token_max", "prefill_seconds", "state_mib", "tokens", "repeats", "threads", "error"]
CELL_MODULE = "harness.bench.decode_cell"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backends", nargs="+", default=CAUSAL_BACKENDS, help="default: every causal backend")
    parser.add_argument("--contexts", type=int_list, default="1024,4096,16384,65536",
                        help="comma-separated context lengths")
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
    add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    contexts = args.contexts
    shapes = [s.strip() for s in args.shapes.split(",")]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown or args.tokens < 1:
        print(f"error: unknown shape(s) {unknown} (valid: {sorted(SHAPES)}) or --tokens < 1", file=sys.stderr)
        return 2
    device = resolve_device(args.device)
    env = environment(device, args.threads)
    cap = gib(args.memory_cap_gb)
    cells = [DecodeCell(b, s, c, args.tokens, args.threads, device) for s in shapes for b in args.backends
             for c in contexts]
    measured: dict[DecodeCell, list[dict]] = {cell: [] for cell in cells}
    total = max(args.repeats, 1) * len(cells)
    for repeat in range(max(args.repeats, 1)):  # interleaved: a burst of load on the machine hits every cell alike
        for index, cell in enumerate(cells, start=repeat * len(cells) + 1):
            if measured[cell] and measured[cell][-1]["status"] != "ok":
                continue  # out of memory or time once: not again
            result = run_in_subprocess(cell, memory_cap_bytes=cap, timeout_s=args.timeout_s, module=CELL_MODULE)
            measured[cell].append(result)
            progress(index, total, describe(asdict(cell) | result))
    growth = []
    growth_cells = [GrowthCell(b, s, min(contexts), max(contexts), args.tokens, args.threads, device)
                    for s in shapes for b in args.backends] if args.growth else []
    for index, cell in enumerate(growth_cells, start=1):
        result = run_in_subprocess(cell, memory_cap_bytes=cap, timeout_s=args.timeout_s, module=CELL_MODULE)
        growth.append(asdict(cell) | result)
        progress(index, len(growth_cells), f"{cell.shape:5s} {cell.backend:15s} growth {cell.short}->{cell.long}: "
                 + (f"{result['growth']:.2f}x" if result["status"] == "ok" else result["status"]))
    write_results([asdict(cell) | combine(results) for cell, results in measured.items()], args, env, growth)
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
        return head + failed_text(row)
    return head + (f"{row['seconds_per_token'] * 1e3:8.2f} ms/token  prefill {row['prefill_seconds']:7.2f} s  "
                   f"state {row['state_mib']:8.2f} MiB")


def write_results(rows: list[dict], args: argparse.Namespace, env: dict[str, Any], growth: list[dict] = ()) -> None:
    """decode.csv, decode.json, decode.md and decode.png (and decode_growth.csv with --growth)."""
    import pandas as pd

    out = Path(args.out)
    frame = pd.DataFrame(rows).reindex(columns=FIELDS)
    write_frame(out / "decode.csv", frame)
    settings = {"contexts": ",".join(map(str, args.contexts)), "tokens": args.tokens, "shapes": args.shapes,
                "threads": args.threads, "repeats": args.repeats, "load_average_end": load_average(),
                "torch": env["torch"]}
    write_json(out / "decode.json", {"settings": settings, "environment": env})
    text = markdown(frame, settings)
    if growth:
        growth_frame = pd.DataFrame(growth)
        write_frame(out / "decode_growth.csv", growth_frame)
        text += growth_markdown(growth_frame)
    write_text(out / "decode.md", text)
    plot(frame, out / "decode.png")


def markdown(frame: pd.DataFrame, settings: dict) -> str:
    lines = ["# Decoding: time per token against context", "",
             f"Batch 1, fp32, {settings['threads']} thread(s); median over {settings['tokens']} tokens after a "
             f"one-call prefill (median over {settings['repeats']} interleaved repeat(s)); state = bytes of the "
             f"recurrent state (KV cache for vanilla). Load average at the end {settings['load_average_end']}.", ""]
    for shape, part in frame.groupby("shape", sort=False):
        contexts = sorted(part["context"].unique())
        lines += [f"## shape `{shape}` ({SHAPES[shape]})", "",
                  "| backend | " + " | ".join(f"{length_label(c)} ms/token (state MiB)" for c in contexts)
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


def growth_markdown(frame: pd.DataFrame) -> str:
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


def plot(frame: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    write_figure(path, figure)
    plt.close(figure)
