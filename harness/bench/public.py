"""Our mixers against the public implementations of the same methods, timed side by side in one process.

``python -m harness.bench kernels --against public [--lengths 2048 8192] [--backends ...] [--public-path DIR]``

Each implementation below is imported when the user has installed it (``pip install performer-pytorch`` ...)
and listed as "not installed", with the command that installs it, otherwise; none of their code is part of
this project. Where the public module has the same parameters as ours (torch's MultiheadAttention,
performer-pytorch, the official cosFormer, fast-transformers), ours are copied into it, so both compute from
the same weights, and the table says how far apart the outputs are. FLASH-pytorch's units differ from the
paper's by design (a pre-norm, a T5 relative bias, a residual), so they are sized like ours and timed, not
compared. The official cosFormer is a single file, not a package: put its folder on ``--public-path``.

The authors' TransNormer modules are not packaged either; their causal NormLinearAttention multiplies a
masked N x N matrix, which the kernel benchmark's ``naive_masked_product`` stands for (its 1+elu features
without the norm and positions).

One cell = one (implementation, mode, N), measured here in its own process (``python -m harness.bench.public
SPEC_JSON RESULT_PATH``, started by the sweep, ``harness.bench.against_public``): ``--warmup`` untimed passes of
each, then ``--repeats`` rounds of one forward+backward of each, the order alternating between rounds, so both
see the same load. The ratio (ours / theirs, below 1 is faster) is taken per round; the table gives its median
and its min-max over the rounds, the torch thread count and the load average around the cell.
"""
from __future__ import annotations

import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness.bench.child import serve, synchronize
from harness.bench.workloads import build_workload


# ------------------------------------------------------------------------ the public implementations
@dataclass(frozen=True)
class Public:
    """One public implementation: the package that provides it, our backend, and how to build it from ours."""

    name: str
    backend: str
    modes: tuple[str, ...]
    import_name: str  # the module whose presence decides whether the implementation is installed
    install: str
    build: Callable[[nn.Module, bool], nn.Module]  # (our module, causal) -> theirs, [B, N, D] -> [B, N, D]
    same_weights: bool  # whether ``build`` copies our parameters (then outputs are compared)

    def installed(self) -> bool:
        try:
            return importlib.util.find_spec(self.import_name) is not None
        except ModuleNotFoundError:
            return False


def _copy(target: nn.Linear, source: nn.Linear) -> None:
    with torch.no_grad():
        target.weight.copy_(source.weight)
        if target.bias is not None:
            target.bias.copy_(source.bias)


class TorchMultiheadAttention(nn.Module):
    """``torch.nn.MultiheadAttention`` (batch first, fused SDPA inside) with our q/k/v/out weights."""

    def __init__(self, ours: nn.Module, causal: bool):
        super().__init__()
        self.causal = causal
        self.inner = nn.MultiheadAttention(ours.d_model, ours.n_heads, batch_first=True)
        with torch.no_grad():
            self.inner.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
            self.inner.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        _copy(self.inner.out_proj, ours.out_proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1], device=x.device) if self.causal else None
        return self.inner(x, x, x, attn_mask=mask, is_causal=self.causal, need_weights=False)[0]


class PerformerPytorch(nn.Module):
    """lucidrains' performer-pytorch ``SelfAttention`` with our projections and random features."""

    def __init__(self, ours: nn.Module, causal: bool):
        super().__init__()
        from performer_pytorch import SelfAttention

        self.inner = SelfAttention(dim=ours.d_model, heads=ours.n_heads, dim_head=ours.head_dim, causal=causal,
                                   nb_features=ours.n_features, qkv_bias=True)
        for theirs, mine in (("to_q", "q_proj"), ("to_k", "k_proj"), ("to_v", "v_proj"), ("to_out", "out_proj")):
            _copy(getattr(self.inner, theirs), getattr(ours, mine))
        self.inner.fast_attention.projection_matrix.copy_(ours.projection)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


