"""One benchmark cell, measured in the process that runs this module.

``python -m harness.bench.cell SPEC_JSON RESULT_PATH`` builds the workload, takes the memory baseline,
runs ``warmup`` untimed and ``repeats`` timed forward+backward passes and writes the result as JSON to
RESULT_PATH. A failure (out of memory included) is written as a status, not raised: the sweep goes on.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from harness.bench.flops import forward_backward_flops, matmul_peak_flops
from harness.bench.memory import PeakMemory
from harness.bench.workloads import NotApplicable, build_workload
from zoo_io.atomic import write_json

MIN_REPEATS = 3
OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")


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


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    return isinstance(error, RuntimeError) and any(text in str(error).lower() for text in OOM_MESSAGES)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
        _synchronize(device)
        started = time.perf_counter()
        forward_backward()
        _synchronize(device)
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
    """``measure`` with every failure turned into a status (``not_applicable``, ``oom``, ``error``)."""
    try:
        return measure(spec)
    except NotApplicable as reason:
        return {"status": "not_applicable", "error": str(reason)}
    except BaseException as error:  # noqa: BLE001 - every failure becomes a recorded cell
        return failure(error)


def failure(error: BaseException) -> dict[str, Any]:
    """A failed cell's result: ``oom`` or ``error``, with the exception's type and first line."""
    first_line = (str(error).strip().splitlines() or [""])[0]
    return {"status": "oom" if is_out_of_memory(error) else "error",
            "error": f"{type(error).__name__}: {first_line[:300]}"}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m harness.bench.cell SPEC_JSON RESULT_PATH", file=sys.stderr)
        return 2
    spec = CellSpec(**json.loads(argv[0]))
    write_json(argv[1], run(spec) | {"spec": asdict(spec)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
