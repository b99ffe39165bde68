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
- ``vanilla``: 2 x 2 N^2 d per head; ``flash_quad``: 2 N^2 s + 2 N^2 (eD) plus its dense layers;
- LRPE, where a mixer has it: q and k times a fixed d x 2d matrix (the reflection and its halves swapped),
  2 x 2 N d (2d) per head, a constant operand.
"""
from __future__ import annotations

import time

import torch
from torch import nn


def forward_backward_flops(backend: str, module: nn.Module, n: int, batch: int, scope: str = "mixer") -> float | None:
    """Bidirectional forward+backward FLOPs of ``module`` (built for ``backend``) on ``batch`` x ``n``
    tokens, from its ``forward_products(n, scope)`` (a fact of the backend: attention_zoo's mixers, or a
    plugin's); None where it has none (the naive baselines)."""
    own = getattr(module, "forward_products", None)
    both, constant = own(n, scope) if callable(own) else (None, 0.0)
    if both is None:
        return None
    return float(batch * (3 * both + 2 * constant))


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
