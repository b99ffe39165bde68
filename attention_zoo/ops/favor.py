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
being swamped. The log-scales (the maxima a_i, c_i) are constants for autograd, as in performer-pytorch:
they cancel between numerator and denominator, so the gradient is exact but for the epsilon term's own
dependence on them (measured in docs/attention_zoo.md: a relative gradient change of about 1e-2 at
cpu scale), and their backward (a cumulative maximum, a per-vector maximum) costs nothing.
"""
from __future__ import annotations

import math

import torch

from attention_zoo.ops.precision import accumulation_dtype, autocast_off

_FLOOR = -1e30  # finite "minus infinity" for running maxima, so that differences never become NaN


def positive_random_features(
    x: torch.Tensor, projection: torch.Tensor, key_valid: torch.Tensor | None = None, *, shift: str = "vector"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stabilised features ``[B, H, N, m]`` and log-scales (fp32, or float64): phi(x) = features * exp(log_scale).

    ``projection`` is ``[m, d]``. ``shift="vector"``: each vector's own largest logit, log-scales ``[B, H, N]``;
    ``"sequence"``: the largest over the (real) sequence, one log-scale ``[B, H, 1]`` (bidirectional keys).
    Padded positions get zero features and a log-scale of -inf. The log-scales are constants for autograd
    (module docstring); the features carry the whole gradient of the logits.
    """
    if shift not in ("vector", "sequence"):
        raise ValueError(f"invalid shift {shift!r}; valid choices: ['vector', 'sequence']")
    with autocast_off(x.device):
        dtype = accumulation_dtype(x, projection)
        x = x.to(dtype)
        d, m = x.shape[-1], projection.shape[0]
        # x' = d^-1/4 x, folded into the (small) projection and into |x'|^2 = d^-1/2 |x|^2
        projected = torch.matmul(x, projection.to(dtype).t() * d**-0.25)  # [B, H, N, m]
        half_norm = (0.5 * d**-0.5) * x.pow(2).sum(-1, keepdim=True)  # [B, H, N, 1]
        padded = None if key_valid is None else ~key_valid[:, None, :, None]
        with torch.no_grad():
            largest = projected.amax(dim=-1, keepdim=True) - half_norm  # the largest logit of each vector
            log_scale = largest if padded is None else largest.masked_fill(padded, -torch.inf)
            if shift == "sequence":
                log_scale = log_scale.amax(dim=-2, keepdim=True)
            # padded vectors (and fully padded rows) are shifted by their own largest logit, so that their
            # zeroed features never hold inf (whose gradient would be NaN)
            offset = torch.where(torch.isfinite(log_scale), log_scale, largest)
            if padded is not None:
                offset = torch.where(padded, largest, offset)
        # exp(logits - log_scale) m^-1/2 in one subtraction: logits = projected - half_norm
        features = torch.exp(projected - (half_norm + (offset + 0.5 * math.log(m))))
        if padded is not None:
            features = features.masked_fill(padded, 0.0)
        return features, log_scale[..., 0]


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
    with autocast_off(q.device):
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
