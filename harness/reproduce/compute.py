"""The compute plan before launch (``./reproduce.sh --dry-run``, by default at paper scale): what each planned run
costs, counted rather than estimated by hand.

Per run (its model built as ``harness.run`` builds it, on the meta device: no memory, no data; the paper's
vocabularies, :mod:`harness.params`):
- FLOPs: PyTorch's ``FlopCounterMode`` over one forward+backward of a micro-batch at the run's length, times the
  micro-batches of an update (global batch / micro-batch), times its updates. Matrix products and attention
  kernels only (what the counter knows); evaluation passes are not counted.
- peak training memory: the bytes the forward saves for the backward in that pass (``saved_tensors_hooks``) plus
  the weights, their gradients and AdamW's two moments (fp32); under bf16 autocast the saved activations are
  about half this bound.
- checkpoint storage: weights and optimiser state (3 fp32 copies) per checkpoint, ``keep_checkpoints`` + the best.
GPU-hours divide the FLOPs by the GPU's dense bf16 throughput times the stated utilisation (``--gpu``, ``--mfu``).
A run whose peak does not fit ``--gpu-memory-gb`` is flagged with the micro-batch that would fit, or activation
checkpointing when even one sequence does not.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from harness.config import RunConfig
from harness.params import build_on_meta

# dense bf16 tensor-core FLOP/s (no sparsity) and memory (GB) of common data-centre GPUs, from their data sheets
GPUS: dict[str, tuple[float, float]] = {
    "V100": (125e12, 32), "A100": (312e12, 80), "A100-40GB": (312e12, 40), "H100": (989e12, 80),
    "H200": (989e12, 141),
}
MLM_PREDICTED = 0.15  # the share of positions the masked LM predicts (its head runs on those only)
ADAM_COPIES = 4  # weights, gradients and AdamW's two moments, fp32


@dataclass(frozen=True)
class Hardware:
    gpu: str = "A100"
    mfu: float = 0.4  # model FLOPs utilisation: the share of the GPU's peak a run sustains
    memory_gb: float | None = None  # None: the GPU's

    @property
    def flops_per_second(self) -> float:
        return GPUS[self.gpu][0] * self.mfu

    @property
    def memory_bytes(self) -> float:
        return (self.memory_gb if self.memory_gb is not None else GPUS[self.gpu][1]) * 1e9

    def describe(self) -> str:
        return f"{self.gpu} at {self.mfu:.0%} utilisation, {self.memory_bytes / 1e9:.0f} GB"


@dataclass(frozen=True)
class RunCost:
    """One run's figures; ``flops`` None when its model cannot be counted (``why``)."""

    flops: float | None = None
    peak_bytes: float | None = None
    activation_bytes_per_sequence: float | None = None
    checkpoint_bytes: float = 0.0
    micro_batch: int = 1
    why: str = ""

    def fitting_micro_batch(self, hardware: Hardware) -> int | None:
        """The largest micro-batch whose peak fits the GPU (0: not even one sequence; None: unknown)."""
        if self.peak_bytes is None or not self.activation_bytes_per_sequence:
            return None
        static = self.peak_bytes - self.activation_bytes_per_sequence * self.micro_batch
        return max(0, math.floor((hardware.memory_bytes - static) / self.activation_bytes_per_sequence))


def _inputs(cfg: RunConfig, micro: int) -> dict[str, Any]:
    """A micro-batch of the run's shape on the meta device (the forward's keyword arguments)."""
    task = cfg.task.name
    if hasattr(cfg.task, "params"):  # a recall task: its sequences' length follows from its settings
        length = int(cfg.task.params().input_len)
    else:
        length = int(getattr(cfg.task, "seq_len", None) or getattr(cfg.task, "max_len", None) or 512)
    if task.startswith("lra/retrieval"):
        return {"tokens": torch.zeros(micro, 2, length, dtype=torch.long, device="meta")}
    inputs: dict[str, Any] = {"tokens": torch.zeros(micro, length, dtype=torch.long, device="meta")}
    if task == "mlm":  # the head on the predicted positions only: a static slice stands for the mask
        inputs["predict_mask"] = (slice(None), slice(0, max(1, round(MLM_PREDICTED * length))))
    return inputs


def _micro_batch(cfg: RunConfig) -> int:
    return int(min(cfg.trainer.micro_batch_size or cfg.trainer.global_batch_size, cfg.trainer.global_batch_size))


# overrides that do not change what a run computes (build_on_meta sets task and attention itself)
NOT_THE_MODEL = ("task", "attention", "seed", "hydra", "run", "logger", "trainer.progress")


