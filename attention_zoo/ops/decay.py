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
exp(b_i - b_j) = exp(b_i) exp(-b_j), for every query row whose decay from the chunk's start stays above e^-60
(fp32; e^-600 in float64), which GLA's gates are far from; the rows beyond (HGRN2's lower layers may get there)
take a sub-chunked form whose exponents are all <= 0 (chunks of 16 tokens, the factor between two of them carried
with the queries: O(C/16 d_k) more memory per chunk that holds such a row), so no gate, however strong, overflows,
and the form of a row depends on no later token. Gradients by autograd; accumulation in fp32 (float64
stays float64).
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
        if last.is_meta:  # shapes only (FLOP counts): the general form
            scores = _materialised_scores(qc, kc, b, causal)
        else:
            scores = _per_channel_scores(qc, kc, b, q_from_start, causal, _SAFE_EXPONENT[dtype])
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


def _materialised_scores(qc, kc, b, causal) -> torch.Tensor:
    """The in-chunk scores with the weights per channel materialised, ``[.., C, C, d_k]``, every exponent <= 0."""
    gap = (b[..., :, None, :] - b[..., None, :, :]).masked_fill(~causal[..., None], -torch.inf)
    return torch.einsum("...id,...jd,...ijd->...ij", qc, kc, torch.exp(gap))


def _per_channel_scores(qc, kc, b, q_from_start, causal, safe: float) -> torch.Tensor:
    """The in-chunk scores ``[B, H, nc, C, C]`` of per-channel decays, the form chosen per query row.

    Row i factorises, exp(b_i - b_j) = exp(b_i) exp(-b_j) for j <= i, while its own decay from the chunk's start
    stays above e^-safe (then so does every key's it sees); exp(-b) is clamped there, since a key beyond it is seen
    only by rows that do not factorise. Those rows take the sub-chunked form (``_subchunk_scores``), computed for the
    chunks that hold one only (one host sync per forward, to find them; one more when there are any). The form of a
    row depends on the tokens up to it alone, so a later token never changes an earlier output, not even by rounding.
    """
    reach = -b  # [B, H, nc, C, d_k], >= 0 and growing along the chunk
    scores = torch.matmul(q_from_start, (kc * torch.exp(reach.clamp_max(safe))).transpose(-1, -2)).tril()
    strong = reach.amax(-1) >= safe  # [B, H, nc, C]: rows that do not factorise
    return _replace_rows(scores, strong, lambda chunks: _subchunk_scores(
        *(_flat(t, b)[chunks] for t in (qc, kc, b)), causal, safe))


def _flat(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t [B, 1 or H, nc, C, d]`` expanded to ``like``'s leading shape and flattened: ``[B H nc, C, d]``."""
    return t.expand(*like.shape[:-1], t.shape[-1]).flatten(0, -3)


def _replace_rows(scores: torch.Tensor, rows: torch.Tensor, general) -> torch.Tensor:
    """``scores [..., C, C]`` with the ``rows [..., C]`` that are True taken from ``general(blocks)``, the scores of
    the blocks (the flattened leading index) that hold such a row; ``scores`` itself when none does."""
    blocks = rows.flatten(0, -2).any(-1).nonzero()[:, 0]
    if not len(blocks):
        return scores
    flat = scores.flatten(0, -3)
    picked = torch.where(rows.flatten(0, -2)[blocks][..., None], general(blocks), flat[blocks])
    return flat.index_copy(0, blocks, picked).view_as(scores)


_SUBCHUNK = 16  # tokens per sub-chunk of the strong-gate form


def _subchunk_scores(q, k, b, causal, safe: float) -> torch.Tensor:
    """The in-chunk scores ``[M, C, C]`` of ``q, k [M, C, d]`` with per-channel running log-decays ``b`` (from the
    chunk's start), with no exponent above 0 between sub-chunks of 16 tokens (flash-linear-attention's secondary
    chunking): for i in sub-chunk s and j in an earlier sub-chunk t, exp(b_i - b_j) = exp(b_i - r_s) exp(r_s - r_{t+1})
    exp(r_{t+1} - b_j), r_s the running decay before sub-chunk s; the middle factor, one per pair of sub-chunks and
    channel, goes with the queries ([M, S, S, 16, d]: S times their size). Inside a sub-chunk the rows factorise
    from its start, or (decays beyond e^-safe within 16 tokens) take the weights materialised, per sub-chunk."""
    m, size, d = q.shape
    c = min(_SUBCHUNK, size)
    pad = (-size) % c
    if pad:  # zero keys and queries, no further decay: they reach no real token
        q, k = (torch.nn.functional.pad(t, (0, 0, 0, pad)) for t in (q, k))
        b = torch.cat([b, b[:, -1:].expand(m, pad, d)], dim=1)
    n_sub = (size + pad) // c
    qs, ks, bs = (t.view(m, n_sub, c, d) for t in (q, k, b))
    before = torch.cat([bs.new_zeros(m, 1, d), bs[:, :-1, -1]], dim=1)  # r_s: [M, S, d]
    local = bs - before[:, :, None]  # decays from the sub-chunk's start, <= 0
    total = local[:, :, -1]  # [M, S, d]: r_{s+1} - r_s
    q_in, k_out = qs * torch.exp(local), ks * torch.exp(total[:, :, None] - local)
    earlier = torch.ones(n_sub, n_sub, dtype=torch.bool, device=q.device).tril(-1)  # t < s
    gap = (before[:, :, None] - (before + total)[:, None]).masked_fill(~earlier[..., None], -torch.inf)
    across = torch.matmul(q_in[:, :, None] * torch.exp(gap)[:, :, :, None], k_out[:, None].transpose(-1, -2))
    # inside each sub-chunk, [M, S, c, c]: the rows of a sub-chunk's own form, as for the whole chunk above
    reach = -local
    inside = torch.matmul(q_in, (ks * torch.exp(reach.clamp_max(safe))).transpose(-1, -2)).tril()
    inside = _replace_rows(inside, reach.amax(-1) >= safe, lambda blocks: _materialised_scores(
        qs.flatten(0, 1)[blocks], ks.flatten(0, 1)[blocks], local.flatten(0, 1)[blocks], causal[:c, :c]))
    eye = torch.eye(n_sub, dtype=q.dtype, device=q.device)[:, :, None, None]
    blocks = across + inside[:, :, None] * eye  # [M, S, S, c, c], zero above the diagonal of sub-chunks
    return blocks.transpose(2, 3).reshape(m, n_sub * c, n_sub * c)[:, :size, :size]


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
