"""Linear attention with decay, the core of TransNormer's successors (Lightning Attention, RetNet, GLA).

Causal: ``S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T`` and ``o_t = S_t^T q_t``, i.e.
``o_i = sum_{j <= i} (q_i * exp(G_i - G_j)) . k_j v_j`` with ``G`` the running sum of the log-decays ``g <= 0``.
``g`` is one number per head and token (``[B, H, N]``: Lightning's and RetNet's fixed per-head decays,
Mamba-2's data-dependent scalar) or one per key channel (``[B, H, N, d_k]``: GLA's gates).
Bidirectional (our extension, for the encoder tables): the symmetric weights ``exp(-|G_i - G_j|)``, i.e. the
decays of the tokens between query and key whichever comes first; computed as the causal form, plus the
causal form of the reversed sequence, minus the diagonal counted twice.

Chunked like ``attention_zoo/ops/linear.py``: inside a chunk of C tokens the decayed, masked C x C product;
across chunks the decayed running state, carried chunk by chunk. Memory O(N d + N/C d_k d_v): never an N x N
matrix nor an N x d_k x d_v tensor. The in-chunk product of per-channel decays is factorised,
exp(b_i - b_j) = exp(b_i) exp(-b_j), while every chunk's decay stays above e^-60 (fp32; e^-600 in float64), which
training's gates are far from; beyond, the per-channel weights are materialised (O(N C d_k) memory) with
exponents <= 0 only, so no gate, however strong, overflows. Gradients by autograd; accumulation in fp32
(float64 stays float64).
"""
from __future__ import annotations

import torch

from attention_zoo.ops.linear import chunked
from attention_zoo.ops.precision import accumulation_dtype, autocast_off

# the largest in-chunk decay (as -log) for which exp(-b) and exp(b) stay finite and normal in this dtype
_SAFE_EXPONENT = {torch.float32: 60.0, torch.float64: 600.0}


def _chunked_log_decay(g: torch.Tensor, chunk_size: int, per_channel: bool) -> torch.Tensor:
    """Running sums of ``g`` inside each chunk (inclusive), ``[B, H, nc, C]`` or ``[B, H, nc, C, d_k]``; the
    padding at the end gets decay 0 (it follows every real token, so it never reaches one)."""
    blocks = chunked(g if per_channel else g[..., None], chunk_size)
    blocks = blocks if per_channel else blocks[..., 0]
    return blocks.cumsum(dim=3)


