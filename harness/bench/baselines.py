"""Two naive linear attentions a user might write first, kept as baselines for the kernel benchmark.

Both are TransNormer's NormAttention core without its norm and positions: phi = 1 + elu on q and k, no
denominator, o_i = sum_j (phi(q_i) . phi(k_j)) v_j over j <= i (causal) or all j (bidirectional).
- ``naive_masked_product``: (phi(Q) phi(K)^T * M) V with the causal mask M: an N x N matrix per head.
- ``naive_outer_cumsum``: the running state as a cumulative sum of the per-token outer products
  phi(k_s) v_s^T, read by each query: an N x d x d tensor per head (bidirectionally, their plain sum).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from attention_zoo.mixers.base import MultiHeadMixer, zero_padded


def positive_features(q: torch.Tensor, k: torch.Tensor, key_valid: torch.Tensor | None):
    return 1 + F.elu(q), zero_padded(1 + F.elu(k), key_valid)


class NaiveMaskedProduct(MultiHeadMixer):
    """Linear attention through the materialised, masked N x N matrix."""

    def attend(self, q, k, v, key_valid, x) -> torch.Tensor:
        q, k = positive_features(q, k, key_valid)
        scores = torch.matmul(q, k.transpose(-1, -2))  # [B, H, N, N]
        if self.causal:
            n = q.shape[-2]
            scores = scores * torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
        return torch.matmul(scores, v)


class NaiveOuterCumsum(MultiHeadMixer):
    """Linear attention through a cumulative sum of per-token outer products (an N x d x d tensor)."""

    def attend(self, q, k, v, key_valid, x) -> torch.Tensor:
        q, k = positive_features(q, k, key_valid)
        outer = k[..., :, None] * v[..., None, :]  # [B, H, N, d, d]
        states = outer.cumsum(dim=-3) if self.causal else outer.sum(dim=-3, keepdim=True)
        return torch.matmul(q[..., None, :], states).squeeze(-2)


BASELINES = {"naive_masked_product": NaiveMaskedProduct, "naive_outer_cumsum": NaiveOuterCumsum}
