"""Mixers that break the contract on purpose, each in one way; the conformance checker must fail them, saying why.
Imported by the checker (``tests.attention_zoo.wrong_mixers:PeekAhead``), which registers them from their flags.
``reference`` is a float64 reference for all of them: what a correct softmax mixer of their weights gives."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import attention_zoo

LATE_LEAK_FROM = 64  # LatePeek's first position that sees a future token: past the old checker's cuts (<= 63)


def softmax_attention(q, k, v, allowed: torch.Tensor, key_valid: torch.Tensor | None) -> torch.Tensor:
    """SDPA under ``allowed [N, N]`` and the keys of ``key_valid [B, N]`` (a padded query still sees itself)."""
    if key_valid is not None:
        eye = torch.eye(q.shape[-2], dtype=torch.bool, device=q.device)
        allowed = allowed & (key_valid[:, None, None, :] | eye)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


def visible(n: int, causal: bool, device=None) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool, device=device).tril() if causal else torch.ones(n, n, dtype=torch.bool,
                                                                                                 device=device)


def sinusoid(n: int, d: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """``[n, d]`` absolute sinusoidal positions 0..n-1."""
    position = torch.arange(n, dtype=dtype, device=device)[:, None]
    frequency = torch.exp(torch.arange(0, d, 2, dtype=dtype, device=device) * (-math.log(1e4) / d))
    angles = position * frequency
    return torch.stack([angles.sin(), angles.cos()], -1).flatten(-2)[:, :d]


@attention_zoo.register("wrong_peek_ahead", linear_causal=False, linear_bidirectional=False)
class PeekAhead(attention_zoo.MultiHeadMixer):
    """Causal softmax attention whose mask lets every token see one token ahead."""

    def attend(self, q, k, v, key_valid, x):
        n = q.shape[-2]
        allowed = torch.ones(n, n, dtype=torch.bool, device=q.device).tril(diagonal=1 if self.causal else n)
        if key_valid is not None:
            allowed = allowed & (key_valid[:, None, None, :] | torch.eye(n, dtype=torch.bool, device=q.device))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


@attention_zoo.register("wrong_late_peek", linear_causal=False, linear_bidirectional=False)
class LatePeek(attention_zoo.MultiHeadMixer):
    """Causal softmax attention in which every position from 64 on also sees the next token (as a chunked kernel
    whose later chunks are off by one would)."""

    def attend(self, q, k, v, key_valid, x):
        n = q.shape[-2]
        allowed = visible(n, self.causal, q.device)
        if self.causal:
            i = torch.arange(n, device=q.device)
            allowed = allowed | ((i[None, :] == i[:, None] + 1) & (i[:, None] >= LATE_LEAK_FROM))
        return softmax_attention(q, k, v, allowed, key_valid)


@attention_zoo.register("wrong_chunk_edge_peek", linear_causal=False, linear_bidirectional=False)
class ChunkEdgePeek(attention_zoo.MultiHeadMixer):
    """Causal softmax attention in chunks whose last token also sees the next chunk's first (an off-by-one at
    chunk edges): at the default chunk_size no N under 512 shows it, a small chunk_size does."""

    def __init__(self, d_model: int, n_heads: int, causal: bool, chunk_size: int = 512, bias: bool = True):
        super().__init__(d_model, n_heads, causal, bias)
        self.chunk_size = chunk_size

    def attend(self, q, k, v, key_valid, x):
        n = q.shape[-2]
        allowed = visible(n, self.causal, q.device)
        if self.causal:
            i = torch.arange(n, device=q.device)
            allowed = allowed | ((i[None, :] == i[:, None] + 1) & ((i[:, None] + 1) % self.chunk_size == 0))
        return softmax_attention(q, k, v, allowed, key_valid)


@attention_zoo.register("wrong_gradient_peek", linear_causal=False, linear_bidirectional=False)
class GradientPeek(attention_zoo.MultiHeadMixer):
    """Causal softmax attention plus a term that is zero in value but passes each token the next one's gradient
    (v_{t+1} - detach(v_{t+1})): replacing future tokens changes no output, the gradient still leaks."""

    def attend(self, q, k, v, key_valid, x):
        n = q.shape[-2]
        ahead = v.roll(-1, dims=-2)
        return softmax_attention(q, k, v, visible(n, self.causal, q.device), key_valid) + (ahead - ahead.detach())


@attention_zoo.register("wrong_length_scaled", linear_causal=False, linear_bidirectional=False)
class LengthScaled(attention_zoo.MultiHeadMixer):
    """Causal softmax attention scaled by log(1 + N), N the total length: causal for a fixed N, but the output at
    t changes with how many tokens follow (not prefix-consistent, unless registered so)."""

    def attend(self, q, k, v, key_valid, x):
        n = q.shape[-2]
        return math.log1p(n) * softmax_attention(q, k, v, visible(n, self.causal, q.device), key_valid)


@attention_zoo.register("wrong_right_padding_only", linear_causal=False, linear_bidirectional=False)
class RightPaddingOnly(attention_zoo.MultiHeadMixer):
    """Softmax attention with absolute positions on q and k, counted from the start of the row: right only when
    the real tokens come first. Padded keys are masked, so no padded value leaks; the positions are wrong
    under left or scattered padding (a real token's position is its index among the real ones)."""

    absolute_positions = True

    def forward(self, x, padding_mask=None):
        return self.mix(x, padding_mask)  # no real_tokens_first: assumes right padding

    def attend(self, q, k, v, key_valid, x):
        position = sinusoid(q.shape[-2], self.head_dim, q.dtype, q.device)
        return softmax_attention(q + position, k + position, v, visible(q.shape[-2], self.causal, q.device),
                                 key_valid)


@attention_zoo.register("wrong_row0_mask", linear_causal=False, linear_bidirectional=False)
class RowZeroMask(attention_zoo.MultiHeadMixer):
    """Softmax attention that masks every row's keys with batch row 0's padding (a broadcasting slip)."""

    def attend(self, q, k, v, key_valid, x):
        row0 = None if key_valid is None else key_valid[:1].expand_as(key_valid)
        return softmax_attention(q, k, v, visible(q.shape[-2], self.causal, q.device), row0)


@attention_zoo.register("wrong_leaky_padding", linear_causal=False, linear_bidirectional=False)
class LeakyPadding(attention_zoo.MultiHeadMixer):
    """Softmax attention that ignores the padding mask: padded keys reach real tokens."""

    def forward(self, x, padding_mask=None):
        return self.mix(x, None)

    def attend(self, q, k, v, key_valid, x):
        return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)