def causal_decayed_linear_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, *, chunk_size: int = 64,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The causal form and the state after the last token: ``(o[B, H, N, d_v], S[B, H, d_k, d_v])``.

    ``initial_state``: the state before the first token (decoding on top of earlier tokens). Padded keys must
    be zero and padded tokens' ``g`` zero where they precede real ones (decoding's left padding). With per-head
    decays, ``q`` and ``k`` may have one head (``[B, 1, N, d_k]``) shared by all (Mamba-2's C and B): their
    in-chunk product is then computed once, not once per head.
    """
    n, dtype = q.shape[-2], accumulation_dtype(q, k, v, g)
    per_channel = g.dim() == q.dim()
    if n == 1:  # one token (decoding): the recurrence itself, no chunk to pad
        return _one_step(q.to(dtype), k.to(dtype), v.to(dtype), g.to(dtype), initial_state, per_channel, v.dtype)
    qc, kc, vc = (chunked(t.to(dtype), chunk_size) for t in (q, k, v))  # [B, H, nc, C, d]
    b = _chunked_log_decay(g.to(dtype), chunk_size, per_channel)
    last = b[:, :, :, -1:]  # the chunk's total decay (log), [B, H, nc, 1(, d_k)]
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
    if per_channel:
        q_from_start, k_to_end = qc * torch.exp(b), kc * torch.exp(last - b)
        chunk_decay = torch.exp(last[:, :, :, 0])[..., None]  # [B, H, nc, d_k, 1]: scales the state's rows
        # exp(b_i - b_j) = exp(b_i) exp(-b_j) where that stays finite: one host sync per forward to choose the
        # form (inherent to choosing; a meta tensor, shapes only, takes the general form)
        if not last.is_meta and float(-last.detach().min()) < _SAFE_EXPONENT[dtype]:
            scores = torch.matmul(q_from_start, (kc * torch.exp(-b)).transpose(-1, -2)).tril()
        else:  # gates too strong to factorise: the in-chunk weights per channel, [.., C, C, d_k], exponents <= 0
            gap = (b[..., :, None, :] - b[..., None, :, :]).masked_fill(~causal[..., None], -torch.inf)
            scores = torch.einsum("...id,...jd,...ijd->...ij", qc, kc, torch.exp(gap))
    else:
        decay = torch.exp((b[..., :, None] - b[..., None, :]).masked_fill(~causal, -torch.inf))  # [.., C, C]
        scores = torch.matmul(qc, kc.transpose(-1, -2)) * decay
        q_from_start, k_to_end = qc * torch.exp(b)[..., None], kc * torch.exp(last - b)[..., None]
        chunk_decay = torch.exp(last)[..., None]  # [B, H, nc, 1, 1]
    out = torch.matmul(scores, vc)
    contributions = torch.matmul(k_to_end.transpose(-1, -2), vc)  # [B, H, nc, d_k, d_v]: each chunk's keys
    heads = torch.broadcast_shapes(q.shape[:2], k.shape[:2], v.shape[:2])  # q and k may be shared by the heads
    state = q.new_zeros(*heads, q.shape[-1], v.shape[-1], dtype=dtype) if initial_state is None else (
        initial_state.to(dtype))
    before = []
    # unbind, not a slice per chunk: a slice's backward writes a full-length gradient (quadratic in N)
    for decay, contribution in zip(chunk_decay.unbind(2), contributions.unbind(2)):  # the state entering each chunk
        before.append(state)
        state = decay * state + contribution
    out = out + torch.matmul(q_from_start, torch.stack(before, dim=2))
    return out.flatten(2, 3)[..., :n, :].to(v.dtype), state


def _one_step(q, k, v, g, state, per_channel: bool, out_dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """S = diag(exp(g)) S + k^T v, o = q S for one token (``q, k, v [B, H, 1, d]``)."""
    decay = torch.exp(g[:, :, 0])[..., None] if per_channel else torch.exp(g)[..., None]  # [B, H, d_k or 1, 1]
    state = torch.matmul(k.transpose(-1, -2), v) if state is None else decay * state.to(q.dtype) + torch.matmul(
        k.transpose(-1, -2), v)
    return torch.matmul(q, state).to(out_dtype), state


def decayed_linear_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, *, causal: bool, chunk_size: int = 64
) -> torch.Tensor:
    """``o[B, H, N, d_v]`` for ``q, k [B, H, N, d_k]``, ``v [B, H, N, d_v]`` and log-decays ``g <= 0`` of shape
    ``[B, H, N]`` or ``[B, H, N, d_k]`` (see the module's docstring). Padded keys must be zeroed by the caller."""
    with autocast_off(q.device):
        forward, _ = causal_decayed_linear_attention(q, k, v, g, chunk_size=chunk_size)
        if causal:
            return forward
        # the reversed sequence: the decay between j > i is that of tokens i+1..j, i.e. g shifted by one
        flip = lambda t: t.flip(2)  # noqa: E731
        shifted = torch.cat([torch.zeros_like(g[:, :, :1]), flip(g)[:, :, :-1]], dim=2)
        backward, _ = causal_decayed_linear_attention(flip(q), flip(k), flip(v), shifted, chunk_size=chunk_size)
        dtype = accumulation_dtype(q, k, v)
        diagonal = (q.to(dtype) * k.to(dtype)).sum(-1, keepdim=True) * v.to(dtype)
        return (forward.to(dtype) + flip(backward).to(dtype) - diagonal).to(v.dtype)
