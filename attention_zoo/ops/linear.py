"""Kernel (linear) attention: bidirectional in one product, causal in chunks with a running state.

Causal form: the sequence is cut into chunks of C tokens; inside a chunk the (C x C) masked product is
used, across chunks the d_k x d_v states of the earlier chunks are summed (an exclusive prefix sum over
chunks). Memory is O(N d + N/C d_k d_v): never an N x N matrix nor an N x d_k x d_v cumulative sum.
The causal form is one autograd function with a hand-written backward (the gradients are three more
passes of the same chunked form, two of them anti-causal), so that autograd keeps only q, k, v (as
chunks), the masked in-chunk scores (N x C) and the per-chunk states. All accumulation happens in fp32
(float64 stays float64), whatever the autocast dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from attention_zoo.ops.precision import accumulation_dtype, autocast_off

_PREFIX_GROUP = 16  # chunks per group of the two-level prefix sum over chunks


def chunked(x: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """``[..., N, d] -> [..., n_chunks, C, d]``, zero-padding N up to a multiple of C (a view if no padding)."""
    pad = (-x.shape[-2]) % chunk_size
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
    return x.unflatten(-2, (x.shape[-2] // chunk_size, chunk_size))


def states_of_earlier_chunks(kc: torch.Tensor, vc: torch.Tensor) -> torch.Tensor:
    """``[B, H, n_chunks, dk, dv]``: sum of k_j v_j^T over the chunks strictly before each chunk.

    Exclusive by construction: a chunk's own keys never enter its state.
    """
    return exclusive_sum_over_chunks(torch.matmul(kc.transpose(-1, -2), vc))


def exclusive_sum_over_chunks(states: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """For ``states[..., n_chunks, dk, dv]``: the sum over the chunks before each chunk (after it when
    ``reverse``); a chunk's own state is never included.

    Two levels, because a cumulative sum along a strided axis is slow on CPUs: a strictly triangular
    matrix product inside groups of chunks, then a cumulative sum of the few group totals.
    """
    n_chunks, dk, dv = states.shape[-3:]
    group = min(n_chunks, _PREFIX_GROUP)
    flat = states.reshape(-1, n_chunks, dk * dv)
    pad = (-n_chunks) % group
    if pad:
        flat = F.pad(flat, (0, 0, 0, pad))
    groups = flat.unflatten(1, (-1, group))  # [BH, n_groups, group, dk * dv]
    ones = torch.ones(group, group, dtype=states.dtype, device=states.device)
    out = torch.matmul(ones.triu(1) if reverse else ones.tril(-1), groups)
    totals = groups.sum(dim=-2)  # [BH, n_groups, dk * dv]
    # the sums over strictly earlier (later) groups as shifted running sums: "inclusive minus own total" would
    # round the group's later chunks into its earlier ones (a causal leak at rounding level)
    if reverse:
        carried = F.pad(totals.flip(1).cumsum(dim=1).flip(1)[:, 1:], (0, 0, 0, 1))
    else:
        carried = F.pad(totals.cumsum(dim=1)[:, :-1], (0, 0, 1, 0))
    out += carried[:, :, None]
    return out.flatten(1, 2)[:, :n_chunks].reshape(states.shape)


def _contiguous_chunks(x: torch.Tensor, chunk_size: int, dtype: torch.dtype) -> torch.Tensor:
    """``[..., N, d] -> [..., n_chunks, C, d]`` in ``dtype``, contiguous (so batched products copy nothing)."""
    return chunked(x.to(dtype), chunk_size).contiguous()


class CausalLinearAttention(torch.autograd.Function):
    """o_i = sum_{j <= i} (q_i . k_j) v_j, chunked; see ``linear_attention``.

    Backward (G = dO): dq_i = sum_{j <= i} (G_i . v_j) k_j (causal again), dk_j = sum_{i >= j} (G_i . v_j) q_i
    and dv_j = sum_{i >= j} (q_i . k_j) G_i (anti-causal: the suffix state sum_{i later} q_i G_i^T serves both).
    """

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_size: int) -> torch.Tensor:
        n, dtype = q.shape[-2], accumulation_dtype(q, k, v)
        qc, kc, vc = (_contiguous_chunks(t, chunk_size, dtype) for t in (q, k, v))
        before = exclusive_sum_over_chunks(torch.matmul(kc.transpose(-1, -2), vc))  # [..., n_chunks, dk, dv]
        scores = torch.matmul(qc, kc.transpose(-1, -2)).tril_()  # [..., n_chunks, C, C]: O(N C), kept for dv
        out = torch.matmul(scores, vc)
        out += torch.matmul(qc, before)
        # the chunked copies, not q, k, v: the backward needs them in this layout (and q, k, v are kept alive
        # by nothing else here, so the memory is the same)
        ctx.save_for_backward(qc, kc, vc, before, scores)
        ctx.chunk_size, ctx.length, ctx.dtypes = chunk_size, n, (q.dtype, k.dtype, v.dtype)
        return out.flatten(-3, -2)[..., :n, :].to(v.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        qc, kc, vc, before, scores = ctx.saved_tensors
        n, dtype, need_q, need_k, need_v = ctx.length, before.dtype, *ctx.needs_input_grad[:3]
        with autocast_off(qc.device):
            gc = _contiguous_chunks(grad_out, ctx.chunk_size, dtype)
            grad_scores = torch.matmul(gc, vc.transpose(-1, -2)).tril_()  # (G_i . v_j) for j <= i
            dq = dk = dv = None
            if need_q:
                dq = torch.matmul(grad_scores, kc)
                dq += torch.matmul(gc, before.transpose(-1, -2))
            if need_k or need_v:
                after = exclusive_sum_over_chunks(torch.matmul(qc.transpose(-1, -2), gc), reverse=True)
                if need_k:
                    dk = torch.matmul(grad_scores.transpose(-1, -2), qc)
                    dk += torch.matmul(vc, after.transpose(-1, -2))
                if need_v:
                    dv = torch.matmul(scores.transpose(-1, -2), gc)
                    dv += torch.matmul(kc, after)
        grads = []
        for grad, input_dtype in zip((dq, dk, dv), ctx.dtypes):
            grads.append(None if grad is None else grad.flatten(-3, -2)[..., :n, :].to(input_dtype))
        return (*grads, None)


def linear_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool, chunk_size: int = 64
) -> torch.Tensor:
    """o_i = sum_j (q_i . k_j) v_j over all j (bidirectional) or j <= i (causal); no normaliser.

    ``q, k``: ``[B, H, N, dk]``; ``v``: ``[B, H, N, dv]``. Returns ``[B, H, N, dv]`` in ``v``'s dtype.
    Padded keys must be zeroed by the caller (a zero key contributes nothing). The causal form supports
    first derivatives (not double backward).
    """
    with autocast_off(q.device):
        if causal:
            return CausalLinearAttention.apply(q, k, v, chunk_size)
        dtype = accumulation_dtype(q, k, v)  # fp32 for low precision, float64 stays float64
        return torch.matmul(q.to(dtype), torch.matmul(k.to(dtype).transpose(-1, -2), v.to(dtype))).to(v.dtype)


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

    Numerator and denominator come out of one pass: causal, the denominator rides along as an extra value
    column of ones; bidirectional, the key sum as an extra row of the state (``_bidirectional_normalized``).
    ``denominator="add"`` divides by (den + eps) (Katharopoulos et al.); ``"clamp"`` by max(den, eps)
    (cosFormer's official code).
    """
    if not causal:
        return _bidirectional_normalized(q, k, v, eps=eps, denominator=denominator)
    ones = torch.ones_like(v[..., :1])
    v_and_ones = torch.cat([v, ones], dim=-1).to(accumulation_dtype(v))
    out = linear_attention(q, k, v_and_ones, causal=causal, chunk_size=chunk_size)
    num, den = out[..., :-1], out[..., -1:]
    den = den + eps if denominator == "add" else den.clamp_min(eps)
    return (num / den).to(v.dtype)


