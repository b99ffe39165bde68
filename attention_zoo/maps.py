"""The N x N attention each backend implies, materialised for analysis only (never used in training).

Each mixer's ``attention_map(x, key_valid)`` method projects its input ``x[B, N, D]`` (q, k, v, features,
decays) and hands the tensors and its knobs to its function here, which recomputes, from the formulas in the
mixer's docstring, two things (``harness.analyze.attention_maps.attention_map(mixer, x, padding_mask)`` is the
checked entry point). This module imports no mixer: the mixers import it, so the dependency points one way.

- ``weights [B, H, N, K]`` and ``values [B, H, K, dv]`` with ``weights @ values`` equal to the mixer's
  attention core (the per-head output before the merge, the output norm / gate and the output projection).
  Usually K = N and ``values`` are the mixer's v; Transformer-LS also attends to its K - N global
  landmarks, whose values are its layer-normed projections.
- ``probs [B, H, N, N]``: a row-stochastic attention over the tokens, what the diagnostics read:
  softmax backends (vanilla, DiagAttention T2): the softmax probabilities (zero outside the block for Diag);
  kernel backends with a denominator (1+elu, Performer, cosFormer, Based, Hedgehog, ReLU, ReLU^2):
  phi(q_i).phi(k_j) / sum_j phi(q_i).phi(k_j);
  NormAttention (no denominator): |phi(q_i).phi(k_j)| / sum_j |phi(q_i).phi(k_j)| (the scores are signed
  under T1's elu features and LRPE, hence the absolute values);
  DiagAttention T1 (relu inside blocks): relu scores / their row sum;
  FLASH-quad: relu(q.k / n)^2 / its row sum; FLASH: the quadratic in-group weights plus the linear
  cross-group scores (signed), |.| / row sum;
  Lightning, RetNet, GLA, HGRN2 (decayed linear attention): the decayed scores (q_i * w_ij) . k_j, |.| / row sum
  (HGRN2: q the output gate, k = 1 - f);
  DeltaNet, Gated DeltaNet: the delta rule's matrix, the product of its WY factors
  tril(Q K^T * Gamma) (I + tril(diag(beta) K K^T * Gamma, -1))^-1 diag(beta) (``delta_map``; an N x N triangular
  solve, O(N^3): analysis lengths only), |.| / row sum;
  Mamba-2: the SSD matrix (C_i . B_j) dt_j exp(G_i - G_j) plus D on the diagonal, values x; |.| / row sum;
  Transformer-LS: the softmax mass on each local key plus the mass on each landmark spread back over the
  tokens it summarises (P_jg: landmark g's projection weight on token j). This ignores the LayerNorms on
  keys and values (they are not linear), so it is the effective token weighting, not an exact identity.
  A row with no mass at all (every score zero) is given the uniform distribution over the keys it may see.

Padding must be on the right (real tokens first), as a Backbone always passes it to its mixers. Rows of
padded queries are not meaningful (the mixers zero those outputs); padded keys get zero weight.
Attention dropout is ignored (analysis runs in eval mode).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attention_zoo.ops import positive_random_features, to_blocks
from attention_zoo.ops.block import block_valid
from attention_zoo.ops.padding import valid_lengths, zero_padded
from attention_zoo.ops.precision import accumulation_dtype
from attention_zoo.ops.softmax import attention_mask

Tensor = torch.Tensor
TensorMap = Callable[[Tensor], Tensor]  # a mixer's positional encoding or norm, applied as it applies it

_FLOOR = -1e30


@dataclass
class AttentionMap:
    """See the module docstring. ``kind`` says how ``probs`` was obtained. ``family`` is ``softmax``
    (p = exp(s) / sum exp(s)), ``kernel`` (p = s / sum s with s = phi(q).phi(k) >= 0; ``row_mass [B, H, N]``
    holds the denominator sum_j s_ij) or ``other``: what the Proposition check needs."""

    weights: torch.Tensor  # [B, H, N, K]
    values: torch.Tensor  # [B, H, K, dv]
    probs: torch.Tensor  # [B, H, N, N], rows sum to 1
    kind: str
    family: str = "other"
    row_mass: torch.Tensor | None = None
    allowed: torch.Tensor | None = None  # bool, broadcastable to probs: the keys each query may see


def allowed_keys(n: int, causal: bool, key_valid: torch.Tensor | None, device) -> torch.Tensor:
    """Bool ``[B or 1, 1, N, N]``: the keys each query may see (own position always, as the mixers do)."""
    mask = attention_mask(n, n, causal=causal, key_valid=key_valid, device=device)
    return torch.ones(1, 1, n, n, dtype=torch.bool, device=device) if mask is None else mask


def row_stochastic(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """|scores| / row sum over the allowed keys; a row without mass becomes uniform over its allowed keys."""
    mass = scores.abs() * allowed
    total = mass.sum(-1, keepdim=True)
    uniform = allowed.to(scores.dtype).expand_as(mass)
    uniform = uniform / uniform.sum(-1, keepdim=True).clamp_min(1)
    return torch.where(total > 0, mass / total.clamp_min(torch.finfo(total.dtype).tiny), uniform)


def block_diagonal(blocks: torch.Tensor, n: int) -> torch.Tensor:
    """``[B, H, nb, w, w]`` in-block matrices -> ``[B, H, N, N]`` (zero across blocks, padding cropped)."""
    nb, w = blocks.shape[-3], blocks.shape[-1]
    eye = torch.eye(nb, dtype=blocks.dtype, device=blocks.device)
    full = torch.einsum("bhIij,IJ->bhIiJj", blocks, eye)
    return full.reshape(*blocks.shape[:2], nb * w, nb * w)[..., :n, :n]


# The q, k, v below are ``[B, H, N, d]`` heads (``MultiHeadMixer.project_qkv``), with the positional encoding
# or feature map already applied where the docstring says so; ``key_valid [B, N]`` or None.
def softmax_map(q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None, *, causal: bool) -> AttentionMap:
    """softmax(q.k / sqrt(d)), q and k with their positions."""
    allowed = allowed_keys(q.shape[-2], causal, key_valid, q.device)
    logits = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    probs = torch.softmax(logits.masked_fill(~allowed, -math.inf), dim=-1)
    return AttentionMap(probs, v, probs, "softmax", family="softmax", allowed=allowed)


def _kernel_map(scores, v, allowed, *, eps: float, denominator: str, kind: str) -> AttentionMap:
    """Kernel scores with a row-sum denominator: weights = scores / (den + eps) or / max(den, eps)."""
    scores = scores * allowed
    mass = scores.sum(-1, keepdim=True)
    den = mass + eps if denominator == "add" else mass.clamp_min(eps)
    probs = row_stochastic(scores, allowed)
    return AttentionMap(scores / den, v, probs, kind, family="kernel", row_mass=mass[..., 0], allowed=allowed)


def elu_map(q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None, *, causal: bool, normalize: bool,
            eps: float) -> AttentionMap:
    """1+elu features of the raw q and k; ``normalize=False``: no denominator."""
    allowed = allowed_keys(q.shape[-2], causal, key_valid, q.device)
    scores = torch.matmul(1 + F.elu(q), zero_padded(1 + F.elu(k), key_valid).transpose(-1, -2)) * allowed
    if not normalize:
        return AttentionMap(scores, v, row_stochastic(scores, allowed), "kernel (no denominator): |s| / row sum")
    return _kernel_map(scores, v, allowed, eps=eps, denominator="add", kind="kernel: s / row sum")


def feature_map_map(q_features: Tensor, k_features: Tensor, v: Tensor, key_valid: Tensor | None, *, causal: bool,
                    eps: float) -> AttentionMap:
    """The features phi(q), phi(k) of a kernel backend (Based, Hedgehog, ReLU, ReLU^2), non-negative, with the
    denominator sum_j phi(q_i) . phi(k_j) + eps; scores in the mixer's dtype (v's)."""
    allowed = allowed_keys(q_features.shape[-2], causal, key_valid, q_features.device)
    scores = torch.matmul(q_features, zero_padded(k_features, key_valid).transpose(-1, -2)).to(v.dtype)
    return _kernel_map(scores, v, allowed, eps=eps, denominator="add", kind="kernel: s / row sum")


def performer_map(q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None, *, causal: bool, projection: Tensor,
                  eps: float) -> AttentionMap:
    """FAVOR+ features of the raw q and k through ``projection``; scores in the mixer's dtype (v's)."""
    allowed = allowed_keys(q.shape[-2], causal, key_valid, q.device)
    q_feat, q_log_scale = positive_random_features(q, projection)
    k_feat, k_log_scale = positive_random_features(k, projection, key_valid)
    # Each query's reference log-scale: the max over the keys it sees (causal: a running max), as the mixer.
    if causal:
        reference = k_log_scale.cummax(dim=-1).values.clamp_min(_FLOOR)  # [B, H, N] per query
    else:
        reference = k_log_scale.amax(dim=-1, keepdim=True).clamp_min(_FLOOR).expand_as(k_log_scale)
    relative = k_log_scale[..., None, :] - reference[..., :, None]  # [B, H, Nq, Nk], <= 0 where allowed
    relative = relative.masked_fill(~allowed, -math.inf).exp()
    scores = (torch.matmul(q_feat, k_feat.transpose(-1, -2)) * relative).to(v.dtype)
    amap = _kernel_map(scores, v, allowed, eps=eps, denominator="add", kind="kernel: s / row sum")
    # The stabilised scores are phi(q).phi(k) * exp(-(query log-scale + reference)): restore the true mass.
    amap.row_mass = amap.row_mass.double() * (q_log_scale.double() + reference.double()).exp()
    return amap


def cosformer_map(q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None, *, causal: bool, max_len: int | None,
                  eps: float) -> AttentionMap:
    """ReLU features of the raw q and k re-weighted by position (horizon ``max_len`` or the real length)."""
    B, _, N, _ = q.shape
    allowed = allowed_keys(N, causal, key_valid, q.device)
    dtype = accumulation_dtype(q, k)
    if max_len is None:
        horizon = valid_lengths(key_valid, B, N, q.device, dtype)
    else:
        horizon = torch.full((B,), float(max_len), device=q.device, dtype=dtype)
    angle = (math.pi / 2) * torch.arange(1, N + 1, device=q.device, dtype=dtype) / horizon[:, None]
    sin, cos = angle.sin()[:, None, :, None], angle.cos()[:, None, :, None]
    scores_dtype = v.dtype  # the mixer's dtype (q and k are cast to the accumulation dtype next)
    q, k = F.relu(q).to(dtype), zero_padded(F.relu(k), key_valid).to(dtype)
    q_feat, k_feat = torch.cat([q * sin, q * cos], dim=-1), torch.cat([k * sin, k * cos], dim=-1)
    scores = torch.matmul(q_feat, k_feat.transpose(-1, -2)).to(scores_dtype)
    return _kernel_map(scores, v, allowed, eps=eps, denominator="clamp", kind="kernel: s / row sum")


def norm_attention_map(q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None, *, causal: bool) -> AttentionMap:
    """q and k: the features phi(q), phi(k) with their positions; no denominator."""
    allowed = allowed_keys(q.shape[-2], causal, key_valid, q.device)
    scores = torch.matmul(q, zero_padded(k, key_valid).transpose(-1, -2)) * allowed
    return AttentionMap(scores, v, row_stochastic(scores, allowed), "no denominator: |s| / row sum")


def decay_weights(g: torch.Tensor, causal: bool) -> torch.Tensor:
    """``exp(-|G_i - G_j|)`` for log-decays ``g [B, H, N(, d)]`` (``G`` their running sum): ``[B, H, N, N(, d)]``,
    zero above the diagonal when causal (attention_zoo/ops/decay.py's weights, materialised)."""
    running = g.to(accumulation_dtype(g)).cumsum(2)
    gap = running[:, :, :, None] - running[:, :, None, :]
    weights = torch.exp(-gap.abs())
    if causal:
        n = g.shape[2]
        below = torch.ones(n, n, dtype=torch.bool, device=g.device).tril()
        weights = weights * (below if g.dim() == 3 else below[..., None])
    return weights


def decayed_map(q: Tensor, k: Tensor, v: Tensor, g: Tensor, key_valid: Tensor | None, *,
                causal: bool) -> AttentionMap:
    """q and k: the mixer's features; ``g``: its log-decays ``[B, H, N(, d)]``, zero at padded tokens."""
    allowed = allowed_keys(q.shape[-2], causal, key_valid, q.device)
    k = zero_padded(k, key_valid)
    weights = decay_weights(g, causal)
    if g.dim() == 3:
        scores = torch.matmul(q, k.transpose(-1, -2)) * weights.to(q.dtype)
    else:
        scores = torch.einsum("bhid,bhjd,bhijd->bhij", q, k, weights.to(q.dtype))
    scores = scores * allowed
    return AttentionMap(scores, v, row_stochastic(scores, allowed), "decayed scores: |s| / row sum")


def delta_weights(q: Tensor, k: Tensor, beta: Tensor, g: Tensor | None) -> Tensor:
    """``[B, H, N, N]``: W with ``o = W v`` for the causal (gated) delta rule of attention_zoo/ops/delta.py, the
    whole sequence as one chunk: ``tril(Q K^T * Gamma) (I + tril(diag(beta) K K^T * Gamma, -1))^-1 diag(beta)``,
    ``Gamma_ij = exp(G_i - G_j)`` for j <= i (``G`` the running sum of the log-decays ``g``; all ones when None)."""
    n, dtype = q.shape[-2], accumulation_dtype(q, k, beta)
    q, k, beta = q.to(dtype), k.to(dtype), beta.to(dtype)
    lower = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
    if g is None:
        gamma = lower.to(dtype)
    else:
        running = g.to(dtype).cumsum(-1)
        gamma = torch.exp((running[..., :, None] - running[..., None, :]).masked_fill(~lower, -math.inf))
    gram = (torch.matmul(k * beta[..., None], k.transpose(-1, -2)) * gamma).tril(-1)
    t_beta = torch.linalg.solve_triangular(gram, torch.diag_embed(beta), upper=False, unitriangular=True)
    return torch.matmul(torch.matmul(q, k.transpose(-1, -2)) * gamma, t_beta)


def delta_map(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, g: Tensor | None, key_valid: Tensor | None, *,
              causal: bool) -> AttentionMap:
    """The delta rule's q, k (normalised, scaled), v, ``beta [B, H, N]`` and log-decays ``g`` (or None), zero
    at padded tokens as the mixer gives them. Bidirectional: plus the reversed scan over the strictly later
    tokens (attention_zoo/ops/delta.py), token j's column decayed by alpha_j."""
    n = q.shape[-2]
    allowed = allowed_keys(n, causal, key_valid, q.device)
    k = zero_padded(k, key_valid)
    weights = delta_weights(q, k, beta, g)
    if not causal:
        def later(t: Tensor) -> Tensor:  # reversed, shifted by one along the tokens (dim 2)
            flipped = t.flip(2)
            return torch.cat([torch.zeros_like(flipped[:, :, :1]), flipped[:, :, :-1]], dim=2)

        reverse = delta_weights(q.flip(2), later(k), later(beta), None if g is None else later(g))
        # row t of the reversed scan is query N-1-t; its column s is token N-s (s >= 1; s = 0 is the empty token)
        backward = F.pad(reverse.flip(-2)[..., 1:].flip(-1), (1, 0))
        if g is not None:
            backward = backward * torch.exp(g.to(backward.dtype))[..., None, :]
        weights = weights + backward
    weights = (weights * allowed).to(v.dtype)
    return AttentionMap(weights, v, row_stochastic(weights, allowed), "delta rule: |w| / row sum")


def ssd_map(c: Tensor, b: Tensor, x: Tensor, dt: Tensor, g: Tensor, skip: Tensor, key_valid: Tensor | None, *,
            causal: bool) -> AttentionMap:
    """Mamba-2's SSD: ``c, b [B, 1 or H, N, d_state]`` (C and B, shared by the heads), ``x [B, H, N, P]``,
    ``dt [B, H, N]``, log-decays ``g = dt A [B, H, N]`` (zero at padded tokens), ``skip [H]`` (D)."""
    batch, heads, n, _ = x.shape
    keys = b.expand(batch, heads, n, b.shape[-1]) * dt[..., None].to(b.dtype)
    amap = decayed_map(c.expand(batch, heads, n, c.shape[-1]), keys, x, g, key_valid, causal=causal)
    real = torch.ones(batch, n, dtype=x.dtype, device=x.device) if key_valid is None else key_valid.to(x.dtype)
    weights = amap.weights + torch.diag_embed(skip.to(x.dtype)[None, :, None] * real[:, None, :])
    allowed = allowed_keys(n, causal, key_valid, x.device)
    return AttentionMap(weights, x, row_stochastic(weights, allowed), "SSD scores + D: |s| / row sum")


def diag_map(q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None, *, causal: bool, block_size: int,
             inner: str, pos: TensorMap) -> AttentionMap:
    """Attention inside blocks of ``block_size`` tokens of the raw q and k; ``pos`` (the mixer's positional
    encoding) restarts in every block; ``inner``: softmax or relu."""
    n, w = q.shape[-2], block_size
    qb = pos(to_blocks(q * q.shape[-1] ** -0.5, w))  # positions restart in every block
    kb = pos(to_blocks(k, w))
    valid = block_valid(key_valid, n, w, q.device)  # [B or 1, nb, w]
    nb = valid.shape[1]
    in_block = attention_mask(w, w, causal=causal, key_valid=valid.reshape(-1, w), device=q.device)
    in_block = in_block.reshape(valid.shape[0], nb, w, w)[:, None]  # [B or 1, 1, nb, w, w]
    scores = torch.matmul(qb, kb.transpose(-1, -2))
    if inner == "softmax":
        blocks = torch.softmax(scores.masked_fill(~in_block, -math.inf), dim=-1)
    else:
        blocks = torch.relu(scores) * in_block
    weights = block_diagonal(blocks, n)
    allowed = block_diagonal(in_block.to(v.dtype).expand_as(blocks), n) > 0
    if inner == "softmax":
        return AttentionMap(weights, v, weights, "softmax inside blocks", family="softmax", allowed=allowed)
    return AttentionMap(weights, v, row_stochastic(weights, allowed), "relu inside blocks / row sum")


def gau_map(v: Tensor, parts: tuple[Tensor, ...], key_valid: Tensor | None, *, causal: bool,
            group_size: int | None) -> AttentionMap:
    """The gated attention unit's: ``v [B, N, e D]``, ``parts`` its ``[B, 1, N, s]`` queries and keys with their
    positions (quadratic q, k; FLASH, ``group_size`` set: then linear q, k)."""
    B, N, _ = v.shape
    device, dtype = v.device, accumulation_dtype(v)
    key_valid = torch.ones(B, N, dtype=torch.bool, device=device) if key_valid is None else key_valid
    v = zero_padded(v[:, None], key_valid)
    allowed = allowed_keys(N, causal, key_valid, device) & key_valid[:, None, None, :]
    if group_size is None:
        quad_q, quad_k = parts
        scale = (1.0 / valid_lengths(key_valid, B, N, device, dtype))[:, None, None, None]
        weights = torch.relu(torch.matmul(quad_q, quad_k.transpose(-1, -2)) * scale).square() * allowed
        return AttentionMap(weights, v, row_stochastic(weights, allowed), "relu^2 / row sum")
    G = group_size
    quad_q, quad_k, lin_q, lin_k = parts
    group = torch.arange(N, device=device) // G
    same_group = group[:, None] == group[None, :]
    quadratic = torch.relu(torch.matmul(quad_q, quad_k.transpose(-1, -2)) / G).square() * (allowed & same_group)
    linear = torch.matmul(lin_q, lin_k.transpose(-1, -2))
    if causal:  # strictly earlier groups only
        linear = linear / G * (group[:, None] > group[None, :]) * key_valid[:, None, None, :]
    else:
        lengths = valid_lengths(key_valid, B, N, device, dtype)[:, None, None, None]
        linear = linear / lengths * key_valid[:, None, None, :]
    weights = quadratic + linear
    return AttentionMap(weights, v, row_stochastic(weights, allowed), "quadratic + linear, |w| / row sum")


@dataclass(frozen=True)
class RelativePositions:
    """Transformer-LS's causal relative positions: ``projections(n_local, n_global)`` -> W_r E(p) ``[H, n_local,
    d]`` for local distances and W_c E(p) + b_c ``[H, n_global, d]`` for global ones; u, v biases ``[H, d]``."""

    projections: Callable[[int, int], tuple[Tensor, Tensor]]
    content_bias: Tensor  # u: query bias for local keys
    position_bias: Tensor  # v: query bias for distances


def long_short_map(q: Tensor, k: Tensor, v: Tensor, landmark_logits: Tensor, key_valid: Tensor | None, *,
                   causal: bool, window_size: int, local_norm: TensorMap, global_norm: TensorMap,
                   relative: RelativePositions | None = None) -> AttentionMap:
    """Transformer-LS from the raw q, k, v: ``landmark_logits [B, H, N, r]`` (x W_p per head), ``local_norm`` and
    ``global_norm`` the DualLN on ``[B, H, ..., d]``, ``relative`` the causal relative positions (or None)."""
    B, H, N, d = q.shape
    w, r = window_size, landmark_logits.shape[-1]
    ns = -(-N // w)
    valid = torch.ones(B, N, dtype=torch.bool, device=q.device) if key_valid is None else key_valid
    logits = landmark_logits.to(accumulation_dtype(landmark_logits))
    logits = logits.masked_fill(~valid[:, None, :, None], -1e9)

    # Local keys: query i of segment s sees j in [s w - left, s w - left + 2w), causal j <= i, and itself.
    left = w if causal else w // 2
    pos = torch.arange(N, device=q.device)
    start = (pos // w) * w - left
    local = (pos[None, :] >= start[:, None]) & (pos[None, :] < start[:, None] + 2 * w)
    if causal:
        local = local & (pos[None, :] <= pos[:, None])
    local = (local[None] & valid[:, None, :]) | torch.eye(N, dtype=torch.bool, device=q.device)  # [B, N, N]

    # Landmarks: projection weights P [B, H, N, G] of each landmark g over the tokens, and who may see g.
    if causal:
        segment = pos // w
        padded = F.pad(logits, (0, 0, 0, ns * w - N), value=-1e9)
        seg_probs = torch.softmax(padded.unflatten(-2, (ns, w)), dim=-2)  # [B, H, ns, w, r]
        own = F.one_hot(torch.arange(ns, device=q.device), ns).to(seg_probs.dtype)  # [ns(c), ns]
        P = torch.einsum("bhcwr,cs->bhcwsr", seg_probs, own).flatten(2, 3)[:, :, :N].flatten(-2)  # [B,H,N,ns*r]
        has_token = F.pad(valid, (0, ns * w - N)).unflatten(-1, (ns, w)).any(-1)  # [B, ns]
        sees = (segment[:, None] > torch.arange(ns, device=q.device)[None, :])[None] & has_token[:, None, :]
        sees = sees.repeat_interleave(r, dim=-1)  # [B, N, ns*r]
    else:
        P = torch.softmax(logits, dim=-2)  # [B, H, N, r]
        sees = valid.any(-1)[:, None, None].expand(B, N, r)
    P = P.to(k.dtype)
    k_global = global_norm(torch.matmul(P.transpose(-1, -2), k))  # [B, H, G, d]
    v_global = global_norm(torch.matmul(P.transpose(-1, -2), v))

    keys = torch.cat([local_norm(k), k_global], dim=-2)
    values = torch.cat([local_norm(v), v_global], dim=-2)
    mask = torch.cat([local, sees], dim=-1)[:, None]  # [B, 1, N, N + G]
    logits_qk = torch.matmul(q, keys.transpose(-1, -2)) * d**-0.5
    if relative is not None:
        scaled_q, n_global = q * d**-0.5, k_global.shape[-2]
        logits_qk = logits_qk + _long_short_relative_logits(relative, scaled_q, keys[..., :N, :], n_global, w, r)
    weights = torch.softmax(logits_qk.masked_fill(~mask, -math.inf), dim=-1)
    probs = weights[..., :N] + torch.matmul(weights[..., N:], P.transpose(-1, -2))
    return AttentionMap(weights, values, probs, "local softmax + landmark mass spread over its tokens")


def _long_short_relative_logits(relative: RelativePositions, scaled_q: Tensor, k_local: Tensor, n_global: int,
                                w: int, r: int) -> Tensor:
    """``[B, H, N, N + G]``: the causal relative-position terms of the mixer's docstring (local distance
    i - j, clamped where the key is not seen anyway; global key g seen from segment s: s r - 1 - g)."""
    B, H, N, _ = scaled_q.shape
    pos = torch.arange(N, device=scaled_q.device)
    local_pos, global_pos = relative.projections(2 * w, n_global)  # [H, 2w, d], [H, G, d]
    by_distance = torch.matmul(scaled_q + relative.position_bias[:, None], local_pos.transpose(-1, -2))
    distance = (pos[:, None] - pos[None, :]).clamp(0, 2 * w - 1)
    local = by_distance.gather(-1, distance.expand(B, H, N, N))
    local = local + torch.einsum("hd,bhnd->bhn", relative.content_bias, k_local)[:, :, None, :]
    by_index = torch.matmul(scaled_q, global_pos.transpose(-1, -2))  # [B, H, N, G]
    index = ((pos // w)[:, None] * r - 1 - torch.arange(n_global, device=pos.device)[None, :]).clamp_min(0)
    return torch.cat([local, by_index.gather(-1, index.expand(B, H, N, n_global))], dim=-1)
