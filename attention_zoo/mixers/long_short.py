"""Transformer-LS (Zhu et al. 2021): long-short attention.

Each query attends, in one softmax, to (a) a local window of keys and (b) a few global keys that are
dynamic low-rank projections of the sequence: K_bar = P^T K, V_bar = P^T V with P = softmax over
positions of x W_p (r columns per head). DualLN: separate LayerNorms for the local and the global keys
and values, so that the two kinds of keys have comparable scales (knob ``dual_ln``: over the merged width
D as in the authors' code, over each head's d with one norm shared by the heads, or none).

Bidirectional: segments of w tokens; a query of segment s sees keys in [s w - w/2, (s+1) w + w/2) and the
r global keys of the whole sequence (linear in N).
Causal: a query at position i of segment s sees keys in [s w - w, i] (its own segment up to itself plus
the previous segment) and the ``segment_landmarks`` global keys of every segment c < s, each projected
from segment c alone, so nothing after i is ever used. Cost O(N (2w + N r_s / w)): quadratic with a
small constant, as in the paper.

Causal relative positions (knob ``relative_positions``), as the authors' autoregressive code (after
Transformer-XL), with q' = q / sqrt(d) and E(p) the sinusoidal embedding of a distance p:

    local key j:          (q'_i + u) . k_j + (q'_i + v) . (W_r E(i - j))
    global key (c, k):    q'_i . K_bar_(c,k) + q'_i . (W_c E((s - 1 - c) r + r - 1 - k) + b_c)

u, v [H, d] learned (zero at start); global keys are numbered from the query's segment backwards.
"""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from attention_zoo.maps import AttentionMap, RelativePositions, long_short_map
from attention_zoo.mixers.base import MultiHeadMixer, check_choice, check_dropout, check_flag, check_positive
from attention_zoo.ops import block_valid, chunked
from attention_zoo.ops.precision import accumulation_dtype

_MASKED_LOGIT = -1e9  # finite, so a fully padded segment stays finite (it is masked out afterwards)
DUAL_LN_CHOICES = ("model", "head", "none")


def windows(x: torch.Tensor, w: int, left: int, n_segments: int) -> torch.Tensor:
    """``[..., N, d] -> [..., n_segments, 2w, d]``: segment s gets positions [s w - left, s w - left + 2w)."""
    right = n_segments * w + w - left - x.shape[-2]
    x = F.pad(x, (0, 0, left, right))
    return x.unfold(-2, 2 * w, w).transpose(-1, -2)[..., :n_segments, :, :]


