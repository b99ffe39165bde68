"""One Table 7 cell, measured in the process that runs this module: the LM's training or inference steps.

``python -m harness.bench.table7_cell CELL_JSON RESULT_PATH`` (started by ``harness.bench.table7`` through
``harness.bench.skeleton.run_in_subprocess``): ``warmup`` untimed steps, then ``repeats`` steps timed one by
one (CUDA synchronised around each), and the peak memory above the baseline taken once the model, optimiser
and inputs exist. A failure, out of memory included, is written as a status (``harness.bench.child``).
"""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from attention_zoo import build_backbone
from harness.bench.child import serve, synchronize
from harness.bench.memory import PeakMemory


@dataclass(frozen=True)
class ModelCell:
    """One (backend, length, mode) measurement (JSON-serialisable, for ``run_in_subprocess``)."""

    label: str
    attention: dict
    model: dict
    vocab_size: int
    length: int
    batch_size: int
    mode: str
    precision: str
    device: str
    warmup: int
    repeats: int
    threads: int | None
    memory_cap_bytes: int | None = None  # CUDA only; on a CPU run_in_subprocess caps the address space
    causal: bool = True
    seed: int = 0


def build_model(cell: ModelCell) -> torch.nn.Module:
    from tasks.lm import LanguageModel  # here, not at the top: the parent imports ModelCell, not the task

    sizes = dict(cell.model) | {"causal": cell.causal, "max_len": max(cell.length, cell.model.get("max_len", 1))}
    return LanguageModel(build_backbone(dict(cell.attention), sizes), cell.vocab_size, pad_index=0)


def measure(cell: ModelCell) -> dict[str, Any]:
    """Time one cell in this process (raises on failure, out of memory included)."""
    if cell.threads:
        torch.set_num_threads(cell.threads)
    torch.manual_seed(cell.seed)
    device = torch.device(cell.device)
    if device.type == "cuda" and cell.memory_cap_bytes:
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cell.memory_cap_bytes / total), device)
    model = build_model(cell).to(device)
    tokens = torch.randint(1, cell.vocab_size, (cell.batch_size, cell.length), device=device)
    targets = torch.randint(1, cell.vocab_size, (cell.batch_size, cell.length), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cell.precision == "bf16")
    if cell.mode == "train":
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

    memory = PeakMemory(device)
    memory.reset()
    for _ in range(cell.warmup):
        step()
    times = []
    for _ in range(cell.repeats):
        synchronize(device)
        started = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    return {
        "status": "ok",
        "steps_per_sec": 1 / median,
        "steps_per_sec_min": 1 / max(times),
        "steps_per_sec_max": 1 / min(times),
        "tokens_per_sec": cell.batch_size * cell.length / median,
        "time_median_s": median,
        "time_min_s": min(times),
        "time_max_s": max(times),
        "spread_pct": 100 * (max(times) - min(times)) / median,
        "repeats": len(times),
        "times_s": ";".join(f"{t:.6g}" for t in times),  # every timed step: the claims' bootstrap resamples them
        "peak_memory_mib": memory.peak_mib(),
        "memory_method": memory.method,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:], lambda fields: ModelCell(**fields), measure))
