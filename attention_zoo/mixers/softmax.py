"""Vanilla softmax attention (Vaswani et al.)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from attention_zoo.maps import AttentionMap, softmax_map
from attention_zoo.mixers.base import MultiHeadMixer, check_choice, check_dropout
from attention_zoo.ops import softmax_attention
from attention_zoo.positional import build_relative_positional


class SoftmaxAttention(MultiHeadMixer):
    """softmax(Q K^T / sqrt(d)) V. ``impl="sdpa"`` uses PyTorch's fused kernel; ``impl="math"``
    materialises the N x N matrix like the paper's baseline did (for speed comparisons)."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        causal: bool,
        impl: str = "sdpa",
        attn_dropout: float = 0.0,
        pos: str = "none",
        bias: bool = True,
    ):
        super().__init__(d_model, n_heads, causal, bias)
        check_choice("impl", impl, ["sdpa", "math"])
        check_dropout(attn_dropout)
        self.impl, self.attn_dropout = impl, attn_dropout
        self.pos = build_relative_positional(pos, self.head_dim)

    def attend(self, q, k, v, key_valid, x) -> torch.Tensor:
        return softmax_attention(
            self.pos(q),
            self.pos(k),
            v,
            causal=self.causal,
            key_valid=key_valid,
            impl=self.impl,
            dropout_p=self.attn_dropout if self.training else 0.0,
        )

    def attention_map(self, x: torch.Tensor, key_valid: torch.Tensor | None) -> AttentionMap:
        """The N x N attention this mixer implies (analysis only): attention_zoo.maps.softmax_map."""
        q, k, v = self.project_qkv(x)
        return softmax_map(self.pos(q), self.pos(k), v, key_valid, causal=self.causal)

    def core_products(self, n: int) -> tuple[float | None, float]:
        """Forward FLOPs of the core's matrix products per sequence (bidirectional): Q K^T and A V."""
        return self.n_heads * 2 * 2 * n * n * self.head_dim, 0.0

    def attend_step(self, q, k, v, valid, positions, state, x) -> torch.Tensor:
        """The key/value cache: new keys appended, each new query attends to the real keys up to itself."""
        q, k = self.pos(q, positions), self.pos(k, positions)
        fresh = "k" not in state.tensors
        if not fresh:
            k = torch.cat([state.tensors["k"], k], dim=2)
            v = torch.cat([state.tensors["v"], v], dim=2)
            valid = torch.cat([state.tensors["valid"], valid], dim=1)
        state.tensors.update(k=k, v=v, valid=valid)
        if fresh and bool(valid.all()):  # a plain prefill: the fused causal kernel, no L x L mask
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        T, L = q.shape[2], k.shape[2]
        arrival = torch.arange(L, device=q.device)
        query_arrival = arrival[L - T :, None]
        visible = (arrival[None, :] <= query_arrival) & (valid[:, None, :] | (arrival[None, :] == query_arrival))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=visible[:, None])
