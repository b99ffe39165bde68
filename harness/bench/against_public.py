"""``python -m harness.bench kernels --against public``: the sweep of ``harness.bench.public``'s cells (our
mixer beside the public implementation of its method, in one process) and its report.

Writes the CSV (``COLUMNS``, rewritten after every cell), ``<stem>.json`` (machine and rows) and ``<stem>.md``.
An implementation that is not installed is listed with the command that installs it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.bench import public
from harness.bench.skeleton import (
    failed_text,
    length_label,
    load_average,
    machine_text,
    progress,
    run_in_subprocess,
    write_rows,
)
from zoo_io.atomic import write_json, write_text

SAME_OUTPUT_TOLERANCE = 1e-4  # relative max difference in fp32 below which two modules compute the same function
COLUMNS = (
    "public", "backend", "mode", "n", "status", "ours_median_s", "theirs_median_s", "ratio_median", "ratio_min",
    "ratio_max", "repeats", "max_relative_difference", "same_output", "threads", "load_1min_start",
    "load_1min_end", "error",
)


def same_output(row: dict[str, Any]) -> str:
    difference = row.get("max_relative_difference")
    if difference is None:
        return "not compared" if row.get("status") == "ok" else ""
    return "yes" if difference <= SAME_OUTPUT_TOLERANCE else f"no ({difference:.1e})"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| method (ours) | public implementation | mode | N | ours s | theirs s | ours / theirs (min-max) "
             "| same output | threads | load |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        head = f"| {row['backend']} | {row['public']} | {row['mode']} | {length_label(int(row['n']))} |"
        if row["status"] != "ok":
            lines.append(f"{head} | | {failed_text(row)} | | | |")
            continue
        lines.append(
            f"{head} {row['ours_median_s']:.3g} | {row['theirs_median_s']:.3g} | **{row['ratio_median']:.2f}x** "
            f"({row['ratio_min']:.2f}-{row['ratio_max']:.2f}) | {same_output(row)} | {row['threads']} | "
            f"{row['load_1min_start']:.1f}-{row['load_1min_end']:.1f} |")
    return "\n".join(lines) + "\n"


def selected(backends: list[str] | None) -> list[public.Public]:
    if backends is None:
        return list(public.PUBLIC)
    known = sorted({p.backend for p in public.PUBLIC})
    unknown = [b for b in backends if b not in known]
    if unknown:
        raise ValueError(f"no public implementation to compare for {unknown}; backends with one: {known}")
    return [p for p in public.PUBLIC if p.backend in backends]


def installed_with(implementation: public.Public, paths: list[str]) -> bool:
    sys.path[:0] = paths
    try:
        return implementation.installed()
    finally:
        del sys.path[: len(paths)]


def run(args: argparse.Namespace, env: dict[str, Any]) -> int:
    """The ``--against public`` sweep; ``env`` is the kernel benchmark's description of the machine."""
    try:
        publics = selected(args.backends)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    paths = [str(Path(p).resolve()) for p in args.public_path]
    out = Path(args.out)
    rows: list[dict[str, Any]] = []
    plan = [(p, mode, n) for p in publics for mode in args.modes if mode in p.modes for n in sorted(set(args.lengths))]
    for index, (implementation, mode, n) in enumerate(plan, start=1):
        row = {"public": implementation.name, "backend": implementation.backend, "mode": mode, "n": n}
        if not installed_with(implementation, paths):
            row |= {"status": "not installed", "error": implementation.install}
        else:
            spec = public.PairSpec(implementation.name, mode, n, args.batch, args.heads, args.head_dim,
                                   env["device"], args.warmup, args.repeats, args.threads, tuple(paths))
            row |= run_in_subprocess(spec, memory_cap_bytes=None, timeout_s=args.timeout_s,
                                     module="harness.bench.public")
        row["same_output"] = same_output(row)
        rows.append(row)
        write_rows(out, rows, COLUMNS)
        ratio = f"{row['ratio_median']:.2f}x" if row["status"] == "ok" else failed_text(row)
        progress(index, len(plan), f"{implementation.backend:<11} vs {implementation.name:<28} {mode:<13} {n:>6}  "
                 + ratio)
    env["load_average_end"] = load_average()
    write_json(out.with_suffix(".json"), {"environment": env, "rows": rows})
    report = (machine_text(env) + f"Forward+backward of one mixer, B={args.batch}, {args.heads} heads of "
              f"{args.head_dim}, fp32; median seconds of {args.repeats} interleaved rounds; the ratio is taken per "
              "round (below 1: ours is faster).\n\n" + markdown_table(rows))
    write_text(out.with_suffix(".md"), report)
    print("\n" + report + f"\nwrote {out} and its .json and .md")
    return 0
