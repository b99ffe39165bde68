"""trainer.compile: wall time of whole training runs with and without torch.compile, compile time included.

``python -m harness.bench compile [--backends vanilla transnormer_t2] [--steps 200] [--repeats 2]
[--scale cpu] [--out results/bench/compile.csv]``

Every run is ``python -m harness.run`` (the causal LM at ``--scale``, ``trainer.max_steps=--steps``, no
logger) in its own process, run folder and compile cache (``TORCHINDUCTOR_CACHE_DIR``), so its wall time
holds start-up, data, compiling, evaluation and checkpoints: what a user waits for. A backend's eager and
compiled runs follow each other, their order flipping every repeat, and the ratio is taken per repeat.
Beside the wall time: the steady speed (median steps/s of the logged windows after the first, which holds
the compiling), hence the fixed cost of compiling and the run length from which it pays, and the test
perplexity (the same model, trained the same way, should reach the same one). Outputs: the CSV (rewritten
after every run), ``<stem>.md`` and ``<stem>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.bench.skeleton import ROOT, environment, load_average, progress, require_positive, write_frame
from zoo_io.atomic import write_json, write_text

COLUMNS = ("repeat", "backend", "compile", "status", "wall_s", "train_s", "steady_steps_per_s",
           "test_perplexity", "load_start", "error")


def run_command(backend: str, compiled: bool, steps: int, scale: str, root: Path) -> list[str]:
    return [sys.executable, "-m", "harness.run", f"attention={backend}", f"scale={scale}",
            f"trainer.max_steps={steps}", f"trainer.compile={str(compiled).lower()}", "logger=none",
            f"run.root={root}", "run.resume=false"]


def steady_speed(metrics_file: Path) -> float | None:
    """Median ``train/steps_per_sec`` of the logged windows after the first (which holds the compiling)."""
    windows = []
    for line in metrics_file.read_text().splitlines():
        entry = json.loads(line)
        if "train/steps_per_sec" in entry:
            windows.append(entry["train/steps_per_sec"])
    return statistics.median(windows[1:]) if len(windows) > 1 else None


def one_run(backend: str, compiled: bool, steps: int, scale: str, timeout_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="compile-bench-") as scratch:
        root, cache = Path(scratch) / "runs", Path(scratch) / "inductor-cache"
        env = os.environ | {"TORCHINDUCTOR_CACHE_DIR": str(cache)}
        row: dict[str, Any] = {"load_start": load_average()[0]}
        start = time.perf_counter()
        try:
            done = subprocess.run(run_command(backend, compiled, steps, scale, root), cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return row | {"status": "timeout", "error": f"over {timeout_s:g} s"}
        row["wall_s"] = time.perf_counter() - start
        records = sorted(root.rglob("record.json"))
        if done.returncode or not records:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return row | {"status": "failed", "error": f"exit {done.returncode}: {' | '.join(tail)}"}
        record = json.loads(records[0].read_text())
        metrics = records[0].parent / "metrics.jsonl"
        return row | {"status": record["status"], "train_s": record["train_seconds"],
                      "steady_steps_per_s": steady_speed(metrics) if metrics.exists() else None,
                      "test_perplexity": record["metrics"].get("test/perplexity")}


def summary(rows: list[dict[str, Any]], steps: int) -> list[dict[str, Any]]:
    """Per backend: wall times, the per-repeat ratio compiled / eager, the compile cost and break-even length."""
    out = []
    for backend in dict.fromkeys(r["backend"] for r in rows):
        pairs = {}
        for r in rows:
            if r["backend"] == backend and r["status"] == "completed":
                pairs.setdefault(r["repeat"], {})[r["compile"]] = r
        pairs = [p for p in pairs.values() if len(p) == 2]
        if not pairs:
            continue
        eager, compiled = ([p[c] for p in pairs] for c in (False, True))
        med = statistics.median
        ratios = [c["wall_s"] / e["wall_s"] for e, c in zip(eager, compiled)]
        row = {"backend": backend, "repeats": len(pairs), "eager_wall_s": med(r["wall_s"] for r in eager),
               "compiled_wall_s": med(r["wall_s"] for r in compiled), "wall_ratio": med(ratios),
               "wall_ratio_min": min(ratios), "wall_ratio_max": max(ratios)}
        speeds = [(e["steady_steps_per_s"], c["steady_steps_per_s"]) for e, c in zip(eager, compiled)]
        if all(e and c for e, c in speeds):
            step_e, step_c = med(1 / e for e, _ in speeds), med(1 / c for _, c in speeds)
            row["steady_speedup"] = step_e / step_c
            # the extra wall time that steady-state steps do not explain: compiling (and its warm-up)
            row["compile_cost_s"] = row["compiled_wall_s"] - row["eager_wall_s"] - steps * (step_c - step_e)
            saving = step_e - step_c
            row["pays_from_steps"] = row["compile_cost_s"] / saving if saving > 0 else None
        row["eager_test_ppl"] = med(r["test_perplexity"] for r in eager)
        row["compiled_test_ppl"] = med(r["test_perplexity"] for r in compiled)
        out.append(row)
    return out


def markdown(rows: list[dict[str, Any]], env: dict[str, Any], steps: int, scale: str) -> str:
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    lines = [
        "# torch.compile in a training run", "", f"Command: `{env['command']}`", "",
        f"Machine: {env['cpu']}, {env['logical_cpus']} logical CPUs, {env['torch_threads']} torch threads; "
        f"load average {env['load_average_start']} at the start, {env.get('load_average_end')} at the end.", "",
        f"One run: the causal LM at scale `{scale}`, {steps} updates, evaluation and checkpoints as configured, "
        "each in its own process with a fresh compile cache. Wall time from process start to exit; the ratio "
        "is compiled / eager per repeat (below 1: compiling pays). Steady speed-up: eager over compiled time "
        "per step after the first logged window; compile cost: the extra wall time the steady steps do not "
        "explain; pays from: the run length (updates) at which the steady saving repays it.", "",
        "| backend | eager wall s | compiled wall s | compiled / eager (min-max) | steady speed-up | compile cost s "
        "| pays from (updates) | test ppl eager / compiled | repeats |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary(rows, steps):
        pays = r.get("pays_from_steps")
        pays_text = "never" if pays is None and "steady_speedup" in r else fmt(pays, ".0f")
        lines.append(
            f"| {r['backend']} | {r['eager_wall_s']:.1f} | {r['compiled_wall_s']:.1f} | **{r['wall_ratio']:.2f}x** "
            f"({r['wall_ratio_min']:.2f}-{r['wall_ratio_max']:.2f}) | {fmt(r.get('steady_speedup'), '.2f')}x | "
            f"{fmt(r.get('compile_cost_s'), '.1f')} | {pays_text} | "
            f"{r['eager_test_ppl']:.3f} / {r['compiled_test_ppl']:.3f} | {r['repeats']} |")
    failed = [r for r in rows if r["status"] != "completed"]
    if failed:
        lines += ["", "Failed runs: " + "; ".join(f"{r['backend']} compile={r['compile']}: {r['status']} "
                                                  f"{r.get('error') or ''}" for r in failed)]
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, rows: list[dict[str, Any]], env: dict[str, Any], settings: dict[str, Any]) -> str:
    import pandas as pd

    write_frame(out, pd.DataFrame(rows, columns=list(COLUMNS)))
    write_json(out.with_suffix(".json"), {"environment": env, "settings": settings,
                                          "summary": summary(rows, settings["steps"])})
    text = markdown(rows, env, settings["steps"], settings["scale"])
    write_text(out.with_suffix(".md"), text)
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backends", nargs="+", default=["vanilla", "transnormer_t2"])
    parser.add_argument("--steps", type=int, default=200, help="updates per run (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="eager/compiled pairs per backend (default: %(default)s)")
    parser.add_argument("--scale", default="cpu", help="default: %(default)s")
    parser.add_argument("--timeout-s", type=float, default=1800.0, help="per run (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "compile.csv")


def run(args: argparse.Namespace) -> int:
    try:
        require_positive(args, "steps", "repeats")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    env = environment("cpu")  # the runs use torch's default thread count
    settings = {"backends": args.backends, "steps": args.steps, "repeats": args.repeats, "scale": args.scale}
    rows: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        for backend in args.backends:
            for compiled in ((False, True) if repeat % 2 == 0 else (True, False)):
                row = {"repeat": repeat, "backend": backend, "compile": compiled}
                row |= one_run(backend, compiled, args.steps, args.scale, args.timeout_s)
                rows.append(row)
                write_outputs(args.out, rows, env, settings)
                progress(len(rows), 2 * args.repeats * len(args.backends), f"{backend} compile={compiled}: "
                         f"{row['status']} {fmt_seconds(row.get('wall_s'))} {row.get('error') or ''}")
    env["load_average_end"] = load_average()
    print("\n" + write_outputs(args.out, rows, env, settings) + f"\nwrote {args.out} and its .md and .json")
    return 0


def fmt_seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f} s"
