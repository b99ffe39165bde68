"""``python -m attention_zoo.check NAME_OR_IMPORT_PATH``: does a token mixer conform, before you spend GPU hours?

Runs the battery of ``attention_zoo.conformance`` (the one the project's own tests run on the built-in backends)
on CPU, and on CUDA where present, in causal and bidirectional mode (``--causal`` / ``--bidirectional`` for
one), causality a second time with the backend's chunk/block/group/window size knobs at 8 where it has any,
optionally against a float64 reference (``--reference pkg.mod:fn``, ``fn(module, x, padding_mask, causal)``),
then measures how time and peak memory grow per doubling of N, each length in a fresh process, and flags
linear or quadratic against what the backend declares. Prints one table; exits 1 when a check fails.

NAME_OR_IMPORT_PATH: a registered backend (built-in or plugin) or ``pkg.module:Builder``, a builder decorated
with ``@attention_zoo.register``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from attention_zoo import conformance
from attention_zoo.registry import SPEC_ATTRIBUTE, MixerSpec, build_mixer, get_spec, register

SCALING_LENGTHS = (512, 1024, 2048, 4096)
QUADRATIC_MEMORY_SLOPE = 1.5  # log-log slope of peak memory against N at or above which memory is quadratic
QUADRATIC_TIME_SLOPE = 1.75  # the same for time (looser: timings on a busy machine are noisy)
MEMORY_FLOOR_MB = 16.0


@dataclass
class Row:
    check: str
    mode: str
    device: str
    result: str  # PASS | FAIL | SKIP
    figure: str


def import_object(path: str) -> object:
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"{path!r}: expected pkg.module:object")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise SystemExit(f"cannot import {module_name!r} (from {path!r}): {err}") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise SystemExit(f"{module_name!r} has no attribute {attribute!r} (from {path!r})") from None


def resolve(target: str) -> MixerSpec:
    """The spec of a registered name, or of an import path whose builder carries ``@register`` flags."""
    if ":" not in target:
        try:
            return get_spec(target)
        except ValueError as err:
            raise SystemExit(str(err)) from None
    builder = import_object(target)
    flags = dict(getattr(builder, SPEC_ATTRIBUTE, None) or {})
    if not flags:
        raise SystemExit(f"{target} carries no capability flags: decorate it with @attention_zoo.register(name, "
                         "linear_causal=..., linear_bidirectional=...)")
    name = flags.pop("name")
    register(name, builder, replace=True, **flags)
    return get_spec(name)


def maker(name: str, knobs: dict, d_model: int, n_heads: int) -> Callable[..., torch.nn.Module]:
    def make(causal: bool, *, dtype=torch.float64, device="cpu", seed: int = 0) -> torch.nn.Module:
        torch.manual_seed(seed)
        module = build_mixer(name, d_model, n_heads, causal, **knobs)
        return module.to(device=device, dtype=dtype).eval()

    return make


# ---------------------------------------------------------------------------------------------- scaling
def measure_one(spec: dict) -> dict:
    """One length in this (fresh) process: median forward+backward time and peak resident memory growth."""
    if spec.get("import"):
        resolve(spec["import"])
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    module = build_mixer(spec["name"], spec["d_model"], spec["n_heads"], spec["causal"], **spec["knobs"])
    x = torch.randn(1, spec["length"], spec["d_model"], requires_grad=True)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(4):
        started = time.perf_counter()
        module(x, None).sum().backward()
        times.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": statistics.median(times[1:]), "peak_mb": (peak - baseline) / 1024}


def slope(lengths, values, floor: float) -> float:
    return float(np.polyfit(np.log(lengths), np.log(np.maximum(values, floor)), 1)[0])


def check_scaling(target: str, spec: MixerSpec, causal: bool, knobs: dict, lengths=SCALING_LENGTHS,
                  threads: int = 1) -> str:
    """Time and memory per doubling of N (each N in a fresh process), flagged against the declared flag."""
    declared_linear = spec.linear_causal if causal else spec.linear_bidirectional
    results = []
    for n in lengths:
        job = {"name": spec.name, "import": target if ":" in target else None, "causal": causal, "knobs": knobs,
               "length": n, "d_model": 64, "n_heads": 4, "threads": threads}
        done = subprocess.run([sys.executable, "-m", "attention_zoo.check", target, "--measure-one",
                               json.dumps(job)],
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise conformance.ConformanceError(f"N={n}: the measurement failed: {done.stderr.strip()[-300:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    seconds = [r["seconds"] for r in results]
    memory = [r["peak_mb"] for r in results]
    # the three largest lengths: fixed costs (start-up, weights, allocator slack) fade there; memory under
    # MEMORY_FLOOR_MB counts as that floor, so allocator noise on a small footprint reads as flat
    time_slope = slope(lengths[-3:], seconds[-3:], 1e-6)
    memory_slope = slope(lengths[-3:], memory[-3:], MEMORY_FLOOR_MB)
    quadratic = memory_slope >= QUADRATIC_MEMORY_SLOPE or time_slope >= QUADRATIC_TIME_SLOPE
    measured = "quadratic" if quadratic else "linear"
    figure = (f"N {lengths[0]}..{lengths[-1]}: time x{2 ** time_slope:.2f} and peak memory x{2 ** memory_slope:.2f}"
              f" per doubling ({memory[-1]:.0f} MB at N={lengths[-1]}): {measured}, declared "
              f"{'linear' if declared_linear else 'quadratic'}")
    if declared_linear and quadratic:
        raise conformance.ConformanceError(f"declared linear but grows quadratically: {figure}")
    return figure


# ------------------------------------------------------------------------------------------------- CLI
def parse_knob(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m attention_zoo.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="a registered backend name or pkg.module:Builder")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--causal", action="store_true", help="check causal mode only")
    mode.add_argument("--bidirectional", action="store_true", help="check bidirectional mode only")
    parser.add_argument("--reference", help="pkg.mod:fn, fn(module, x, padding_mask, causal) -> float64 output")
    parser.add_argument("--knob", type=parse_knob, action="append", default=[], metavar="KEY=VALUE",
                        help="a knob of the backend (JSON values), e.g. --knob window=16")
    parser.add_argument("--d-model", type=int, default=32)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--no-scaling", action="store_true", help="skip the time/memory scaling measurement")
    parser.add_argument("--lengths", default=",".join(map(str, SCALING_LENGTHS)),
                        help="the lengths of the scaling measurement (each doubling the last)")
    parser.add_argument("--measure-one", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_checks(args: argparse.Namespace) -> list[Row]:
    spec = resolve(args.target)
    knobs = dict(args.knob)
    reference = import_object(args.reference) if args.reference else None
    make = maker(spec.name, knobs, args.d_model, args.heads)
    small = small_variant(spec, knobs, args.d_model, args.heads)
    modes = [True] if args.causal else [False] if args.bidirectional else [True, False]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for causal in modes:
        mode = "causal" if causal else "bidirectional"
        for device in devices:
            for check, thunk in conformance.battery(make, causal, reference, device=device,
                                                    prefix_consistent=spec.prefix_consistent, small=small):
                rows.append(_row(check, mode, device, thunk))
        if not args.no_scaling:
            lengths = tuple(int(n) for n in args.lengths.split(","))
            rows.append(_row("scaling (fresh processes)", mode, "cpu",
                             lambda c=causal, n=lengths: check_scaling(args.target, spec, c, knobs, n)))
    return rows


def small_variant(spec: MixerSpec, knobs: dict, d_model: int, n_heads: int) -> tuple[str, Callable] | None:
    """("chunk_size=8, ...", its make) when the backend has chunk/block/group/window size knobs above 8: causality
    is checked again with them small, so that N=320 crosses their boundaries many times."""
    small = conformance.small_size_knobs(spec.knobs | knobs)
    if not small:
        return None
    label = ", ".join(f"{name}={value}" for name, value in small.items())
    return label, maker(spec.name, knobs | small, d_model, n_heads)


def _row(check: str, mode: str, device: str, thunk: Callable[[], str]) -> Row:
    try:
        return Row(check, mode, device, "PASS", thunk())
    except conformance.ConformanceError as err:
        return Row(check, mode, device, "FAIL", " ".join(str(err).split()))
    except Exception as err:  # a crash inside the mixer is a failure of that check, not of the checker
        return Row(check, mode, device, "FAIL", " ".join(f"{type(err).__name__}: {err}".split()))


def table(rows: list[Row]) -> str:
    header = ("check", "mode", "device", "result", "figure")
    cells = [header] + [(r.check, r.mode, r.device, r.result, r.figure) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(4)) + "  " + c[4] for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 6)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.measure_one:
        print(json.dumps(measure_one(json.loads(args.measure_one))))
        return 0
    spec = resolve(args.target)
    print(f"{spec.name}: {spec.description} (declared: causal {'linear' if spec.linear_causal else 'quadratic'}, "
          f"bidirectional {'linear' if spec.linear_bidirectional else 'quadratic'})")
    rows = run_checks(args)
    print(table(rows))
    failed = [r for r in rows if r.result == "FAIL"]
    print(f"{len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
