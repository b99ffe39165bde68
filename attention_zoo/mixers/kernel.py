"""Kernel linear attention with a row-sum denominator: 1+elu (Katharopoulos et al.) and cosFormer."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attention_zoo.decoding import linear_step
from attention_zoo.maps import AttentionMap, cosformer_map, elu_map
from attention_zoo.mixers.base import MultiHeadMixer, check_flag, check_positive, check_real, valid_lengths, zero_padded
from attention_zoo.ops import elu_plus_one, linear_attention, normalized_linear_attention
from attention_zoo.ops.precision import accumulation_dtype


class EluLinearAttention(MultiHeadMixer):
    """phi = 1 + elu; O = phi(Q)(phi(K)^T V) / (phi(Q) . sum phi(K) + eps).

    ``normalize=False`` drops the denominator (Table 1's "without scaling" ablation, no norm either).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        causal: bool,
        normalize: bool = True,
        eps: float = 1e-6,
        chunk_size: int = 64,
        bias: bool = True,
    ):
        super().__init__(d_model, n_heads, causal, bias)
        check_positive("chunk_size", chunk_size)
        check_flag("normalize", normalize)
        check_real("eps", eps, low=0.0)
        self.normalize, self.eps, self.chunk_size = normalize, eps, chunk_size

    def attend(self, q, k, v, key_valid, x) -> torch.Tensor:
        q, k = elu_plus_one(q), zero_padded(elu_plus_one(k), key_valid)
        if not self.normalize:
            return linear_attention(q, k, v, causal=self.causal, chunk_size=self.chunk_size)
        return normalized_linear_attention(q, k, v, causal=self.causal, chunk_size=self.chunk_size, eps=self.eps)

    def attention_map(self, x: torch.Tensor, key_valid: torch.Tensor | None) -> AttentionMap:
        """The N x N attention this mixer implies (analysis only): attention_zoo.maps.elu_map."""
        q, k, v = self.project_qkv(x)
        return elu_map(q, k, v, key_valid, causal=self.causal, normalize=self.normalize, eps=self.eps)

    def core_products(self, n: int) -> tuple[float | None, float]:
        """Forward FLOPs of the core's matrix products per sequence (bidirectional): phi(K)^T [V, 1], phi(Q) S."""
        d = self.head_dim
        return self.n_heads * 2 * 2 * n * d * (d + 1 if self.normalize else d), 0.0

    def attend_step(self, q, k, v, valid, positions, state, x) -> torch.Tensor:
        q, k = elu_plus_one(q), zero_padded(elu_plus_one(k), valid)
        if not self.normalize:
            return linear_step(q, k, v, state, chunk_size=self.chunk_size).to(v.dtype)
        return normalized_step(q, k, v, state, self.chunk_size, lambda den: den + self.eps)


class CosFormerAttention(MultiHeadMixer):
    """cosFormer: ReLU features re-weighted by cos(pi/2 (i - j) / M), split into sin and cos halves.

    M is ``max_len`` when given (outputs are then prefix-consistent in causal mode), otherwise each
    sequence's own number of real tokens (the official code's choice: M = current length).
    Positions count from 1 as in the official code. Denominator clamped at ``eps`` like the official code.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        causal: bool,
        max_len: int | None = None,
        eps: float = 1e-6,
        chunk_size: int = 64,
        bias: bool = True,
    ):
        super().__init__(d_model, n_heads, causal, bias)
        check_positive("chunk_size", chunk_size)
        check_real("eps", eps, low=0.0, include_low=False)  # the denominator is clamped at eps
        if max_len is not None:
            check_positive("max_len", max_len)
        self.max_len, self.eps, self.chunk_size = max_len, eps, chunk_size

    def attend(self, q, k, v, key_valid, x) -> torch.Tensor:
        B, _, N, _ = q.shape
        if self.max_len is not None and N > self.max_len:
            raise ValueError(f"cosformer: sequence of {N} tokens exceeds its max_len={self.max_len}")
        dtype = accumulation_dtype(q, k)
        if self.max_len is None:
            horizon = valid_lengths(key_valid, B, N, q.device, dtype)
        else:
            horizon = torch.full((B,), float(self.max_len), device=q.device, dtype=dtype)
        positions = torch.arange(1, N + 1, device=q.device, dtype=dtype)
        angle = (math.pi / 2) * positions / horizon[:, None]  # [B, N]
        sin, cos = angle.sin()[:, None, :, None], angle.cos()[:, None, :, None]
        q, k = F.relu(q).to(dtype), zero_padded(F.relu(k), key_valid).to(dtype)
        q_feat = torch.cat([q * sin, q * cos], dim=-1)
        k_feat = torch.cat([k * sin, k * cos], dim=-1)
        return normalized_linear_attention(
            q_feat, k_feat, v, causal=self.causal, chunk_size=self.chunk_size, eps=self.eps, denominator="clamp"
        )

    def attention_map(self, x: torch.Tensor, key_valid: torch.Tensor | None) -> AttentionMap:
        """The N x N attention this mixer implies (analysis only): attention_zoo.maps.cosformer_map."""
        q, k, v = self.project_qkv(x)
        return cosformer_map(q, k, v, key_valid, causal=self.causal, max_len=self.max_len, eps=self.eps)

    def core_products(self, n: int) -> tuple[float | None, float]:
        """Forward FLOPs of the core's matrix products per sequence (bidirectional): features of width 2d."""
        d = self.head_dim
        return self.n_heads * 2 * 2 * n * (2 * d) * (d + 1), 0.0

    def attend_step(self, q, k, v, valid, positions, state, x) -> torch.Tensor:
        if self.max_len is None:
            raise ValueError("cosformer decodes only with a fixed horizon: set its max_len knob (attention.max_len; "
                             "with M = the current length every earlier output would change with each new token)")
        if int(positions.max()) >= self.max_len:
            raise ValueError(f"cosformer: position {int(positions.max())} exceeds its max_len={self.max_len}")
        dtype = accumulation_dtype(q, k)
        angle = ((math.pi / 2) * (positions + 1).to(dtype) / self.max_len)[:, None, :, None]  # [B, 1, T, 1]
        q, k = F.relu(q).to(dtype), zero_padded(F.relu(k), valid).to(dtype)
        q_feat = torch.cat([q * angle.sin(), q * angle.cos()], dim=-1)
        k_feat = torch.cat([k * angle.sin(), k * angle.cos()], dim=-1)
        return normalized_step(q_feat, k_feat, v, state, self.chunk_size, lambda den: den.clamp_min(self.eps))


def normalized_step(q, k, v, state, chunk_size: int, denominator) -> torch.Tensor:
    """Decoding's normalised linear attention: the normaliser rides along as a value column of ones."""
    out = linear_step(q, k, torch.cat([v, torch.ones_like(v[..., :1])], dim=-1).to(accumulation_dtype(v)), state,
                      chunk_size=chunk_size)
    return (out[..., :-1] / denominator(out[..., -1:])).to(v.dtype)