class _DivideRows(torch.autograd.Function):
    """``num[..., m] / den[..., None]``, with a backward of two passes over ``num`` instead of autograd's
    four; the gradient of ``num`` is autograd's own (``grad / den``), bit for bit."""

    @staticmethod
    def forward(ctx, num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        out = num / den[..., None]
        ctx.save_for_backward(out, den)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        out, den = ctx.saved_tensors
        grad_num = grad / den[..., None] if ctx.needs_input_grad[0] else None
        grad_den = -(grad * out).sum(-1) / den if ctx.needs_input_grad[1] else None
        return grad_num, grad_den


def _bidirectional_normalized(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, eps: float,
                              denominator: str) -> torch.Tensor:
    """``normalized_linear_attention`` over all keys, computed token-major.

    The heads ``[B, H, N, d]`` are usually a transposed view of token-major ``[B, N, H, d]`` projections, so
    the products run in that layout and the output comes back as a view of a token-major tensor: merging
    the heads afterwards copies nothing. The normaliser's key sum rides along as one more row of the
    (small) state rather than as a column of ones in V (which would copy V), so numerator and denominator
    still come out of one product. Measured, forward+backward at 2K-8K: 0.75-0.8x the time of the
    ones-column form in heads-major layout.
    """
    with autocast_off(q.device):
        out_dtype, dtype = v.dtype, accumulation_dtype(q, k, v)
        q, k, v = (t.to(dtype).transpose(1, 2) for t in (q, k, v))  # [B, N, H, d]
        state = torch.einsum("bnhd,bnhm->bhmd", k, v)  # d_v x d_k: the order einsum multiplies fastest here
        state = torch.cat([state, k.sum(dim=1)[:, :, None]], dim=2)  # the key sum as one more row
        num_and_den = torch.einsum("bnhd,bhmd->bnhm", q, state)
        den = num_and_den[..., -1]
        den = den + eps if denominator == "add" else den.clamp_min(eps)
        out = _DivideRows.apply(num_and_den[..., :-1], den)
        return out.transpose(1, 2).to(out_dtype)
