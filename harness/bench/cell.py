"""One benchmark cell, measured in the process that runs this module.

``python -m harness.bench.cell SPEC_JSON RESULT_PATH`` (the kernel benchmark's cell, through
``harness.bench.child.serve``) builds the workload, takes the memory baseline, runs ``warmup`` untimed and
``repeats`` timed forward+backward passes and writes the result as JSON to RESULT_PATH. A failure (out of
memory included) is written as a status, not raised: the sweep goes on.
"""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch

from harness.bench.child import serve, synchronize
from harness.bench.flops import forward_backward_flops, matmul_peak_flops
from harness.bench.memory import PeakMemory
from harness.bench.workloads import NotApplicable, build_workload

MIN_REPEATS = 3


@dataclass(frozen=True)
class CellSpec:
    """Everything one measurement needs (JSON-serialisable). ``kind="matmul_peak"`` ignores the rest."""

    backend: str
    mode: str
    n: int
    batch: int = 1
    heads: int = 8
    head_dim: int = 64
    scope: str = "mixer"
    device: str = "cpu"
    warmup: int = 1
    repeats: int = 5
    threads: int | None = None
    seed: int = 0
    kind: str = "mixer"
    peak_size: int = 4096
    time_budget_s: float | None = None  # fewer repeats (but at least MIN_REPEATS) for slow cells

    @property
    def d_model(self) -> int:
        return self.heads * self.head_dim


def measure(spec: CellSpec) -> dict[str, Any]:
    """Time and peak memory of one cell in this process (raises on failure)."""
    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = torch.device(spec.device)
    if spec.kind == "matmul_peak":
        return {"status": "ok", "matmul_flops_per_s": matmul_peak_flops(device, spec.peak_size)}
    torch.manual_seed(spec.seed)
    module = build_workload(spec.backend, spec.mode, spec.d_model, spec.heads, spec.scope).to(device).train()
    x = torch.randn(spec.batch, spec.n, spec.d_model, device=device, requires_grad=True)
    grad_out = torch.randn(spec.batch, spec.n, spec.d_model, device=device)

    def forward_backward() -> None:
        module(x).backward(grad_out)
        x.grad = None
        module.zero_grad(set_to_none=True)

    def timed() -> float:
        synchronize(device)
        started = time.perf_counter()
        forward_backward()
        synchronize(device)
        return time.perf_counter() - started

    memory = PeakMemory(device)
    memory.reset()
    warmup_times = [timed() for _ in range(spec.warmup)]
    repeats = spec.repeats
    if spec.time_budget_s is not None and warmup_times:
        affordable = int(spec.time_budget_s // max(warmup_times[-1], 1e-9))
        repeats = min(repeats, max(MIN_REPEATS, affordable))
    times = [timed() for _ in range(repeats)]
    flops = forward_backward_flops(spec.backend, module, spec.n, spec.batch, spec.scope)
    return {
        "status": "ok",
        "time_median_s": statistics.median(times),
        "time_min_s": min(times),
        "time_max_s": max(times),
        "repeats": len(times),
        "peak_memory_mib": memory.peak_mib(),
        "memory_method": memory.method,
        "parameters": sum(p.numel() for p in module.parameters()),
        "flops_fwd_bwd": flops if spec.mode == "bidirectional" else None,
    }


def run(spec: CellSpec) -> dict[str, Any]:
    """``measure``, with a cell that does not exist for its backend as ``not_applicable`` (other failures:
    ``harness.bench.child.serve``)."""
    try:
        return measure(spec)
    except NotApplicable as reason:
        return {"status": "not_applicable", "error": str(reason)}


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:], lambda fields: CellSpec(**fields), run))
