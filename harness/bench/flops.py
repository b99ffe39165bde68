"""Analytic FLOP counts of one forward+backward, and the machine's fp32 matmul throughput.

Only matrix products are counted (2 m n k per product); element-wise work (feature maps, positions,
norms, softmax) is not. A product whose operands both need gradients costs its forward once and twice
more in the backward (one product per operand), so forward+backward = 3 x forward; a product with a
constant operand (FAVOR+'s random projection) costs 2 x. No recomputation is counted (model FLOPs).
Counts are for the bidirectional mode, per sequence of N tokens (times the batch), with
D = d_model, H heads of width d = D / H:
- projections of every multi-head mixer: q, k, v, out: 4 x 2 N D^2 (0 in the ``attention`` scope);
- ``norm_attention``: phi(K)^T V then phi(Q) S: 2 x 2 N d^2 per head;
- ``elu`` (normalised): the same with a column of ones beside V: 2 x 2 N d (d+1) per head;
- ``cosformer``: features of width 2d: 2 x 2 N (2d) (d+1) per head;
- ``performer``: features 2 x 2 N d m (constant projection), then 2 x 2 N m (d+1) per head;
- ``diag_attention`` and the presets (their layer 0 is a DiagAttention): Q K^T and A V inside blocks of
  w tokens: 2 x 2 N' w d per head, N' = N rounded up to whole blocks;
- ``flash`` (one head, expansion e, shared width s, groups of G): to_uv 2 N D (2eD), to_z 2 N D s,
  out 2 N (eD) D, quadratic part 2 N' G s + 2 N' G (eD), linear part 2 N s (eD) + 2 N' s (eD)
  (N' = N rounded up to whole groups);
- ``ls``: landmark logits 2 N D (H r), global keys and values 2 x 2 N r d per head, and each query
  against its 2w local and r global keys: 2 x 2 N' (2w + r) d per head;
- ``vanilla``: 2 x 2 N^2 d per head; ``flash_quad``: 2 N^2 s + 2 N^2 (eD) plus its dense layers.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from attention_zoo.mixers.base import MultiHeadMixer


def _round_up(n: int, block: int) -> int:
    return -(-n // block) * block


def forward_backward_flops(backend: str, module: nn.Module, n: int, batch: int, scope: str = "mixer") -> float | None:
    """Bidirectional forward+backward FLOPs of ``module`` (built for ``backend``) on ``batch`` x ``n``
    tokens, or None where no count is defined (the naive baselines)."""
    both, constant = _forward_products(backend, module, n, scope)
    if both is None:
        return None
    return float(batch * (3 * both + 2 * constant))


def _forward_products(backend: str, module: nn.Module, n: int, scope: str) -> tuple[float | None, float]:
    """(forward FLOPs of products with two trainable operands, of products with a constant operand)."""
    if not isinstance(module, MultiHeadMixer):
        return _gated_unit(backend, module, n)
    D, H, d = module.d_model, module.n_heads, module.head_dim
    projections = 0.0 if scope == "attention" else 4 * 2 * n * D * D
    name = type(module).__name__
    if name == "NormAttention":
        core = 2 * 2 * n * d * d
    elif name == "EluLinearAttention":
        core = 2 * 2 * n * d * (d + 1 if module.normalize else d)
    elif name == "CosFormerAttention":
        core = 2 * 2 * n * (2 * d) * (d + 1)
    elif name == "PerformerAttention":
        m = module.n_features
        return projections + H * 2 * 2 * n * m * (d + 1), H * 2 * 2 * n * d * m
    elif name == "DiagAttention":
        core = 2 * 2 * _round_up(n, module.block_size) * module.block_size * d
    elif name == "LongShortAttention":
        w, r = module.window_size, module.rank
        landmarks = 2 * n * D * H * r
        return projections + landmarks + H * (2 * 2 * n * r * d + 2 * 2 * _round_up(n, w) * (2 * w + r) * d), 0.0
    elif name == "SoftmaxAttention":
        core = 2 * 2 * n * n * d
    else:
        return None, 0.0
    return projections + H * core, 0.0


def _gated_unit(backend: str, module: nn.Module, n: int) -> tuple[float | None, float]:
    if type(module).__name__ != "GatedAttentionUnit":
        return None, 0.0
    D = module.to_uv.in_features
    e_d = module.out_proj.in_features  # e D
    s = module.to_z.out_features
    dense = 2 * n * D * 2 * e_d + 2 * n * D * s + 2 * n * e_d * D
    if module.group_size is None:
        return dense + 2 * n * n * s + 2 * n * n * e_d, 0.0
    G = module.group_size
    padded = _round_up(n, G)
    return dense + 2 * padded * G * s + 2 * padded * G * e_d + 2 * n * s * e_d + 2 * padded * s * e_d, 0.0


def matmul_peak_flops(device: torch.device, size: int = 4096, repeats: int = 10) -> float:
    """The best fp32 FLOP/s of ``size`` x ``size`` matrix products on ``device`` (after one warm-up)."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    out = torch.empty(size, size, device=device)
    best = float("inf")
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        torch.matmul(a, b, out=out)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best