def distance_embeddings(n: int, dim: int, dtype: torch.dtype, device) -> torch.Tensor:
    """``[n, dim]``: distances 0..n-1 as [sin(p f_j), cos(p f_j)] with f_j = 10000^(-2j/dim) (Transformer-XL)."""
    freq = torch.exp(torch.arange(0, dim, 2, dtype=dtype, device=device) * (-math.log(10000.0) / dim))
    angles = torch.arange(n, dtype=dtype, device=device)[:, None] * freq
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def gather_last(scores: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``scores[..., index]`` with ``index [..., K]`` broadcast over the leading dimensions of ``scores``."""
    return scores.gather(-1, index.expand(*scores.shape[:-1], index.shape[-1]))


class LongShortAttention(MultiHeadMixer):
    def __init__(
        self,
        d_model: int,
        n_heads: int,
        causal: bool,
        window_size: int = 64,
        n_landmarks: int = 16,
        segment_landmarks: int = 1,
        relative_positions: bool = True,
        dual_ln: str | None = None,
        attn_dropout: float = 0.0,
        bias: bool = True,
    ):
        super().__init__(d_model, n_heads, causal, bias)
        check_positive("window_size", window_size)
        check_positive("n_landmarks", n_landmarks)
        check_positive("segment_landmarks", segment_landmarks)
        check_flag("relative_positions", relative_positions)
        check_choice("dual_ln", dual_ln, [None, *DUAL_LN_CHOICES])
        check_dropout(attn_dropout)
        if window_size % 2:
            raise ValueError(f"knob 'window_size' must be even (half a window on each side), got {window_size}")
        self.window_size, self.attn_dropout = window_size, attn_dropout
        self.rank = segment_landmarks if causal else n_landmarks
        self.to_landmarks = nn.Linear(d_model, n_heads * self.rank, bias=bias)
        # None: over D when causal (the authors' autoregressive code); over each head's d bidirectionally
        # (the masked-LM count of the paper does not tell the two apart; the authors' LRA code uses D).
        self.dual_ln = dual_ln if dual_ln is not None else ("model" if causal else "head")
        width = {"model": d_model, "head": self.head_dim}.get(self.dual_ln)
        self.local_norm = nn.LayerNorm(width) if width else None
        self.global_norm = nn.LayerNorm(width) if width else None
        self.relative_positions = causal and relative_positions  # the bidirectional form has none
        if self.relative_positions:
            if d_model % 2:
                raise ValueError(f"knob 'relative_positions' needs an even d_model (sin/cos pairs), got {d_model}")
            self.window_position_proj = nn.Linear(d_model, d_model, bias=False)
            self.segment_position_proj = nn.Linear(d_model, d_model)
            self.content_bias = nn.Parameter(torch.zeros(n_heads, self.head_dim))  # u: query bias for local keys
            self.position_bias = nn.Parameter(torch.zeros(n_heads, self.head_dim))  # v: query bias for distances

    def attention_map(self, x: torch.Tensor, key_valid: torch.Tensor | None) -> AttentionMap:
        """The N x N attention this mixer implies (analysis only): attention_zoo.maps.long_short_map."""
        q, k, v = self.project_qkv(x)
        relative = None
        if self.relative_positions:
            relative = RelativePositions(self.position_projections, self.content_bias, self.position_bias)
        return long_short_map(q, k, v, self.landmark_logits(x), key_valid, causal=self.causal,
                              window_size=self.window_size, local_norm=partial(self.normalize, self.local_norm),
                              global_norm=partial(self.normalize, self.global_norm), relative=relative)

    def core_products(self, n: int) -> tuple[float | None, float]:
        """Forward FLOPs per sequence: landmark logits, global keys and values, each query against its 2w
        local and r global keys."""
        H, d, w, r = self.n_heads, self.head_dim, self.window_size, self.rank
        landmarks = 2 * n * self.d_model * H * r
        return landmarks + H * (2 * 2 * n * r * d + 2 * 2 * (-(-n // w) * w) * (2 * w + r) * d), 0.0

    def landmark_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``x[B, N, D]`` -> x W_p per head ``[B, H, N, r]`` (softmax over N gives the landmarks' weights)."""
        return self.to_landmarks(x).unflatten(-1, (self.n_heads, self.rank)).transpose(1, 2)

    def normalize(self, norm: nn.LayerNorm | None, x: torch.Tensor) -> torch.Tensor:
        """DualLN on ``x[B, H, ..., d]``: over d, or over the merged width H d of each position."""
        if norm is None:
            return x
        if self.dual_ln == "head":
            return norm(x)
        merged = x.movedim(1, -2).flatten(-2)  # [B, ..., H d]
        return norm(merged).unflatten(-1, (self.n_heads, self.head_dim)).movedim(-2, 1)

    def position_projections(self, n_local: int, n_global: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``[H, n_local, d]`` W_r E(p) for local distances, ``[H, n_global, d]`` W_c E(p) + b_c for global ones."""
        weight = self.window_position_proj.weight  # the sines in fp32 (or fp64) whatever the weights hold
        table = distance_embeddings(max(n_local, n_global), self.d_model, accumulation_dtype(weight), weight.device)
        table = table.to(weight.dtype)
        heads = lambda t: t.unflatten(-1, (self.n_heads, self.head_dim)).transpose(0, 1)  # noqa: E731
        return heads(self.window_position_proj(table[:n_local])), heads(self.segment_position_proj(table[:n_global]))

    def attend(self, q, k, v, key_valid, x) -> torch.Tensor:
        B, H, N, d = q.shape
        w = self.window_size
        ns = -(-N // w)
        valid = torch.ones(B, N, dtype=torch.bool, device=q.device) if key_valid is None else key_valid
        logits = self.landmark_logits(x)  # [B, H, N, r]
        logits = logits.to(accumulation_dtype(logits)).masked_fill(~valid[:, None, :, None], _MASKED_LOGIT)

        left = w if self.causal else w // 2
        k_local = windows(self.normalize(self.local_norm, k), w, left, ns)  # [B, H, ns, 2w, d]
        v_local = windows(self.normalize(self.local_norm, v), w, left, ns)
        valid_local = windows(valid[:, None, :, None].float(), w, left, ns)[:, 0, ..., 0] > 0  # [B, ns, 2w]
        offset = torch.arange(2 * w, device=q.device)  # key j = s w - left + offset
        query_in_segment = torch.arange(w, device=q.device)
        own = offset[None, :] == (query_in_segment[:, None] + left)  # [w, 2w]: the query itself
        local_mask = valid_local[:, :, None, :]  # [B, ns, 1 or w, 2w]
        if self.causal:
            local_mask = local_mask & (offset[None, :] <= query_in_segment[:, None] + left)

        if self.causal:
            # Landmarks per segment: P_c = softmax over the positions of segment c.
            # (the block padding of the last segment gets a masked logit, not chunked's zero)
            logits = F.pad(logits, (0, 0, 0, ns * w - N), value=_MASKED_LOGIT)
            probs = torch.softmax(chunked(logits, w), dim=-2).to(k.dtype)  # [B, H, ns, w, r]
            k_global = torch.matmul(probs.transpose(-1, -2), chunked(k, w)).flatten(2, 3)  # [B, H, ns*r, d]
            v_global = torch.matmul(probs.transpose(-1, -2), chunked(v, w)).flatten(2, 3)
            segment_has_token = block_valid(valid, N, w, q.device).any(-1)  # [B, ns]
            earlier = torch.arange(ns, device=q.device)[:, None] > torch.arange(ns, device=q.device)[None, :]
            global_mask = (earlier[None] & segment_has_token[:, None, :]).repeat_interleave(self.rank, dim=-1)
            global_mask = global_mask[:, :, None, :]  # [B, ns, 1, ns*r]
        else:
            probs = torch.softmax(logits, dim=-2).to(k.dtype)  # [B, H, N, r]
            k_global = torch.matmul(probs.transpose(-1, -2), k)  # [B, H, r, d]
            v_global = torch.matmul(probs.transpose(-1, -2), v)
            global_mask = valid.any(-1)[:, None, None, None].expand(B, ns, 1, self.rank)
        k_global, v_global = self.normalize(self.global_norm, k_global), self.normalize(self.global_norm, v_global)

        n_global = k_global.shape[-2]
        keys = torch.cat([k_local, k_global[:, :, None].expand(B, H, ns, n_global, d)], dim=-2)
        values = torch.cat([v_local, v_global[:, :, None].expand(B, H, ns, n_global, d)], dim=-2)
        mask = torch.cat([local_mask | own, global_mask.expand(B, ns, w, n_global)], dim=-1)  # [B, ns, w, keys]
        queries = chunked(q, w)  # [B, H, ns, w, d]
        if self.relative_positions:
            bias = self.relative_logits(queries, k_local, offset, query_in_segment, n_global)
            mask = bias.masked_fill(~mask[:, None], -math.inf).transpose(1, 2).flatten(0, 1)  # [B*ns, H, w, keys]
        else:
            mask = mask.flatten(0, 1)[:, None]
        fold = lambda t: t.transpose(1, 2).flatten(0, 1)  # noqa: E731  [B*ns, H, ..., d]
        out = F.scaled_dot_product_attention(
            fold(queries),
            fold(keys),
            fold(values),
            attn_mask=mask,
            dropout_p=self.attn_dropout if self.training else 0.0,
        )
        return out.unflatten(0, (B, ns)).transpose(1, 2).flatten(2, 3)[:, :, :N]

    def relative_logits(self, queries, k_local, offset, query_in_segment, n_global) -> torch.Tensor:
        """``[B, H, ns, w, 2w + n_global]``: what the relative positions add to q . k / sqrt(d).

        Local key at ``offset`` o of a query at ``t`` in its segment: distance t + left - o (the masked,
        future keys get a clamped, unused one). Global key j of segment s's queries: s r - 1 - j.
        """
        ns, w = queries.shape[2], queries.shape[3]
        scaled = queries * queries.shape[-1] ** -0.5
        local_pos, global_pos = self.position_projections(2 * w, n_global)
        by_distance = torch.matmul(scaled + self.position_bias[:, None, None], local_pos[:, None].transpose(-1, -2))
        distance = (query_in_segment[:, None] + w - offset[None, :]).clamp(0, 2 * w - 1)  # [w, 2w]
        local = gather_last(by_distance, distance)  # [B, H, ns, w, 2w]
        local = local + torch.einsum("hd,bhskd->bhsk", self.content_bias, k_local)[..., None, :]
        by_index = torch.matmul(scaled, global_pos[:, None].transpose(-1, -2))  # [B, H, ns, w, n_global]
        segment = torch.arange(ns, device=queries.device)
        index = (segment[:, None] * self.rank - 1 - torch.arange(n_global, device=queries.device)).clamp_min(0)
        return torch.cat([local, gather_last(by_index, index[:, None, :])], -1)
