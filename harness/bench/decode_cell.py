"""One decode cell, measured in the process that runs this module (``python -m harness.bench.decode_cell
SPEC_JSON RESULT_PATH``, started by ``harness.bench.decode``).

``DecodeCell``: build the causal backbone, prefill the context in one call (timed), then decode ``tokens``
tokens one at a time from the recurrent state (attention_zoo.decoding): the median time per token and the
bytes of every tensor the state holds. ``GrowthCell``: the time per token at a short and a long context in
one process, steps interleaved. A failure, out of memory included, is written as a status
(``harness.bench.child``).
"""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from attention_zoo import build_backbone as build_zoo_backbone
from harness.bench.child import serve

SHAPES = {"lm": {"d_model": 128, "n_layers": 4, "n_heads": 4},  # conf/preset/lm/cpu.yaml
          "paper": {"d_model": 512, "n_layers": 2, "n_heads": 8}}


@dataclass(frozen=True)
class DecodeCell:
    backend: str
    shape: str
    context: int
    tokens: int
    threads: int
    device: str = "cpu"


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


def build_backbone(cell: DecodeCell) -> nn.Module:
    knobs = {"max_len": cell.context + cell.tokens} if cell.backend == "cosformer" else {}
    sizes = SHAPES[cell.shape] | {"causal": True, "dropout": 0.0, "max_len": cell.context + cell.tokens}
    return build_zoo_backbone({"name": cell.backend, **knobs}, sizes).eval().to(cell.device)


def _clock(device: torch.device) -> float:
    """Now, after the device has finished what was queued (a CUDA step returns before its kernels end)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


@torch.no_grad()
def measure(cell: DecodeCell) -> dict[str, Any]:
    torch.set_num_threads(cell.threads)
    torch.manual_seed(0)
    backbone, device = build_backbone(cell), torch.device(cell.device)
    d_model = SHAPES[cell.shape]["d_model"]
    context = torch.randn(1, cell.context, d_model, device=device)
    state = backbone.init_state(1)
    started = _clock(device)
    backbone.step(context, state)
    prefill = _clock(device) - started
    times = []
    for _ in range(cell.tokens):
        token = torch.randn(1, 1, d_model, device=device)
        started = _clock(device)
        backbone.step(token, state)
        times.append(_clock(device) - started)
    return {"status": "ok", "seconds_per_token": statistics.median(times), "seconds_per_token_min": min(times),
            "seconds_per_token_max": max(times), "prefill_seconds": prefill, "state_mib": state.nbytes() / 2**20}


@torch.no_grad()
def measure_growth(cell: GrowthCell) -> dict[str, Any]:
    torch.set_num_threads(cell.threads)
    torch.manual_seed(0)
    device = torch.device(cell.device)
    backbone = build_backbone(DecodeCell(cell.backend, cell.shape, cell.long, cell.tokens, cell.threads, cell.device))
    d_model = SHAPES[cell.shape]["d_model"]
    states = {n: backbone.init_state(1) for n in (cell.short, cell.long)}
    for n, state in states.items():
        backbone.step(torch.randn(1, n, d_model, device=device), state)
    times: dict[int, list[float]] = {n: [] for n in states}
    for _ in range(cell.tokens):
        for n, state in states.items():  # alternate: a burst of load hits both
            token = torch.randn(1, 1, d_model, device=device)
            started = _clock(device)
            backbone.step(token, state)
            times[n].append(_clock(device) - started)
    pairs = sorted(b / a for a, b in zip(times[cell.short], times[cell.long]))
    return {"status": "ok", "growth": statistics.median(times[cell.long]) / statistics.median(times[cell.short]),
            "pair_ratio_q25": pairs[len(pairs) // 4], "pair_ratio_q75": pairs[3 * len(pairs) // 4],
            "short_ms": statistics.median(times[cell.short]) * 1e3,
            "long_ms": statistics.median(times[cell.long]) * 1e3,
            "state_mib_short": states[cell.short].nbytes() / 2**20,
            "state_mib_long": states[cell.long].nbytes() / 2**20}


def parse(fields: dict[str, Any]) -> DecodeCell | GrowthCell:
    return GrowthCell(**fields) if "short" in fields else DecodeCell(**fields)


def run(cell: DecodeCell | GrowthCell) -> dict[str, Any]:
    return measure_growth(cell) if isinstance(cell, GrowthCell) else measure(cell)


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:], parse, run))
