"""The delta rule (DeltaNet) and the gated delta rule (Gated DeltaNet), chunked exactly.

Causal, written with the state ``S [d_k, d_v]`` read as ``o_t = S_t^T q_t`` (the transpose of the papers'
``S [d_v, d_k]``, ``o_t = S_t q_t``):

    S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T

with ``beta_t`` in (0, 1) per head and token, and ``alpha_t = exp(g_t)`` (``g <= 0``) for the gated rule,
``alpha_t = 1`` for DeltaNet (Yang et al. 2024, 2025). Each token first erases what the state holds along its key
(``beta_t`` of it) and then writes its value there.

Chunked (the WY / UT representation of Yang et al. 2024): inside a chunk of C tokens starting from the state
``S_0``, with ``b_t`` the running sum of the log-decays within the chunk (inclusive), every state is

    S_t = e^{b_t} S_0 + sum_{j <= t} e^{b_t - b_j} k_j u_j^T,   u = T (diag(beta) V) - T (diag(beta e^b) K) S_0

where ``T = (I + A)^-1`` and ``A = tril(diag(beta) (K K^T * Gamma), -1)``, ``Gamma_ij = e^{b_i - b_j}``: one unit
lower triangular solve per chunk, for all chunks at once. Then ``o_t = e^{b_t} q_t S_0 + sum_{j <= t} e^{b_t - b_j}
(q_t . k_j) u_j`` and the chunk's last state goes on to the next chunk: a Python loop over chunks (never over
tokens) carries the d_k x d_v state, the rest is batched over chunks. Memory O(N d + N/C d_k d_v + N C): never
an N x N matrix nor an N x d_k x d_v tensor. Every exponent is <= 0 (no overflow, however strong the gates).
Gradients by autograd (``torch.linalg.solve_triangular`` has its own); accumulation in fp32, float64 stays
float64.

Bidirectional (our extension; the methods are causal): the causal scan plus a reversed scan over the strictly
later tokens, ``o_i = S_i^T q_i + R_{i+1}^T q_i`` with ``R_j = alpha_j ((I - beta_j k_j k_j^T) R_{j+1} + beta_j k_j
v_j^T)``, ``R_N = 0``: the same rule run from the end, token j's value decayed by the decays of the tokens after
the query up to j (as the symmetric decay of ``ops/decay.py``). Each token enters once (a Hydra-like
forward + backward split with shared parameters; the delta rule's own term cannot be split off and subtracted,
so the reversed scan is exclusive rather than inclusive-minus-diagonal).
"""
from __future__ import annotations

import torch

from attention_zoo.ops.linear import chunked
from attention_zoo.ops.precision import accumulation_dtype, autocast_off


