"""Kernel linear attention with a feature map, normalised: ``O = phi(Q)(phi(K)^T V) / (phi(Q) . sum_j phi(K_j) + eps)``.

One mixer per feature map (``attention_zoo/ops/feature_maps.py``), on the chunked linear attention of
``attention_zoo/ops/linear.py`` (the path of ``elu``): causal in chunks with the normaliser as one more value
column, bidirectional over all real keys (Katharopoulos et al.'s non-causal form), decoding from the running
d_phi x (d_v + 1) state.

- ``BasedLinearAttention`` (Based, Arora et al. 2024): q and k projected to ``feature_dim`` per head (16 in the
  paper), phi = the second-order Taylor expansion of exp(q . k / sqrt(d')), ``1 + s + s^2 / 2``; no bias, eps 1e-12
  (the authors' ``LinearAttention``). Only Based's linear attention: its sliding-window attention and short
  convolutions are other layers of its hybrid model.
- ``HedgehogAttention`` (Hedgehog, Zhang et al. 2024): phi(x) = [softmax(x W + b), softmax(-(x W + b))] with a
  trainable W (d x d', ``feature_dim`` d' = d by default) and b per head, one map for queries and one for keys,
  initialised to the identity and zero (the paper's code); eps 1e-12 (the authors' follow-up code).
- ``ReluAttention`` and ``SquaredReluAttention``: phi = relu, relu^2 (eps 1e-6, as 1+elu).

Features are computed in fp32 (float64 stays float64) with autocast off, whatever the input's dtype.
"""
from __future__ import annotations

import torch
from torch import nn

from attention_zoo.maps import AttentionMap, feature_map_map
from attention_zoo.mixers.base import MultiHeadMixer, check_positive, check_real, zero_padded
from attention_zoo.mixers.kernel import normalized_step
from attention_zoo.ops import feature_maps
from attention_zoo.ops.linear import normalized_linear_attention
from attention_zoo.ops.precision import accumulation_dtype, autocast_off


class FeatureMapAttention(MultiHeadMixer):
    """The shared mixer; a subclass implements ``phi`` (and ``feature_width``)."""

    def __init__(self, d_model: int, n_heads: int, causal: bool, *, eps: float, chunk_size: int, bias: bool):
        super().__init__(d_model, n_heads, causal, bias)
        check_positive("chunk_size", chunk_size)
        # > 0: a fully padded row (or ReLU features that miss every key) has a zero row sum
        check_real("eps", eps, low=0.0, include_low=False)
        self.eps, self.chunk_size = eps, chunk_size

    def phi(self, x: torch.Tensor, role: str) -> torch.Tensor:
        """The features of ``x [B, H, N, d]`` (``role``: "q" or "k") in ``x``'s dtype."""
        raise NotImplementedError

    @property
    def feature_width(self) -> int:
        raise NotImplementedError

    def features(self, q, k, key_valid) -> tuple[torch.Tensor, torch.Tensor]:
        """phi(q), phi(k) in fp32 or wider, autocast off; padded keys' features zero."""
        with autocast_off(q.device):
            q, k = (t.to(accumulation_dtype(t)) for t in (q, k))
            return self.phi(q, "q"), zero_padded(self.phi(k, "k"), key_valid)

    def attend(self, q, k, v, key_valid, x) -> torch.Tensor:
        q, k = self.features(q, k, key_valid)
        return normalized_linear_attention(q, k, v, causal=self.causal, chunk_size=self.chunk_size, eps=self.eps)

    def attend_step(self, q, k, v, valid, positions, state, x) -> torch.Tensor:
        q, k = self.features(q, k, valid)
        return normalized_step(q, k, v, state, self.chunk_size, lambda den: den + self.eps)

    def attention_map(self, x: torch.Tensor, key_valid: torch.Tensor | None) -> AttentionMap:
        """The N x N attention this mixer implies (analysis only): attention_zoo.maps.feature_map_map."""
        q, k, v = self.project_qkv(x)
        q, k = self.features(q, k, key_valid)
        return feature_map_map(q, k, v, key_valid, causal=self.causal, eps=self.eps)

    def feature_products(self, n: int) -> float:
        """Forward FLOPs of the feature maps' own matrix products per sequence (Hedgehog's W)."""
        return 0.0

    def core_products(self, n: int) -> tuple[float | None, float]:
        """Forward FLOPs of the core per sequence (bidirectional): phi(K)^T [V, 1] and phi(Q) S, features of width
        m; plus the feature maps' products."""
        m, d = self.feature_width, self.head_dim
        return self.n_heads * 2 * 2 * n * m * (d + 1) + self.feature_products(n), 0.0