@attention_zoo.register("wrong_fake_linear", linear_causal=True, linear_bidirectional=True)
class FakeLinear(attention_zoo.MultiHeadMixer):
    """1+elu linear attention computed through the N x N matrix, while declaring itself linear."""

    def attend(self, q, k, v, key_valid, x):
        q, k = F.elu(q) + 1, F.elu(k) + 1
        if key_valid is not None:
            k = k * key_valid[:, None, :, None]
        scores = q @ k.transpose(-1, -2)  # [B, H, N, N]
        if self.causal:
            scores = scores.tril()
        return scores @ v / scores.sum(-1, keepdim=True).clamp_min(1e-9)


def reference(module, x, padding_mask, causal):
    """float64, one sequence at a time (its real tokens alone, at positions 0..n-1): softmax attention with
    the module's projections, and its absolute positions where it has them."""
    out = torch.zeros_like(x)
    h, d = module.n_heads, module.head_dim
    for b in range(x.shape[0]):
        real = torch.arange(x.shape[1]) if padding_mask is None else (~padding_mask[b]).nonzero()[:, 0]
        q, k, v = (proj(x[b, real]).view(-1, h, d).transpose(0, 1) for proj in
                   (module.q_proj, module.k_proj, module.v_proj))
        if getattr(module, "absolute_positions", False):
            q, k = q + sinusoid(len(real), d, x.dtype), k + sinusoid(len(real), d, x.dtype)
        scores = (q @ k.transpose(-1, -2) / d**0.5).masked_fill(~visible(len(real), causal), float("-inf"))
        out[b, real] = module.out_proj((scores.softmax(-1) @ v).transpose(0, 1).reshape(len(real), -1))
    return out
