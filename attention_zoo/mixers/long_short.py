"""Transformer-LS (Zhu et al. 2021): long-short attention.

Each query attends, in one softmax, to (a) a local window of keys and (b) a few global keys that are
dynamic low-rank projections of the sequence: K_bar = P^T K, V_bar = P^T V with P = softmax over
positions of x W_p (r columns per head). DualLN: separate LayerNorms for the local and the global keys
and values, so that the two kinds of keys have comparable scales.

Bidirectional: segments of w tokens; a query of segment s sees keys in [s w - w/2, (s+1) w + w/2) and the
r global keys of the whole sequence (linear in N).
Causal: a query at position i of segment s sees keys in [s w - w, i] (its own segment up to itself plus
the previous segment) and the ``segment_landmarks`` global keys of every segment c < s, each projected
from segment c alone, so nothing after i is ever used. Cost O(N (2w + N r_s / w)): quadratic with a
small constant, as in the paper.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attention_zoo.mixers.base import MultiHeadMixer, check_dropout, check_positive
from attention_zoo.ops import block_valid, chunked
from attention_zoo.ops.precision import accumulation_dtype

_MASKED_LOGIT = -1e9  # finite, so a fully padded segment stays finite (it is masked out afterwards)


def windows(x: torch.Tensor, w: int, left: int, n_segments: int) -> torch.Tensor:
    """``[..., N, d] -> [..., n_segments, 2w, d]``: segment s gets positions [s w - left, s w - left + 2w)."""
    right = n_segments * w + w - left - x.shape[-2]
    x = F.pad(x, (0, 0, left, right))
    return x.unfold(-2, 2 * w, w).transpose(-1, -2)[..., :n_segments, :, :]


class LongShortAttention(MultiHeadMixer):
    def __init__(
        self,
        d_model: int,
        n_heads: int,
        causal: bool,
        window_size: int = 64,
        n_landmarks: int = 16,
        segment_landmarks: int = 1,
        attn_dropout: float = 0.0,
        bias: bool = True,
    ):
        super().__init__(d_model, n_heads, causal, bias)
        check_positive("window_size", window_size)
        check_positive("n_landmarks", n_landmarks)
        check_positive("segment_landmarks", segment_landmarks)
        check_dropout(attn_dropout)
        if window_size % 2:
            raise ValueError(f"knob 'window_size' must be even (half a window on each side), got {window_size}")
        self.window_size, self.attn_dropout = window_size, attn_dropout
        self.rank = segment_landmarks if causal else n_landmarks
        self.to_landmarks = nn.Linear(d_model, n_heads * self.rank, bias=bias)
        self.local_norm = nn.LayerNorm(self.head_dim)
        self.global_norm = nn.LayerNorm(self.head_dim)

    def attend(self, q, k, v, key_valid, x) -> torch.Tensor:
        B, H, N, d = q.shape
        w = self.window_size
        ns = -(-N // w)
        valid = torch.ones(B, N, dtype=torch.bool, device=q.device) if key_valid is None else key_valid
        logits = self.to_landmarks(x).unflatten(-1, (H, self.rank)).transpose(1, 2)  # [B, H, N, r]
        logits = logits.to(accumulation_dtype(logits)).masked_fill(~valid[:, None, :, None], _MASKED_LOGIT)

        left = w if self.causal else w // 2
        k_local = self.local_norm(windows(k, w, left, ns))  # [B, H, ns, 2w, d]
        v_local = self.local_norm(windows(v, w, left, ns))
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
        k_global, v_global = self.global_norm(k_global), self.global_norm(v_global)

        n_global = k_global.shape[-2]
        keys = torch.cat([k_local, k_global[:, :, None].expand(B, H, ns, n_global, d)], dim=-2)
        values = torch.cat([v_local, v_global[:, :, None].expand(B, H, ns, n_global, d)], dim=-2)
        mask = torch.cat([local_mask | own, global_mask.expand(B, ns, w, n_global)], dim=-1)  # [B, ns, w, keys]
        queries = chunked(q, w)  # [B, H, ns, w, d]
        fold = lambda t: t.transpose(1, 2).flatten(0, 1)  # noqa: E731  [B*ns, H, ..., d]
        out = F.scaled_dot_product_attention(
            fold(queries),
            fold(keys),
            fold(values),
            attn_mask=mask.flatten(0, 1)[:, None],
            dropout_p=self.attn_dropout if self.training else 0.0,
        )
        return out.unflatten(0, (B, ns)).transpose(1, 2).flatten(2, 3)[:, :, :N]