def causal_delta_rule(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, g: torch.Tensor | None = None, *,
    chunk_size: int = 64, initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(o[B, H, N, d_v], S[B, H, d_k, d_v])``: the causal (gated) delta rule and the state after the last token.

    ``q, k [B, H, N, d_k]`` (the caller normalises and scales them), ``v [B, H, N, d_v]``, ``beta [B, H, N]``,
    ``g [B, H, N]`` log-decays ``<= 0`` or None (DeltaNet). A token with ``k = 0`` (and ``g = 0``) leaves the state
    unchanged: padded tokens must be so. ``initial_state``: the state before the first token (decoding).
    """
    with autocast_off(q.device):
        out_dtype, dtype = v.dtype, accumulation_dtype(q, k, v, beta, *(() if g is None else (g,)))
        q, k, v, beta = q.to(dtype), k.to(dtype), v.to(dtype), beta.to(dtype)
        g = None if g is None else g.to(dtype)
        state = None if initial_state is None else initial_state.to(dtype)
        if q.shape[-2] == 1:  # one token (decoding): the recurrence itself, no chunk to pad
            out, state = _one_step(q, k, v, beta, g, state)
        else:
            out, state = _chunked(q, k, v, beta, g, chunk_size, state)
        return out.to(out_dtype), state


def _chunked(q, k, v, beta, g, chunk_size: int, state):
    n, d_k, d_v = q.shape[-2], q.shape[-1], v.shape[-1]
    qc, kc, vc = (chunked(t, chunk_size) for t in (q, k, v))  # [B, H, nc, C, d]; the padding: k = 0, beta = 0
    bc = chunked(beta[..., None], chunk_size)  # [B, H, nc, C, 1]
    k_beta = kc * bc
    strictly_lower = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril(-1)
    if g is None:
        gram = torch.matmul(k_beta, kc.transpose(-1, -2)).masked_fill(~strictly_lower, 0.0)  # A
        scores = torch.matmul(qc, kc.transpose(-1, -2)).tril()
        rhs = torch.cat([vc * bc, k_beta], dim=-1)
        q_from_start, k_to_end, chunk_decay = qc, kc, None
    else:
        b = chunked(g[..., None], chunk_size)[..., 0].cumsum(dim=-1)  # [B, H, nc, C]; the padding decays by 0
        last = b[..., -1:]
        lower = strictly_lower | torch.eye(chunk_size, dtype=torch.bool, device=q.device)
        decay = torch.exp((b[..., :, None] - b[..., None, :]).masked_fill(~lower, -torch.inf))  # Gamma, <= 1
        gram = (torch.matmul(k_beta, kc.transpose(-1, -2)) * decay).masked_fill(~strictly_lower, 0.0)
        scores = torch.matmul(qc, kc.transpose(-1, -2)) * decay
        rhs = torch.cat([vc * bc, k_beta * torch.exp(b)[..., None]], dim=-1)
        q_from_start, k_to_end = qc * torch.exp(b)[..., None], kc * torch.exp(last - b)[..., None]
        chunk_decay = torch.exp(last)[..., None]  # [B, H, nc, 1, 1]
    # (I + A) [U, W] = [diag(beta) V, diag(beta e^b) K]: T applied by one unit lower triangular solve per chunk
    solved = torch.linalg.solve_triangular(gram, rhs, upper=False, unitriangular=True)
    u, w = solved[..., :d_v], solved[..., d_v:]
    if state is None:
        state = q.new_zeros(*q.shape[:2], d_k, d_v)
    before, new_values = [], []
    # unbind, not a slice per chunk: a slice's backward writes a full-length gradient (quadratic in N)
    decays = [None] * u.shape[2] if chunk_decay is None else chunk_decay.unbind(2)
    for u_c, w_c, k_c, decay_c in zip(u.unbind(2), w.unbind(2), k_to_end.unbind(2), decays):
        before.append(state)
        new_v = u_c - torch.matmul(w_c, state)  # the chunk's values with what S_0 already holds erased
        new_values.append(new_v)
        contribution = torch.matmul(k_c.transpose(-1, -2), new_v)
        state = state + contribution if decay_c is None else decay_c * state + contribution
    out = torch.matmul(q_from_start, torch.stack(before, dim=2)) + torch.matmul(scores, torch.stack(new_values, 2))
    return out.flatten(2, 3)[..., :n, :], state


def _one_step(q, k, v, beta, g, state):
    """S = alpha (S - beta k (k^T S)) + beta k v^T and o = q S for one token (``q, k, v [B, H, 1, d]``)."""
    k_col = k.transpose(-1, -2)  # [B, H, d_k, 1]
    b = beta[..., None]  # [B, H, 1, 1]
    if state is None:
        state = torch.matmul(k_col, v) * b
    else:
        if g is not None:
            state = torch.exp(g)[..., None] * state
        state = state + torch.matmul(k_col, (v - torch.matmul(k, state)) * b)
    return torch.matmul(q, state), state


def delta_rule(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, g: torch.Tensor | None = None, *,
    causal: bool, chunk_size: int = 64,
) -> torch.Tensor:
    """``o[B, H, N, d_v]``, causal or bidirectional (see the module docstring); shapes as ``causal_delta_rule``.
    Padded tokens must have ``k = 0`` and ``g = 0`` (then they neither erase, write nor decay)."""
    forward, _ = causal_delta_rule(q, k, v, beta, g, chunk_size=chunk_size)
    if causal:
        return forward

    def later(t: torch.Tensor) -> torch.Tensor:
        """Reversed and shifted by one: the reversed scan's step for query i writes token i + 1."""
        flipped = t.flip(2)
        return torch.cat([torch.zeros_like(flipped[:, :, :1]), flipped[:, :, :-1]], dim=2)

    g_later = None if g is None else later(g)
    v_later = later(v) if g is None else later(v) * torch.exp(g_later)[..., None]  # fp32 or wider
    backward, _ = causal_delta_rule(q.flip(2), later(k), v_later, later(beta), g_later, chunk_size=chunk_size)
    return (forward.to(backward.dtype) + backward.flip(2)).to(v.dtype)
