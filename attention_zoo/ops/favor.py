"""FAVOR+ (Performer): positive random features and a causal pass that never looks ahead.

phi(x) = m^-1/2 exp(W x' - |x'|^2 / 2) with x' = d^-1/4 x. The exponentials overflow for large inputs, so
each vector is stabilised by its own maximum logit ``s`` and carried as (features, log-scale s):
phi(x) = features * exp(s). For queries the log-scale is a per-query constant that cancels between the
numerator and the denominator, so it is dropped. For keys it is kept: bidirectionally one shared shift
(the maximum over the real keys) is exact; causally each query uses the running maximum over the keys it
may see, so no statistic of a future position ever enters an output (the popular implementation's global
maximum over all keys leaks the future through its epsilon and through underflow).

The epsilon is added to the stabilised denominator, so in exact terms query i computes
sum_j A_ij v_j / (sum_j A_ij + eps exp(a_i + c_i)), with a_i its largest logit and c_i the largest key
logit it sees: an epsilon relative to the feature scale, which keeps tiny-but-valid denominators from
being swamped. The log-scales are differentiated like everything else (they are not detached), so the
gradient is exactly the gradient of that function.
"""
from __future__ import annotations

import torch

from attention_zoo.ops.precision import accumulation_dtype

_FLOOR = -1e30  # finite "minus infinity" for running maxima, so that differences never become NaN


def positive_random_features(
    x: torch.Tensor, projection: torch.Tensor, key_valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stabilised features ``[B, H, N, m]`` and per-vector log-scales ``[B, H, N]`` (fp32, or float64).

    ``projection`` is ``[m, d]``. Padded positions get zero features and a log-scale of -inf.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        dtype = accumulation_dtype(x, projection)
        x = x.to(dtype) * x.shape[-1] ** -0.25
        logits = torch.matmul(x, projection.to(dtype).t()) - 0.5 * x.pow(2).sum(-1, keepdim=True)
        log_scale = logits.amax(dim=-1)
        features = torch.exp(logits - log_scale[..., None]) * projection.shape[0] ** -0.5
        if key_valid is not None:
            valid = key_valid[:, None, :]
            features = features * valid[..., None]
            log_scale = log_scale.masked_fill(~valid, -torch.inf)
        return features, log_scale


def causal_logscaled_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    k_log_scale: torch.Tensor,
    v: torch.Tensor,
    *,
    chunk_size: int = 64,
    eps: float = 1e-6,
    carry: dict | None = None,
) -> torch.Tensor:
    """Normalised causal linear attention with key features k_j * exp(k_log_scale_j).

    ``carry`` (decoding): a dict holding the scan's ``state`` and ``reference`` after earlier tokens (empty
    at the start); the scan starts from them and leaves its final ones there.

    A scan over chunks (not tokens) keeps the state S = sum_j k_j v_j^T exp(s_j - R) relative to the
    running maximum R of the log-scales seen so far; inside a chunk each query i uses its own reference
    M_i = max(R, max_{j<=i} s_j), so every weight exp(s_j - M_i) is at most 1.
    """
    out_dtype = v.dtype
    with torch.autocast(device_type=q.device.type, enabled=False):
        dtype = accumulation_dtype(q, k, v)
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        B, H = q.shape[:2]
        v = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)  # normaliser as an extra column
        state = q.new_zeros(B, H, k.shape[-1], v.shape[-1])
        reference = q.new_full((B, H), _FLOOR)
        if carry:
            state, reference = carry["state"].to(dtype), carry["reference"].to(dtype)
        tril = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
        outputs = []
        # split once (not sliced per chunk): a slice's backward writes a full-length gradient, which
        # would make the backward pass quadratic in N
        chunks = (t.split(chunk_size, dim=-2) for t in (q, k, v))
        log_scales = k_log_scale.to(dtype).split(chunk_size, dim=-1)
        for qc, kc, vc, sc in zip(*chunks, log_scales):
            c = qc.shape[-2]
            query_ref = torch.maximum(reference[..., None], sc.cummax(dim=-1).values)  # [B, H, c]
            rel = (sc[..., None, :] - query_ref[..., :, None]).masked_fill(~tril[:c, :c], -torch.inf)
            intra = torch.matmul(torch.matmul(qc, kc.transpose(-1, -2)) * rel.exp(), vc)
            inter = torch.matmul(qc, state) * (reference[..., None] - query_ref).exp()[..., None]
            outputs.append(intra + inter)
            new_reference = torch.maximum(reference, sc.amax(dim=-1))
            weights = (sc - new_reference[..., None]).exp()[..., None]
            state = state * (reference - new_reference).exp()[..., None, None]
            state = state + torch.matmul(kc.transpose(-1, -2), vc * weights)
            reference = new_reference
        out = torch.cat(outputs, dim=-2)
        if carry is not None:
            carry.update(state=state, reference=reference)
        return (out[..., :-1] / (out[..., -1:] + eps)).to(out_dtype)


def orthogonal_gaussian_projection(
    n_features: int, dim: int, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """``[m, d]`` stacked orthogonal blocks, rows rescaled to the norms of Gaussian vectors (FAVOR+)."""
    blocks = []
    for _ in range(-(-n_features // dim)):
        gaussian = torch.randn(dim, dim, generator=generator, device=device)
        q, _ = torch.linalg.qr(gaussian)
        blocks.append(q.t())
    rows = torch.cat(blocks)[:n_features]
    norms = torch.randn(n_features, dim, generator=generator, device=device).norm(dim=-1)
    return rows * norms[:, None]


__all__ = ["causal_logscaled_linear_attention", "orthogonal_gaussian_projection", "positive_random_features"]
