"""The N x N attention each backend implies, materialised for analysis only (never used in training).

Each mixer's ``attention_map(x, key_valid)`` method calls its function here, which recomputes, from the
mixer's own parameters and the formulas in its docstring, two things for the mixer input ``x[B, N, D]``
(``harness.analyze.attention_maps.attention_map(mixer, x, padding_mask)`` is the checked entry point):

- ``weights [B, H, N, K]`` and ``values [B, H, K, dv]`` with ``weights @ values`` equal to the mixer's
  attention core (the per-head output before the merge, the output norm / gate and the output projection).
  Usually K = N and ``values`` are the mixer's v; Transformer-LS also attends to its K - N global
  landmarks, whose values are its layer-normed projections.
- ``probs [B, H, N, N]``: a row-stochastic attention over the tokens, what the diagnostics read:
  softmax backends (vanilla, DiagAttention T2): the softmax probabilities (zero outside the block for Diag);
  kernel backends with a denominator (1+elu, Performer, cosFormer): phi(q_i).phi(k_j) / sum_j phi(q_i).phi(k_j);
  NormAttention (no denominator): |phi(q_i).phi(k_j)| / sum_j |phi(q_i).phi(k_j)| (the scores are signed
  under T1's elu features and LRPE, hence the absolute values);
  DiagAttention T1 (relu inside blocks): relu scores / their row sum;
  FLASH-quad: relu(q.k / n)^2 / its row sum; FLASH: the quadratic in-group weights plus the linear
  cross-group scores (signed), |.| / row sum;
  Lightning, RetNet, GLA (decayed linear attention): the decayed scores (q_i * w_ij) . k_j, |.| / row sum;
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
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from attention_zoo.mixers.base import valid_lengths, zero_padded
from attention_zoo.ops import positive_random_features, to_blocks
from attention_zoo.ops.block import block_valid
from attention_zoo.ops.precision import accumulation_dtype
from attention_zoo.ops.softmax import attention_mask

if TYPE_CHECKING:  # the mixers call these functions from their attention_map methods
    from attention_zoo.mixers.base import MultiHeadMixer
    from attention_zoo.mixers.decayed import DecayedLinearAttention
    from attention_zoo.mixers.gated import GatedAttentionUnit
    from attention_zoo.mixers.kernel import CosFormerAttention, EluLinearAttention
    from attention_zoo.mixers.long_short import LongShortAttention
    from attention_zoo.mixers.performer import PerformerAttention
    from attention_zoo.mixers.softmax import SoftmaxAttention
    from attention_zoo.mixers.transnormer import DiagAttention, NormAttention

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


def qkv(mixer: MultiHeadMixer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(mixer.split_heads(proj(x)) for proj in (mixer.q_proj, mixer.k_proj, mixer.v_proj))


def softmax_map(mixer: SoftmaxAttention, x, key_valid) -> AttentionMap:
    q, k, v = qkv(mixer, x)
    allowed = allowed_keys(x.shape[1], mixer.causal, key_valid, x.device)
    logits = torch.matmul(mixer.pos(q), mixer.pos(k).transpose(-1, -2)) * mixer.head_dim**-0.5
    probs = torch.softmax(logits.masked_fill(~allowed, -math.inf), dim=-1)
    return AttentionMap(probs, v, probs, "softmax", family="softmax", allowed=allowed)


def _kernel_map(scores, v, allowed, *, eps: float, denominator: str, kind: str) -> AttentionMap:
    """Kernel scores with a row-sum denominator: weights = scores / (den + eps) or / max(den, eps)."""
    scores = scores * allowed
    mass = scores.sum(-1, keepdim=True)
    den = mass + eps if denominator == "add" else mass.clamp_min(eps)
    probs = row_stochastic(scores, allowed)
    return AttentionMap(scores / den, v, probs, kind, family="kernel", row_mass=mass[..., 0], allowed=allowed)


def elu_map(mixer: EluLinearAttention, x, key_valid) -> AttentionMap:
    q, k, v = qkv(mixer, x)
    allowed = allowed_keys(x.shape[1], mixer.causal, key_valid, x.device)
    scores = torch.matmul(1 + F.elu(q), zero_padded(1 + F.elu(k), key_valid).transpose(-1, -2)) * allowed
    if not mixer.normalize:
        return AttentionMap(scores, v, row_stochastic(scores, allowed), "kernel (no denominator): |s| / row sum")
    return _kernel_map(scores, v, allowed, eps=mixer.eps, denominator="add", kind="kernel: s / row sum")


def performer_map(mixer: PerformerAttention, x, key_valid) -> AttentionMap:
    q, k, v = qkv(mixer, x)
    allowed = allowed_keys(x.shape[1], mixer.causal, key_valid, x.device)
    q_feat, q_log_scale = positive_random_features(q, mixer.projection)
    k_feat, k_log_scale = positive_random_features(k, mixer.projection, key_valid)
    # Each query's reference log-scale: the max over the keys it sees (causal: a running max), as the mixer.
    if mixer.causal:
        reference = k_log_scale.cummax(dim=-1).values.clamp_min(_FLOOR)  # [B, H, N] per query
    else:
        reference = k_log_scale.amax(dim=-1, keepdim=True).clamp_min(_FLOOR).expand_as(k_log_scale)
    relative = k_log_scale[..., None, :] - reference[..., :, None]  # [B, H, Nq, Nk], <= 0 where allowed
    relative = relative.masked_fill(~allowed, -math.inf).exp()
    scores = (torch.matmul(q_feat, k_feat.transpose(-1, -2)) * relative).to(x.dtype)
    amap = _kernel_map(scores, v, allowed, eps=mixer.eps, denominator="add", kind="kernel: s / row sum")
    # The stabilised scores are phi(q).phi(k) * exp(-(query log-scale + reference)): restore the true mass.
    amap.row_mass = amap.row_mass.double() * (q_log_scale.double() + reference.double()).exp()
    return amap


def cosformer_map(mixer: CosFormerAttention, x, key_valid) -> AttentionMap:
    q, k, v = qkv(mixer, x)
    B, N = x.shape[:2]
    allowed = allowed_keys(N, mixer.causal, key_valid, x.device)
    dtype = accumulation_dtype(q, k)
    if mixer.max_len is None:
        horizon = valid_lengths(key_valid, B, N, x.device, dtype)
    else:
        horizon = torch.full((B,), float(mixer.max_len), device=x.device, dtype=dtype)
    angle = (math.pi / 2) * torch.arange(1, N + 1, device=x.device, dtype=dtype) / horizon[:, None]
    sin, cos = angle.sin()[:, None, :, None], angle.cos()[:, None, :, None]
    q, k = F.relu(q).to(dtype), zero_padded(F.relu(k), key_valid).to(dtype)
    q_feat, k_feat = torch.cat([q * sin, q * cos], dim=-1), torch.cat([k * sin, k * cos], dim=-1)
    scores = torch.matmul(q_feat, k_feat.transpose(-1, -2)).to(x.dtype)
    return _kernel_map(scores, v, allowed, eps=mixer.eps, denominator="clamp", kind="kernel: s / row sum")


def norm_attention_map(mixer: NormAttention, x, key_valid) -> AttentionMap:
    q, k, v = qkv(mixer, x)
    allowed = allowed_keys(x.shape[1], mixer.causal, key_valid, x.device)
    q = mixer.pos(mixer.feature_map(q))
    k = zero_padded(mixer.pos(mixer.feature_map(k)), key_valid)
    scores = torch.matmul(q, k.transpose(-1, -2)) * allowed
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


def decayed_map(mixer: DecayedLinearAttention, x, key_valid) -> AttentionMap:
    q, k, v = qkv(mixer, x)
    allowed = allowed_keys(x.shape[1], mixer.causal, key_valid, x.device)
    q, k = mixer.features(q, k)
    k = zero_padded(k, key_valid)
    g = mixer.real_decays(x, key_valid)
    weights = decay_weights(g, mixer.causal)
    if g.dim() == 3:
        scores = torch.matmul(q, k.transpose(-1, -2)) * weights.to(q.dtype)
    else:
        scores = torch.einsum("bhid,bhjd,bhijd->bhij", q, k, weights.to(q.dtype))
    scores = scores * allowed
    return AttentionMap(scores, v, row_stochastic(scores, allowed), "decayed scores: |s| / row sum")


def diag_map(mixer: DiagAttention, x, key_valid) -> AttentionMap:
    q, k, v = qkv(mixer, x)
    n, w = x.shape[1], mixer.block_size
    qb = mixer.pos(to_blocks(q * mixer.head_dim**-0.5, w))  # positions restart in every block
    kb = mixer.pos(to_blocks(k, w))
    valid = block_valid(key_valid, n, w, x.device)  # [B or 1, nb, w]
    nb = valid.shape[1]
    in_block = attention_mask(w, w, causal=mixer.causal, key_valid=valid.reshape(-1, w), device=x.device)
    in_block = in_block.reshape(valid.shape[0], nb, w, w)[:, None]  # [B or 1, 1, nb, w, w]
    scores = torch.matmul(qb, kb.transpose(-1, -2))
    if mixer.inner == "softmax":
        blocks = torch.softmax(scores.masked_fill(~in_block, -math.inf), dim=-1)
    else:
        blocks = torch.relu(scores) * in_block
    weights = block_diagonal(blocks, n)
    allowed = block_diagonal(in_block.to(x.dtype).expand_as(blocks), n) > 0
    if mixer.inner == "softmax":
        return AttentionMap(weights, v, weights, "softmax inside blocks", family="softmax", allowed=allowed)
    return AttentionMap(weights, v, row_stochastic(weights, allowed), "relu inside blocks / row sum")


def gau_map(mixer: GatedAttentionUnit, x, key_valid) -> AttentionMap:
    B, N, _ = x.shape
    key_valid = torch.ones(B, N, dtype=torch.bool, device=x.device) if key_valid is None else key_valid
    _, v = F.silu(mixer.to_uv(x)).chunk(2, dim=-1)
    z = F.silu(mixer.to_z(x))
    parts = mixer.pos(mixer.offset_scale(z)).split(1, dim=1)  # [B, 1, N, s] each
    v = zero_padded(v[:, None], key_valid)
    allowed = allowed_keys(N, mixer.causal, key_valid, x.device) & key_valid[:, None, None, :]
    if mixer.group_size is None:
        quad_q, quad_k = parts
        scale = (1.0 / valid_lengths(key_valid, B, N, x.device, accumulation_dtype(x)))[:, None, None, None]
        weights = torch.relu(torch.matmul(quad_q, quad_k.transpose(-1, -2)) * scale).square() * allowed
        return AttentionMap(weights, v, row_stochastic(weights, allowed), "relu^2 / row sum")
    G = mixer.group_size
    quad_q, quad_k, lin_q, lin_k = parts
    group = torch.arange(N, device=x.device) // G
    same_group = group[:, None] == group[None, :]
    quadratic = torch.relu(torch.matmul(quad_q, quad_k.transpose(-1, -2)) / G).square() * (allowed & same_group)
    linear = torch.matmul(lin_q, lin_k.transpose(-1, -2))
    if mixer.causal:  # strictly earlier groups only
        linear = linear / G * (group[:, None] > group[None, :]) * key_valid[:, None, None, :]
    else:
        lengths = valid_lengths(key_valid, B, N, x.device, accumulation_dtype(x))[:, None, None, None]
        linear = linear / lengths * key_valid[:, None, None, :]
    weights = quadratic + linear
    return AttentionMap(weights, v, row_stochastic(weights, allowed), "quadratic + linear, |w| / row sum")


def long_short_map(mixer: LongShortAttention, x, key_valid) -> AttentionMap:
    q, k, v = qkv(mixer, x)
    B, H, N, d = q.shape
    w, r = mixer.window_size, mixer.rank
    ns = -(-N // w)
    valid = torch.ones(B, N, dtype=torch.bool, device=x.device) if key_valid is None else key_valid
    logits = mixer.to_landmarks(x).unflatten(-1, (H, r)).transpose(1, 2)  # [B, H, N, r]
    logits = logits.to(accumulation_dtype(logits))
    logits = logits.masked_fill(~valid[:, None, :, None], -1e9)

    # Local keys: query i of segment s sees j in [s w - left, s w - left + 2w), causal j <= i, and itself.
    left = w if mixer.causal else w // 2
    pos = torch.arange(N, device=x.device)
    start = (pos // w) * w - left
    local = (pos[None, :] >= start[:, None]) & (pos[None, :] < start[:, None] + 2 * w)
    if mixer.causal:
        local = local & (pos[None, :] <= pos[:, None])
    local = (local[None] & valid[:, None, :]) | torch.eye(N, dtype=torch.bool, device=x.device)  # [B, N, N]

    # Landmarks: projection weights P [B, H, N, G] of each landmark g over the tokens, and who may see g.
    if mixer.causal:
        segment = pos // w
        padded = F.pad(logits, (0, 0, 0, ns * w - N), value=-1e9)
        seg_probs = torch.softmax(padded.unflatten(-2, (ns, w)), dim=-2)  # [B, H, ns, w, r]
        own = F.one_hot(torch.arange(ns, device=x.device), ns).to(seg_probs.dtype)  # [ns(c), ns]
        P = torch.einsum("bhcwr,cs->bhcwsr", seg_probs, own).flatten(2, 3)[:, :, :N].flatten(-2)  # [B,H,N,ns*r]
        has_token = F.pad(valid, (0, ns * w - N)).unflatten(-1, (ns, w)).any(-1)  # [B, ns]
        sees = (segment[:, None] > torch.arange(ns, device=x.device)[None, :])[None] & has_token[:, None, :]
        sees = sees.repeat_interleave(r, dim=-1)  # [B, N, ns*r]
    else:
        P = torch.softmax(logits, dim=-2)  # [B, H, N, r]
        sees = valid.any(-1)[:, None, None].expand(B, N, r)
    P = P.to(k.dtype)
    k_global = mixer.normalize(mixer.global_norm, torch.matmul(P.transpose(-1, -2), k))  # [B, H, G, d]
    v_global = mixer.normalize(mixer.global_norm, torch.matmul(P.transpose(-1, -2), v))

    keys = torch.cat([mixer.normalize(mixer.local_norm, k), k_global], dim=-2)
    values = torch.cat([mixer.normalize(mixer.local_norm, v), v_global], dim=-2)
    mask = torch.cat([local, sees], dim=-1)[:, None]  # [B, 1, N, N + G]
    logits_qk = torch.matmul(q, keys.transpose(-1, -2)) * d**-0.5
    if mixer.relative_positions:
        logits_qk = logits_qk + _long_short_relative_logits(mixer, q * d**-0.5, keys[..., :N, :], k_global.shape[-2])
    weights = torch.softmax(logits_qk.masked_fill(~mask, -math.inf), dim=-1)
    probs = weights[..., :N] + torch.matmul(weights[..., N:], P.transpose(-1, -2))
    return AttentionMap(weights, values, probs, "local softmax + landmark mass spread over its tokens")


def _long_short_relative_logits(mixer: LongShortAttention, scaled_q, k_local, n_global: int) -> torch.Tensor:
    """``[B, H, N, N + G]``: the causal relative-position terms of the mixer's docstring (local distance
    i - j, clamped where the key is not seen anyway; global key g seen from segment s: s r - 1 - g)."""
    B, H, N, _ = scaled_q.shape
    w, r = mixer.window_size, mixer.rank
    pos = torch.arange(N, device=scaled_q.device)
    local_pos, global_pos = mixer.position_projections(2 * w, n_global)  # [H, 2w, d], [H, G, d]
    by_distance = torch.matmul(scaled_q + mixer.position_bias[:, None], local_pos.transpose(-1, -2))
    distance = (pos[:, None] - pos[None, :]).clamp(0, 2 * w - 1)
    local = by_distance.gather(-1, distance.expand(B, H, N, N))
    local = local + torch.einsum("hd,bhnd->bhn", mixer.content_bias, k_local)[:, :, None, :]
    by_index = torch.matmul(scaled_q, global_pos.transpose(-1, -2))  # [B, H, N, G]
    index = ((pos // w)[:, None] * r - 1 - torch.arange(n_global, device=pos.device)[None, :]).clamp_min(0)
    return torch.cat([local, by_index.gather(-1, index.expand(B, H, N, n_global))], dim=-1)
