"""FLASH-quad and FLASH (Hua et al. 2022): the gated attention unit, which replaces attention and FFN.

GAU: u = silu(W_u x), v = silu(W_v x) (width e D), z = silu(W_z x) (width s, shared by q and k through
per-dimension scale and offset), A = relu(q k^T / n)^2, out = W_o(u * (A v)). Single-headed by design.
FLASH-quad attends over the whole sequence (n = the sequence's real length). FLASH mixes chunks: the
quadratic part inside groups of G tokens (n = G), plus a linear part across groups; in causal mode the
linear part sums only strictly earlier groups (an inclusive sum would leak future tokens of the group).
The bidirectional linear part divides by the real length, the causal one by G (so causal FLASH is
prefix-consistent, FLASH-quad is not).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attention_zoo.mixers.base import (
    check_choice,
    check_flag,
    check_positive,
    real_tokens_first,
    valid_lengths,
    zero_padded,
)
from attention_zoo.ops import chunked, from_blocks, states_of_earlier_chunks
from attention_zoo.ops.block import block_valid
from attention_zoo.ops.precision import accumulation_dtype
from attention_zoo.positional import build_relative_positional


class OffsetScale(nn.Module):
    """``parts`` cheap per-dimension affine maps of the shared z: gamma * z + beta."""

    def __init__(self, dim: int, parts: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.randn(parts, dim) * 0.02 + 1.0)
        self.beta = nn.Parameter(torch.zeros(parts, dim))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (z[..., None, :] * self.gamma + self.beta).unbind(dim=-2)


def relu_squared_attention(q, k, v, *, causal: bool, key_valid: torch.Tensor, scale: torch.Tensor):
    """relu(q k^T * scale)^2 v with masked keys; ``key_valid`` ``[B, ..., Nk]`` broadcast over queries."""
    scores = torch.relu(torch.matmul(q, k.transpose(-1, -2)) * scale).square()
    mask = key_valid[..., None, :]
    if causal:
        n = q.shape[-2]
        mask = mask & torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
    return torch.matmul(scores * mask, v)


class GatedAttentionUnit(nn.Module):
    """One GAU layer; ``group_size=None`` is FLASH-quad, an integer is FLASH's mixed chunk attention."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        causal: bool,
        expansion: int = 2,
        qk_dim: int = 128,
        group_size: int | None = None,
        pos: str = "rope",
        bias: bool = True,
    ):
        super().__init__()
        check_positive("d_model", d_model)
        check_positive("expansion", expansion)
        check_positive("qk_dim", qk_dim)
        if group_size is not None:
            check_positive("group_size", group_size)
        check_choice("pos", pos, ["none", "rope"])
        if pos == "rope" and qk_dim % 2:
            raise ValueError(f"knob 'qk_dim' must be even with pos='rope' (it rotates pairs), got {qk_dim}")
        check_flag("causal", causal)
        check_flag("bias", bias)
        self.causal, self.group_size = causal, group_size
        self.to_uv = nn.Linear(d_model, 2 * expansion * d_model, bias=bias)
        self.to_z = nn.Linear(d_model, qk_dim, bias=bias)
        self.offset_scale = OffsetScale(qk_dim, parts=2 if group_size is None else 4)
        self.pos = build_relative_positional(pos, qk_dim)
        self.out_proj = nn.Linear(expansion * d_model, d_model, bias=bias)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x[B, N, D], padding_mask[B, N] | None -> [B, N, D]``; zero at padded positions."""
        return real_tokens_first(self.mix, x, padding_mask)

    def mix(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """``forward`` for a batch whose padding (if any) is on the right."""
        B, N, _ = x.shape
        key_valid = torch.ones(B, N, dtype=torch.bool, device=x.device) if padding_mask is None else ~padding_mask
        u, v = F.silu(self.to_uv(x)).chunk(2, dim=-1)
        z = F.silu(self.to_z(x))
        # One head: [B, 1, N, s] so that the positional and chunking helpers see the usual layout.
        parts = [self.pos(t[:, None]) for t in self.offset_scale(z)]
        v = zero_padded(v[:, None], key_valid)
        if self.group_size is None:
            lengths = valid_lengths(key_valid, B, N, x.device, accumulation_dtype(x))
            scale = (1.0 / lengths)[:, None, None, None]
            mixed = relu_squared_attention(*parts, v, causal=self.causal, key_valid=key_valid[:, None], scale=scale)
        else:
            mixed = self.mixed_chunk_attention(*parts, v, key_valid)
        out = self.out_proj(u * mixed[:, 0])
        return out if padding_mask is None else out.masked_fill(padding_mask[..., None], 0.0)

    def mixed_chunk_attention(self, quad_q, quad_k, lin_q, lin_k, v, key_valid) -> torch.Tensor:
        G, N = self.group_size, v.shape[-2]
        valid = block_valid(key_valid, N, G, v.device)[:, None]  # [B, 1, n_groups, G]
        qq, qk, lq, lk, vg = (chunked(t, G) for t in (quad_q, quad_k, lin_q, zero_padded(lin_k, key_valid), v))
        quadratic = relu_squared_attention(qq, qk, vg, causal=self.causal, key_valid=valid, scale=1.0 / G)
        # The linear part carries a running state across groups: accumulate it in (at least) fp32.
        dtype = accumulation_dtype(lq, lk, vg)
        with torch.autocast(device_type=v.device.type, enabled=False):
            lq, lk, vg, lin_k, v = (t.to(dtype) for t in (lq, lk, vg, lin_k, v))
            if self.causal:
                linear = torch.matmul(lq, states_of_earlier_chunks(lk, vg) / G)
            else:
                lengths = valid_lengths(key_valid, v.shape[0], N, v.device, dtype)[:, None, None, None]
                state = torch.matmul(lin_k.transpose(-1, -2), v) / lengths  # v is zero at padding
                linear = torch.matmul(lq, state[:, :, None])
        return from_blocks(quadratic + linear.to(quadratic.dtype), N)
