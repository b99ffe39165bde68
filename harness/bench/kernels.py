"""Kernel benchmark: forward+backward time and peak memory of one token mixer per backend, mode and length.

``python -m harness.bench kernels [--lengths 1024 2048 ...] [--backends ...] [--modes causal bidirectional]
[--out results/bench/kernels.csv] [--memory-cap-gb N] [--scope mixer|attention]``

Every registered backend and two naive baselines (``naive_masked_product``: the masked N x N product;
``naive_outer_cumsum``: the cumulative sum of per-token outer products), B=1, 8 heads of 64 (d_model 512),
fp32 by default. Each cell runs in its own process (``harness.bench.cell``): ``--warmup`` untimed passes,
then ``--repeats`` timed ones (fewer, but at least 3, where the warm-up says they would exceed
``--time-budget-s``); the median is reported with the min and max. A cell that runs out of
memory or times out is recorded as such and the longer lengths of that backend and mode are skipped.
The CSV is rewritten atomically after every cell; beside it go ``<stem>.json`` (machine, settings, the
machine's fp32 matmul throughput: the better of a probe before and one after the sweep, targets) and
``<stem>.md`` (the tables).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.bench import against_public, skeleton
from harness.bench import targets as target_checks
from harness.bench.cell import CellSpec
from harness.bench.skeleton import (
    ROOT,
    GiveUp,
    add_device_argument,
    announce,
    environment,
    failed_text,
    gib,
    length_label,
    load_average,
    machine_text,
    progress,
    require_positive,
    resolve_device,
    run_in_subprocess,
    settings_of,
)
from harness.bench.workloads import MODES, SCOPES, backend_names, check_backends, is_linear
from zoo_io.atomic import write_json, write_text

DEFAULT_LENGTHS = (1024, 2048, 4096, 8192, 16384)
DEFAULT_OUT = ROOT / "results" / "bench" / "kernels.csv"
DEFAULT_PUBLIC_OUT = ROOT / "results" / "bench" / "kernels_public.csv"
SETTINGS = ("batch", "heads", "head_dim", "d_model", "scope", "device", "dtype")
COLUMNS = (
    "backend", "mode", "n", *SETTINGS, "linear", "status", "time_median_s", "time_min_s", "time_max_s",
    "spread_pct", "repeats", "peak_memory_mib", "memory_method", "flops_fwd_bwd", "achieved_gflops",
    "fraction_of_matmul_peak", "error",
)
NUMERIC = {
    "n": int, "batch": int, "heads": int, "head_dim": int, "d_model": int, "repeats": int,
    "time_median_s": float, "time_min_s": float, "time_max_s": float, "spread_pct": float,
    "peak_memory_mib": float, "flops_fwd_bwd": float, "achieved_gflops": float, "fraction_of_matmul_peak": float,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS), metavar="N",
                        help="sequence lengths (default: 1024 2048 4096 8192 16384)")
    parser.add_argument("--backends", nargs="+", default=None, metavar="NAME",
                        help=f"default: all of {backend_names()}")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--out", type=Path, default=None,
                        help=f"CSV path (default: {DEFAULT_OUT}, with --against public {DEFAULT_PUBLIC_OUT})")
    parser.add_argument("--against", choices=["none", "public"], default="none",
                        help="public: time each mixer beside the public implementation of its method "
                             "(harness/bench/public.py), interleaved in one process")
    parser.add_argument("--public-path", nargs="+", default=[], metavar="DIR",
                        help="with --against public: folders to import public code from (e.g. the official cosFormer)")
    parser.add_argument("--memory-cap-gb", type=float, default=None,
                        help="CPU: cap each cell's address space (RLIMIT_AS) at this many GiB")
    parser.add_argument("--scope", choices=SCOPES, default="mixer",
                        help="mixer: the whole module; attention: without its q/k/v/out projections")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes per cell (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per cell (default 5)")
    parser.add_argument("--time-budget-s", type=float, default=None,
                        help="per cell: fewer repeats (at least 3) when the warm-up pass says they exceed this")
    add_device_argument(parser)
    parser.add_argument("--threads", type=int, default=None, help="torch threads per cell (default: torch's)")
    parser.add_argument("--timeout-s", type=float, default=1800, help="seconds before a cell is given up")
    parser.add_argument("--peak-size", type=int, default=4096, help="matrix size of the matmul-peak probe")
    parser.add_argument("--resume", action="store_true",
                        help="keep the cells already in --out measured with the same settings")


def validate(args: argparse.Namespace) -> None:
    check_backends(args.backends or backend_names())
    if args.public_path and args.against != "public":
        raise ValueError("--public-path is only used with --against public")
    require_positive(args, "batch", "heads", "head_dim", "repeats", "peak_size", "lengths")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
    if args.time_budget_s is not None and args.time_budget_s <= 0:
        raise ValueError(f"--time-budget-s must be positive, got {args.time_budget_s}")
    if args.memory_cap_gb is not None and args.memory_cap_gb <= 0:
        raise ValueError(f"--memory-cap-gb must be positive, got {args.memory_cap_gb}")


# ------------------------------------------------------------------------------------------ the rows
def make_row(spec: CellSpec, result: dict[str, Any], peak_flops: float | None) -> dict[str, Any]:
    row = {
        "backend": spec.backend, "mode": spec.mode, "n": spec.n, "batch": spec.batch, "heads": spec.heads,
        "head_dim": spec.head_dim, "d_model": spec.d_model, "scope": spec.scope, "device": spec.device,
        "dtype": "float32", "linear": is_linear(spec.backend, spec.mode),
    } | result
    if row.get("status") == "ok":
        row["spread_pct"] = 100 * (row["time_max_s"] - row["time_min_s"]) / row["time_median_s"]
    return add_throughput({column: row.get(column) for column in COLUMNS}, peak_flops)


def add_throughput(row: dict[str, Any], peak_flops: float | None) -> dict[str, Any]:
    """Achieved GFLOP/s and fraction of the matmul peak, where the cell has a FLOP count."""
    if row.get("status") == "ok" and row.get("flops_fwd_bwd"):
        row["achieved_gflops"] = row["flops_fwd_bwd"] / row["time_median_s"] / 1e9
        if peak_flops:
            row["fraction_of_matmul_peak"] = row["flops_fwd_bwd"] / row["time_median_s"] / peak_flops
    return row


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    skeleton.write_rows(path, rows, COLUMNS)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of an earlier CSV, with their numbers (``--resume``)."""
    rows: list[dict[str, Any]] = skeleton.read_rows(path)
    for row in rows:
        for column, kind in NUMERIC.items():
            row[column] = kind(float(row[column])) if row.get(column) not in (None, "") else None
        row["linear"] = row.get("linear") == "True"
    return rows