class BasedLinearAttention(FeatureMapAttention):
    """Based's linear attention (see the module docstring): Taylor features of q, k of ``feature_dim`` per head."""

    def __init__(self, d_model: int, n_heads: int, causal: bool, feature_dim: int = 16, eps: float = 1e-12,
                 chunk_size: int = 64, bias: bool = False):
        super().__init__(d_model, n_heads, causal, eps=eps, chunk_size=chunk_size, bias=bias)
        check_positive("feature_dim", feature_dim)
        self.feature_dim = feature_dim
        self.q_proj = nn.Linear(d_model, n_heads * feature_dim, bias=bias)
        self.k_proj = nn.Linear(d_model, n_heads * feature_dim, bias=bias)
        rows, cols = feature_maps.taylor_exp_pairs(feature_dim)
        self.register_buffer("pair_rows", rows, persistent=False)  # integers: they follow .to(device) only
        self.register_buffer("pair_cols", cols, persistent=False)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.n_heads, -1)).transpose(1, 2)  # q, k: feature_dim wide; v: d wide

    def phi(self, x, role):
        return feature_maps.taylor_exp(x, self.pair_rows, self.pair_cols)

    @property
    def feature_width(self) -> int:
        return 1 + self.feature_dim + self.feature_dim * (self.feature_dim + 1) // 2

    def forward_products(self, n: int, scope: str = "mixer") -> tuple[float | None, float]:
        """The core, plus (``scope="mixer"``) the projections: q and k to ``feature_dim`` per head, v and out D x D."""
        core, constant = self.core_products(n)
        if scope == "attention":
            return core, constant
        width = self.d_model
        return core + 2 * n * width * (2 * self.n_heads * self.feature_dim + 2 * width), constant


class HedgehogMap(nn.Module):
    """x W_h + b_h per head h (``weight [H, d, d']``, ``bias [H, d']``), initialised to the identity and zero."""

    def __init__(self, n_heads: int, head_dim: int, feature_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.eye(head_dim, feature_dim).expand(n_heads, -1, -1).clone())
        self.bias = nn.Parameter(torch.zeros(n_heads, feature_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return feature_maps.hedgehog(x, self.weight, self.bias)


class HedgehogAttention(FeatureMapAttention):
    """Hedgehog (see the module docstring): a learned map per head, one for queries and one for keys."""

    def __init__(self, d_model: int, n_heads: int, causal: bool, feature_dim: int | None = None, eps: float = 1e-12,
                 chunk_size: int = 64, bias: bool = True):
        super().__init__(d_model, n_heads, causal, eps=eps, chunk_size=chunk_size, bias=bias)
        if feature_dim is not None:
            check_positive("feature_dim", feature_dim)
        self.feature_dim = self.head_dim if feature_dim is None else feature_dim
        self.q_map = HedgehogMap(n_heads, self.head_dim, self.feature_dim)
        self.k_map = HedgehogMap(n_heads, self.head_dim, self.feature_dim)

    def phi(self, x, role):
        return (self.q_map if role == "q" else self.k_map)(x)

    @property
    def feature_width(self) -> int:
        return 2 * self.feature_dim

    def feature_products(self, n: int) -> float:
        return 2 * self.n_heads * 2 * n * self.head_dim * self.feature_dim  # x W for q and for k


class ReluAttention(FeatureMapAttention):
    """phi = relu (see the module docstring)."""

    def __init__(self, d_model: int, n_heads: int, causal: bool, eps: float = 1e-6, chunk_size: int = 64,
                 bias: bool = True):
        super().__init__(d_model, n_heads, causal, eps=eps, chunk_size=chunk_size, bias=bias)

    def phi(self, x, role):
        return feature_maps.relu(x)

    @property
    def feature_width(self) -> int:
        return self.head_dim


class SquaredReluAttention(ReluAttention):
    """phi = relu^2 (see the module docstring)."""

    def phi(self, x, role):
        return feature_maps.squared_relu(x)