def run_cost(cfg: RunConfig, overrides: Sequence[str]) -> RunCost:
    """The figures of one run of ``cfg`` (composed from ``overrides``), measured once per configuration."""
    kept = tuple(o for o in overrides if o.split("=", 1)[0].lstrip("+~").split("/")[0] not in NOT_THE_MODEL
                 and not o.startswith(("hydra", "run.", "logger.")))
    return _cached_cost((cfg.task.name, cfg.attention.name, kept, _micro_batch(cfg)), cfg)


_COSTS: dict[tuple, RunCost] = {}


def _cached_cost(key: tuple, cfg: RunConfig) -> RunCost:
    if key not in _COSTS:
        _COSTS[key] = measure(cfg, key[2])
    return _COSTS[key]


def measure(cfg: RunConfig, overrides: tuple[str, ...]) -> RunCost:
    """One forward+backward on the meta device, counted; the run's totals from it."""
    micro = _micro_batch(cfg)
    try:
        model = build_on_meta(cfg.task.name, cfg.attention.name, overrides)
    except Exception as err:  # a task without a meta builder, or a config the builder refuses
        return RunCost(why=f"not counted: {type(err).__name__}: {str(err).splitlines()[0]}")
    saved = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    model.train()
    try:
        with FlopCounterMode(display=False) as counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(**_inputs(cfg, micro))
            out.float().sum().backward()
    except Exception as err:
        return RunCost(why=f"not counted: {type(err).__name__}: {str(err).splitlines()[0]}")
    parameters = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    per_update = counter.get_total_flops() * math.ceil(cfg.trainer.global_batch_size / micro)
    weights = 4.0 * parameters
    return RunCost(
        flops=float(per_update * cfg.trainer.max_steps), peak_bytes=saved + ADAM_COPIES * weights,
        activation_bytes_per_sequence=saved / micro,
        checkpoint_bytes=3 * weights * (cfg.trainer.keep_checkpoints + 1), micro_batch=micro,
    )


@dataclass
class ComputeTotals:
    """The figures of a set of runs (a sweep, a table, the plan)."""

    runs: int = 0
    counted: int = 0
    flops: float = 0.0
    peak_bytes: float = 0.0  # the largest run's
    checkpoint_bytes: float = 0.0
    warnings: list[str] = dataclasses.field(default_factory=list)
    uncounted: list[str] = dataclasses.field(default_factory=list)
    per_label: dict[str, list[float]] = dataclasses.field(default_factory=dict)  # "task backend" -> counted FLOPs

    def add(self, cost: RunCost, label: str, hardware: Hardware) -> None:
        self.runs += 1
        self.checkpoint_bytes += cost.checkpoint_bytes
        if cost.flops is not None:
            self.per_label.setdefault(label, []).append(cost.flops)
        if cost.flops is None:
            if f"{label}: {cost.why}" not in self.uncounted:
                self.uncounted.append(f"{label}: {cost.why}")
            return
        self.counted += 1
        self.flops += cost.flops
        self.peak_bytes = max(self.peak_bytes, cost.peak_bytes or 0.0)
        if (cost.peak_bytes or 0.0) > hardware.memory_bytes:
            fits = cost.fitting_micro_batch(hardware)
            advice = (f"trainer.micro_batch_size={fits}" if fits else "activation checkpointing (not even one "
                      "sequence fits)")
            warning = (f"{label}: peak {cost.peak_bytes / 1e9:.1f} GB > {hardware.memory_bytes / 1e9:.0f} GB at "
                       f"micro-batch {cost.micro_batch}; fits with {advice}")
            if warning not in self.warnings:
                self.warnings.append(warning)

    def merge(self, other: ComputeTotals) -> None:
        self.runs += other.runs
        self.counted += other.counted
        self.flops += other.flops
        self.peak_bytes = max(self.peak_bytes, other.peak_bytes)
        self.checkpoint_bytes += other.checkpoint_bytes
        self.warnings += [w for w in other.warnings if w not in self.warnings]
        self.uncounted += [u for u in other.uncounted if u not in self.uncounted]
        for label, flops in other.per_label.items():
            self.per_label.setdefault(label, []).extend(flops)

    def gpu_hours(self, hardware: Hardware) -> float:
        return self.flops / hardware.flops_per_second / 3600

    def describe(self, hardware: Hardware) -> str:
        return (f"compute: {self.flops:.3g} FLOPs ({self.counted} of {self.runs} runs counted), "
                f"{self.gpu_hours(hardware):,.0f} GPU-hours on {hardware.describe()} "
                f"({self.gpu_hours(hardware) / max(self.counted, 1):,.3g} a run), peak "
                f"{self.peak_bytes / 1e9:.1f} GB per run (the largest), checkpoints "
                f"{self.checkpoint_bytes / 1e9:,.0f} GB")