def same_settings(row: dict[str, Any], spec: CellSpec) -> bool:
    return all(str(row[key]) == str(getattr(spec, key) if key != "dtype" else "float32") for key in SETTINGS)


# ---------------------------------------------------------------------------------------- reporting
def describe(row: dict[str, Any]) -> str:
    head = f"{row['backend']:<22} {row['mode']:<13} {row['n']:>6}  "
    if row["status"] != "ok":
        return head + failed_text(row)
    return head + (
        f"{row['time_median_s']:8.3f} s  ({row['time_min_s']:.3f}-{row['time_max_s']:.3f}, "
        f"spread {row['spread_pct']:.0f}%)  {row['peak_memory_mib']:9.1f} MiB"
    )


def cell_text(row: dict[str, Any] | None, value: str) -> str:
    if row is None:
        return ""
    if row["status"] != "ok":
        return {"not_applicable": "n/a", "skipped": "skip"}.get(row["status"], row["status"].upper())
    return f"{row[value]:.3g}" if value == "time_median_s" else f"{row[value]:.0f}"


def markdown_tables(rows: list[dict[str, Any]]) -> str:
    """Per mode: time (median seconds) and peak memory (MiB above baseline), backends x lengths."""
    lengths = sorted({int(r["n"]) for r in rows})
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    cells = {(r["backend"], r["mode"], int(r["n"])): r for r in rows}
    parts = []
    for mode in dict.fromkeys(r["mode"] for r in rows):
        for value, title in (("time_median_s", "forward+backward time, median s"),
                             ("peak_memory_mib", "peak memory above baseline, MiB")):
            header = "| backend | " + " | ".join(length_label(n) for n in lengths) + " |"
            lines = [f"**{mode}: {title}**", "", header, "|---" * (len(lengths) + 1) + "|"]
            for backend in backends:
                lines.append(f"| {backend} | " + " | ".join(cell_text(cells.get((backend, mode, n)), value)
                                                         for n in lengths) + " |")
            parts.append("\n".join(lines))
        if len(backends) > 1:
            parts.append(ratio_table(cells, backends, mode, lengths))
    return "\n\n".join(parts) + "\n"


def ratio_table(cells: dict[tuple[str, str, int], dict[str, Any]], backends: list[str], mode: str,
                lengths: list[int]) -> str:
    """Each backend's time over the first's (the reference), as the median's ratio with the widest range its
    repeats allow (its fastest over the reference's slowest, its slowest over the reference's fastest)."""
    reference = backends[0]

    def text(backend: str, n: int) -> str:
        row, ref = cells.get((backend, mode, n)), cells.get((reference, mode, n))
        if row is None or ref is None or row["status"] != "ok" or ref["status"] != "ok":
            return ""
        ratio = row["time_median_s"] / ref["time_median_s"]
        low, high = row["time_min_s"] / ref["time_max_s"], row["time_max_s"] / ref["time_min_s"]
        return f"{ratio:.2f} ({low:.2f}-{high:.2f})"

    header = "| backend | " + " | ".join(length_label(n) for n in lengths) + " |"
    lines = [f"**{mode}: time over {reference}'s, median (range over the repeats)**", "", header,
             "|---" * (len(lengths) + 1) + "|"]
    lines += [f"| {b} | " + " | ".join(text(b, n) for n in lengths) + " |" for b in backends[1:]]
    return "\n".join(lines)


