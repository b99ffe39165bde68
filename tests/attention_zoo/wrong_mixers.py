"""Mixers that break the contract on purpose, each in one way; the conformance checker must fail them, saying why.
Imported by the checker (``tests.attention_zoo.wrong_mixers:PeekAhead``), which registers them from their flags."""
from __future__ import annotations

import torch
import torch.nn.functional as F

import attention_zoo


@attention_zoo.register("wrong_peek_ahead", linear_causal=False, linear_bidirectional=False)
class PeekAhead(attention_zoo.MultiHeadMixer):
    """Causal softmax attention whose mask lets every token see one token ahead."""

    def attend(self, q, k, v, key_valid, x):
        n = q.shape[-2]
        allowed = torch.ones(n, n, dtype=torch.bool, device=q.device).tril(diagonal=1 if self.causal else n)
        if key_valid is not None:
            allowed = allowed & (key_valid[:, None, None, :] | torch.eye(n, dtype=torch.bool, device=q.device))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


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
