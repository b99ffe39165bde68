"""Sliding-window softmax attention: each token attends to the ``window`` nearest tokens (causal: itself and the
``window - 1`` before it). A banded mask over SDPA, so its cost is quadratic in N, and it says so."""
import torch
import torch.nn.functional as F

import attention_zoo


@attention_zoo.register("sliding_window", linear_causal=False, linear_bidirectional=False,
                        description="softmax attention within a sliding window (banded mask)")
class SlidingWindowAttention(attention_zoo.MultiHeadMixer):
    def __init__(self, d_model: int, n_heads: int, causal: bool, window: int = 16, bias: bool = True):
        super().__init__(d_model, n_heads, causal, bias)
        self.window = window

    def attend(self, q, k, v, key_valid, x):  # [B, H, N, d]; key_valid [B, N] or None
        offset = torch.arange(q.shape[-2], device=q.device)
        offset = offset[:, None] - offset[None, :]  # query - key
        allowed = (offset < self.window) & ((offset >= 0) if self.causal else (offset > -self.window))
        if key_valid is not None:  # a padded query still sees itself, so no row is empty
            allowed = allowed & (key_valid[:, None, None, :] | (offset == 0))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


def reference(module, x, padding_mask, causal):
    """float64, one sequence at a time, the full N x N attention with the window written out."""
    out = torch.zeros_like(x)
    for b in range(x.shape[0]):
        real = torch.arange(x.shape[1]) if padding_mask is None else (~padding_mask[b]).nonzero()[:, 0]
        h, d = module.n_heads, module.head_dim
        q, k, v = (proj(x[b, real]).view(-1, h, d).transpose(0, 1) for proj in
                   (module.q_proj, module.k_proj, module.v_proj))
        i = torch.arange(len(real))
        dist = i[:, None] - i[None, :]
        visible = (dist >= 0) & (dist < module.window) if causal else dist.abs() < module.window
        scores = (q @ k.transpose(-1, -2) / d**0.5).masked_fill(~visible, float("-inf"))
        out[b, real] = module.out_proj((scores.softmax(-1) @ v).transpose(0, 1).reshape(len(real), -1))
    return out