def targets_markdown(evaluated: list[dict[str, Any]], fractions: list[dict[str, Any]], peak: float | None) -> str:
    verdict = {True: "met", False: "MISSED", None: "not measured"}
    lines = ["| target | value | limit | result | detail |", "|---|---|---|---|---|"]
    for t in evaluated:
        value = "" if t["value"] is None else f"{t['value']:.2f}"
        lines.append(f"| {t['target']} | {value} | {t['limit']} | {verdict[t['passed']]} | {t['detail']} |")
    text = "\n".join(lines) + "\n"
    if fractions:
        peak_text = f"{peak / 1e9:.0f} GFLOP/s" if peak else "not measured"
        text += (f"\nMatmul throughput of the machine (fp32): {peak_text}.\n\n"
                 "| backend (bidirectional) | N | GFLOP fwd+bwd | time s | GFLOP/s | fraction of matmul peak |\n"
                 "|---|---|---|---|---|---|\n")
        for f in fractions:
            text += (f"| {f['backend']} | {f['n']} | {f['flops_fwd_bwd'] / 1e9:.1f} | {f['time_median_s']:.3g} | "
                     f"{f['achieved_gflops']:.1f} | {f['fraction_of_matmul_peak']:.1%} |\n")
    return text


# ------------------------------------------------------------------------------------------ the sweep
def run(args: argparse.Namespace) -> int:
    try:
        validate(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    device = resolve_device(args.device)
    env = environment(device, args.threads)
    if args.against == "public":
        args.out = args.out or DEFAULT_PUBLIC_OUT
        return against_public.run(args, env)
    args.out = args.out or DEFAULT_OUT
    backends = args.backends or backend_names()
    lengths = sorted(set(args.lengths))
    cap = gib(args.memory_cap_gb)
    out = Path(args.out)
    meta_path, markdown_path = out.with_suffix(".json"), out.with_suffix(".md")
    announce(env)

    def spec_for(backend: str, mode: str, n: int, **extra) -> CellSpec:
        return CellSpec(backend, mode, n, args.batch, args.heads, args.head_dim, args.scope, device,
                        args.warmup, args.repeats, args.threads, time_budget_s=args.time_budget_s, **extra)

    def matmul_peak() -> float | None:
        probe = run_in_subprocess(spec_for("", "", 0, kind="matmul_peak", peak_size=args.peak_size),
                                  memory_cap_bytes=cap, timeout_s=args.timeout_s)
        found = probe.get("matmul_flops_per_s")
        print(f"fp32 matmul peak ({args.peak_size}^2): "
              + (f"{found / 1e9:.1f} GFLOP/s" if found else failed_text(probe)), flush=True)
        return found

    probes = [matmul_peak()]
    peak = probes[0]

    previous = read_rows(out) if args.resume and out.exists() else []
    kept = {(r["backend"], r["mode"], r["n"]): r for r in previous
            if same_settings(r, spec_for(r["backend"], r["mode"], r["n"]))}
    plan = [(mode, backend, n) for mode in args.modes for backend in backends for n in lengths]
    rows: list[dict[str, Any]] = []
    give_up = GiveUp()
    for index, (mode, backend, n) in enumerate(plan, start=1):
        spec = spec_for(backend, mode, n)
        if (backend, mode, n) in kept:
            row = kept[(backend, mode, n)]
        else:
            result = give_up.skipped((backend, mode), n)
            if result is None:
                result = run_in_subprocess(spec, memory_cap_bytes=cap, timeout_s=args.timeout_s)
            row = make_row(spec, result, peak)
        give_up.note((backend, mode), n, row["status"])
        rows.append(row)
        write_rows(out, rows)
        progress(index, len(plan), describe(row))

    # the machine's throughput: the better of two probes, before and after the sweep (the load varies)
    probes.append(matmul_peak())
    peak = max((p for p in probes if p), default=None)
    rows = [add_throughput(row, peak) for row in rows]
    write_rows(out, rows)
    evaluated = target_checks.evaluate(rows)
    fractions = target_checks.throughput_fractions(rows)
    env["load_average_end"] = load_average()
    write_json(meta_path, {"environment": env, "settings": settings_of(args), "matmul_peak_flops_per_s": peak,
                           "matmul_probes_flops_per_s": probes,
                           "targets": evaluated, "throughput": fractions})
    report = machine_text(env) + markdown_tables(rows) + "\n" + targets_markdown(evaluated, fractions, peak)
    write_text(markdown_path, report)
    print("\n" + report)
    print(f"wrote {out}, {meta_path} and {markdown_path}")
    return 0
