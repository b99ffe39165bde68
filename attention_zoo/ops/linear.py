"""Kernel (linear) attention: bidirectional in one product, causal in chunks with a running state.

Causal form: the sequence is cut into chunks of C tokens; inside a chunk the (C x C) masked product is
used, across chunks a d_k x d_v state per chunk is summed exclusively (a shifted cumulative sum over
chunks). Memory is O(N d + N/C d_k d_v): never an N x N matrix nor an N x d_k x d_v cumulative sum.
All accumulation happens in fp32, whatever the autocast dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from attention_zoo.ops.precision import accumulation_dtype


def chunked(x: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """``[..., N, d] -> [..., n_chunks, C, d]``, zero-padding N up to a multiple of C."""
    pad = (-x.shape[-2]) % chunk_size
    x = F.pad(x, (0, 0, 0, pad))
    return x.unflatten(-2, (x.shape[-2] // chunk_size, chunk_size))


def states_of_earlier_chunks(kc: torch.Tensor, vc: torch.Tensor) -> torch.Tensor:
    """``[B, H, n_chunks, dk, dv]``: sum of k_j v_j^T over the chunks strictly before each chunk.

    Exclusive by construction (a shifted cumulative sum): a chunk's own keys never enter its state.
    """
    chunk_states = torch.matmul(kc.transpose(-1, -2), vc)
    return F.pad(chunk_states.cumsum(dim=-3)[..., :-1, :, :], (0, 0, 0, 0, 1, 0))


def linear_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool, chunk_size: int = 64
) -> torch.Tensor:
    """o_i = sum_j (q_i . k_j) v_j over all j (bidirectional) or j <= i (causal); no normaliser.

    ``q, k``: ``[B, H, N, dk]``; ``v``: ``[B, H, N, dv]``. Returns ``[B, H, N, dv]`` in ``v``'s dtype.
    Padded keys must be zeroed by the caller (a zero key contributes nothing).
    """
    out_dtype = v.dtype
    with torch.autocast(device_type=q.device.type, enabled=False):
        dtype = accumulation_dtype(q, k, v)  # fp32 for low precision, float64 stays float64
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        if not causal:
            return torch.matmul(q, torch.matmul(k.transpose(-1, -2), v)).to(out_dtype)
        n = q.shape[-2]
        qc, kc, vc = (chunked(t, chunk_size) for t in (q, k, v))  # [B, H, n_chunks, C, d]
        causal_mask = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
        intra = torch.matmul(torch.matmul(qc, kc.transpose(-1, -2)) * causal_mask, vc)
        out = intra + torch.matmul(qc, states_of_earlier_chunks(kc, vc))
        return out.flatten(-3, -2)[..., :n, :].to(out_dtype)


def normalized_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool,
    chunk_size: int = 64,
    eps: float = 1e-6,
    denominator: str = "add",
) -> torch.Tensor:
    """o_i = sum_j (q_i . k_j) v_j / sum_j (q_i . k_j), the "scaled" linear attention of 1+elu & co.

    The denominator rides along as an extra value column of ones, so numerator and denominator come out
    of one pass. ``denominator="add"`` divides by (den + eps) (Katharopoulos et al.); ``"clamp"`` by
    max(den, eps) (cosFormer's official code).
    """
    ones = torch.ones_like(v[..., :1])
    v_and_ones = torch.cat([v, ones], dim=-1).to(accumulation_dtype(v))
    out = linear_attention(q, k, v_and_ones, causal=causal, chunk_size=chunk_size)
    num, den = out[..., :-1], out[..., -1:]
    den = den + eps if denominator == "add" else den.clamp_min(eps)
    return (num / den).to(v.dtype)