class OfficialCosformer(nn.Module):
    """The official cosFormer ``CosformerAttention`` (sequence-first) with our projections."""

    def __init__(self, ours: nn.Module, causal: bool):
        super().__init__()
        from cosformer import CosformerAttention

        self.inner = CosformerAttention(ours.d_model, ours.n_heads, causal=causal)
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            _copy(getattr(self.inner, name), getattr(ours, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.transpose(0, 1)).transpose(0, 1)


class FastTransformersLinear(nn.Module):
    """fast-transformers' ``AttentionLayer`` around its (causal) ``LinearAttention`` (1+elu), our projections."""

    def __init__(self, ours: nn.Module, causal: bool):
        super().__init__()
        from fast_transformers.attention import AttentionLayer, CausalLinearAttention, LinearAttention

        attention = (CausalLinearAttention if causal else LinearAttention)(ours.head_dim, eps=ours.eps)
        self.inner = AttentionLayer(attention, ours.d_model, ours.n_heads)
        self.causal = causal
        for theirs, mine in (("query_projection", "q_proj"), ("key_projection", "k_proj"),
                             ("value_projection", "v_proj"), ("out_projection", "out_proj")):
            _copy(getattr(self.inner, theirs), getattr(ours, mine))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from fast_transformers.masking import FullMask, LengthMask, TriangularCausalMask

        B, N, _ = x.shape
        mask = TriangularCausalMask(N, device=x.device) if self.causal else FullMask(N, device=x.device)
        lengths = LengthMask(torch.full((B,), N, dtype=torch.long, device=x.device), max_len=N)
        return self.inner(x, x, x, mask, lengths, lengths)


def _flash_pytorch(ours: nn.Module, causal: bool) -> nn.Module:
    from flash_pytorch import FLASH

    return FLASH(dim=ours.to_uv.in_features, group_size=ours.group_size, query_key_dim=ours.to_z.out_features,
                 expansion_factor=ours.out_proj.in_features / ours.to_uv.in_features, causal=causal)


def _gau_pytorch(ours: nn.Module, causal: bool) -> nn.Module:
    from flash_pytorch import GAU

    return GAU(dim=ours.to_uv.in_features, query_key_dim=ours.to_z.out_features,
               expansion_factor=ours.out_proj.in_features / ours.to_uv.in_features, causal=causal, add_residual=False)


BOTH = ("causal", "bidirectional")
PUBLIC: tuple[Public, ...] = (
    Public("torch.nn.MultiheadAttention", "vanilla", BOTH, "torch", "pip install torch",
           TorchMultiheadAttention, True),
    Public("performer-pytorch", "performer", BOTH, "performer_pytorch", "pip install performer-pytorch",
           PerformerPytorch, True),
    Public("fast-transformers", "elu", BOTH, "fast_transformers", "pip install pytorch-fast-transformers",
           FastTransformersLinear, True),
    Public("cosFormer (official)", "cosformer", BOTH, "cosformer",
           "git clone https://github.com/OpenNLPLab/cosFormer, then --public-path <that folder>",
           OfficialCosformer, True),
    Public("FLASH-pytorch FLASH", "flash", BOTH, "flash_pytorch", "pip install FLASH-pytorch", _flash_pytorch, False),
    Public("FLASH-pytorch GAU", "flash_quad", BOTH, "flash_pytorch", "pip install FLASH-pytorch", _gau_pytorch, False),
)


def find_public(name: str) -> Public:
    for public in PUBLIC:
        if public.name == name:
            return public
    raise ValueError(f"unknown public implementation {name!r}; valid choices: {[p.name for p in PUBLIC]}")


# ---------------------------------------------------------------------------------------- one cell
@dataclass(frozen=True)
class PairSpec:
    """One side-by-side measurement (JSON-serialisable)."""

    public: str
    mode: str
    n: int
    batch: int = 1
    heads: int = 8
    head_dim: int = 64
    device: str = "cpu"
    warmup: int = 1
    repeats: int = 5
    threads: int | None = None
    public_path: tuple[str, ...] = ()
    seed: int = 0


def max_relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours.double() - theirs.double()).abs().max() / theirs.double().abs().max().clamp_min(1e-30))


def measure_pair(spec: PairSpec) -> dict[str, Any]:
    """Both modules on the same input and output gradient, rounds interleaved (raises on failure)."""
    sys.path[:0] = list(spec.public_path)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    public, device, d_model = find_public(spec.public), torch.device(spec.device), spec.heads * spec.head_dim
    torch.manual_seed(spec.seed)
    ours = build_workload(public.backend, spec.mode, d_model, spec.heads).to(device).train()
    theirs = public.build(ours, spec.mode == "causal").to(device).train()
    if hasattr(ours, "redraw_interval"):
        ours.redraw_interval = 0  # the same random features in every round (theirs redraw only when told)
    x = torch.randn(spec.batch, spec.n, d_model, device=device, requires_grad=True)
    grad_out = torch.randn(spec.batch, spec.n, d_model, device=device)
    difference = None
    if public.same_weights:
        with torch.no_grad():
            difference = max_relative_difference(ours(x), theirs(x))

    def timed(module: nn.Module) -> float:
        synchronize(device)
        started = time.perf_counter()
        module(x).backward(grad_out)
        synchronize(device)
        elapsed = time.perf_counter() - started
        x.grad = None
        module.zero_grad(set_to_none=True)
        return elapsed

    for _ in range(spec.warmup):
        timed(ours), timed(theirs)
    load_start = os.getloadavg()[0]
    ours_times, their_times = [], []
    for round_ in range(spec.repeats):
        if round_ % 2:
            their_times.append(timed(theirs))
            ours_times.append(timed(ours))
        else:
            ours_times.append(timed(ours))
            their_times.append(timed(theirs))
    ratios = [a / b for a, b in zip(ours_times, their_times)]
    return {
        "status": "ok",
        "ours_median_s": statistics.median(ours_times),
        "theirs_median_s": statistics.median(their_times),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "repeats": spec.repeats,
        "max_relative_difference": difference,
        "threads": torch.get_num_threads(),
        "load_1min_start": load_start,
        "load_1min_end": os.getloadavg()[0],
    }


def parse(fields: dict[str, Any]) -> PairSpec:
    return PairSpec(**(fields | {"public_path": tuple(fields.get("public_path", ()))}))  # JSON gives a list


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:], parse, measure_pair))
