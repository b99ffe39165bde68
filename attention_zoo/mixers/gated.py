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

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from attention_zoo.decoding import (
    DecodeState,
    advance,
    block_fill,
    history_step,
    last_real_tokens,
    new_state,
    one_token_at_a_time,
    positions_of_new,
    valid_of,
    write_slot,
)
from attention_zoo.maps import AttentionMap, gau_map
from attention_zoo.mixers.base import (
    check_choice,
    check_flag,
    check_positive,
    real_tokens_first,
    valid_lengths,
    zero_padded,
)
from attention_zoo.ops import chunked, from_blocks, relu_squared, states_of_earlier_chunks
from attention_zoo.ops.block import block_valid
from attention_zoo.ops.precision import accumulation_dtype, autocast_off
from attention_zoo.positional import build_relative_positional


class OffsetScale(nn.Module):
    """``parts`` cheap per-dimension affine maps of the shared z: gamma * z + beta, stacked as heads."""

    def __init__(self, dim: int, parts: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.randn(parts, dim) * 0.02 + 1.0)
        self.beta = nn.Parameter(torch.zeros(parts, dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z[B, N, s] -> [B, parts, N, s]``: one pass, and the positional encoding then takes all parts at
        once (split them with ``.split(1, dim=1)``)."""
        return torch.addcmul(self.beta[:, None], z[:, None], self.gamma[:, None])


def relu_squared_attention(q, k, v, *, causal: bool, key_valid: torch.Tensor | None, scale):
    """relu(q k^T * scale)^2 v; ``key_valid`` ``[B, ..., Nk]`` (broadcast over queries) masks keys, None: all
    real. The (positive) scale multiplies q, which is narrower than the scores."""
    scores = relu_squared(torch.matmul(q * scale, k.transpose(-1, -2)), lower_triangular=causal)
    if key_valid is not None:
        scores = scores * key_valid[..., None, :]
    return torch.matmul(scores, v)


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
        key_valid = None if padding_mask is None else ~padding_mask
        u, v = F.silu(self.to_uv(x)).chunk(2, dim=-1)
        # One head: [B, 1, N, s] so that the positional and chunking helpers see the usual layout.
        parts = self.pos(self.offset_scale(F.silu(self.to_z(x)))).split(1, dim=1)
        v = zero_padded(v[:, None], key_valid)
        if self.group_size is None:
            lengths = valid_lengths(key_valid, B, N, x.device, accumulation_dtype(x))
            scale = (1.0 / lengths)[:, None, None, None]
            valid = None if key_valid is None else key_valid[:, None]
            mixed = relu_squared_attention(*parts, v, causal=self.causal, key_valid=valid, scale=scale)
        else:
            mixed = self.mixed_chunk_attention(*parts, v, key_valid)
        out = self.out_proj(u * mixed.squeeze(1))  # squeeze, not [:, 0]: its backward copies nothing
        return out if padding_mask is None else out.masked_fill(padding_mask[..., None], 0.0)

    # -------------------------------------------------------------------------- facts for the harness
    def attention_map(self, x: torch.Tensor, key_valid: torch.Tensor | None) -> AttentionMap:
        """The N x N attention this unit implies (analysis only): attention_zoo.maps.gau_map."""
        _, v = F.silu(self.to_uv(x)).chunk(2, dim=-1)
        parts = self.pos(self.offset_scale(F.silu(self.to_z(x)))).split(1, dim=1)  # [B, 1, N, s] each
        return gau_map(v, parts, key_valid, causal=self.causal, group_size=self.group_size)

    def forward_products(self, n: int, scope: str = "mixer") -> tuple[float | None, float]:
        """Forward FLOPs per sequence: the dense layers (to_uv, to_z, out), then relu^2 attention over the
        sequence (FLASH-quad) or within groups of G plus the linear cross-group part (FLASH)."""
        D, e_d, s = self.to_uv.in_features, self.out_proj.in_features, self.to_z.out_features
        dense = 2 * n * D * 2 * e_d + 2 * n * D * s + 2 * n * e_d * D
        if self.group_size is None:
            return dense + 2 * n * n * s + 2 * n * n * e_d, 0.0
        G = self.group_size
        padded = -(-n // G) * G
        return dense + 2 * padded * G * s + 2 * padded * G * e_d + 2 * 2 * n * s * e_d, 0.0

    # ---------------------------------------------------------------------------- recurrent decoding
    def init_state(self, batch_size: int, *, device=None, dtype=None) -> DecodeState:
        if not self.causal:
            raise ValueError("GatedAttentionUnit was built with causal=False: only causal mixers decode")
        return new_state(batch_size, device, owner=self)

    def step(self, x: torch.Tensor, state: DecodeState, padding_mask: torch.Tensor | None = None):
        """FLASH: the cross-group linear state plus the current group's tokens (constant memory). FLASH-quad
        divides by the sequence length, so it decodes by recomputation: each new token gets the parallel
        output over its prefix (attention_zoo.decoding.history_step)."""
        if self.group_size is None:
            return history_step(self, x, state, padding_mask)
        valid = valid_of(x, padding_mask)
        if state.fresh:  # a parallel prefill, then its last partial group and the earlier groups' state
            out = self.forward(x, padding_mask)
            self._absorb(x, valid, state)
        elif x.shape[1] > 1:
            return one_token_at_a_time(self.step, x, state, padding_mask)
        else:
            out = self._step_one(x, valid, state)
        advance(state, valid)
        return out, state

    def _features(self, x, positions):
        u, v = F.silu(self.to_uv(x)).chunk(2, dim=-1)
        parts = self.pos(self.offset_scale(F.silu(self.to_z(x))), positions).split(1, dim=1)
        return u, v[:, None], parts  # v, parts: [B, 1, T, .]

    def _absorb(self, x, valid, state) -> None:
        G = self.group_size
        _, v, (_, quad_k, _, lin_k) = self._features(x, positions_of_new(state, valid))
        fill = block_fill(valid, G)
        in_groups = valid.long().sum(-1) - fill  # tokens of the completed groups
        dtype = accumulation_dtype(lin_k, v)
        earlier = valid & (valid.long().cumsum(-1) <= in_groups[:, None])
        k_earlier = zero_padded(lin_k, earlier).to(dtype)
        state.tensors.update(cross=torch.matmul(k_earlier.transpose(-1, -2), v.to(dtype)), fill=fill,
                             **{name: last_real_tokens(t, valid, fill, G) for name, t in
                                (("quad_k", quad_k), ("lin_k", lin_k), ("v", v))})

    def _step_one(self, x, valid, state) -> torch.Tensor:
        G, rows = self.group_size, valid[:, 0]
        u, v, (quad_q, quad_k, lin_q, lin_k) = self._features(x, positions_of_new(state, valid))
        if "fill" not in state.tensors:
            self._absorb(x[:, :0], valid[:, :0], state)
        tensors = state.tensors
        fill = tensors["fill"]
        full = (fill >= G) & rows  # this token starts a new group: fold the finished one into the state
        dtype = tensors["cross"].dtype
        folded = torch.matmul(tensors["lin_k"].to(dtype).transpose(-1, -2), tensors["v"].to(dtype))
        tensors["cross"] = tensors["cross"] + folded * full[:, None, None, None]
        slot = torch.where(fill >= G, torch.zeros_like(fill), fill)
        for name, value in (("quad_k", quad_k), ("lin_k", lin_k), ("v", v)):
            tensors[name] = write_slot(tensors[name] * ~full[:, None, None, None], value, slot, rows)
        tensors["fill"] = torch.where(rows, slot + 1, fill)
        visible = (torch.arange(G, device=x.device)[None, :] <= slot[:, None])[:, None]  # [B, 1, G]
        quadratic = relu_squared_attention(quad_q, tensors["quad_k"], tensors["v"], causal=False,
                                           key_valid=visible, scale=1.0 / G)
        linear = torch.matmul(lin_q.to(dtype), tensors["cross"] / G)
        out = self.out_proj(u * (quadratic + linear.to(quadratic.dtype))[:, 0])
        return out.masked_fill(~valid[..., None], 0.0)

    def mixed_chunk_attention(self, quad_q, quad_k, lin_q, lin_k, v, key_valid) -> torch.Tensor:
        G, N = self.group_size, v.shape[-2]
        # without padding no mask at all: the zeros that fill the last group add relu(0)^2 = 0
        valid = None if key_valid is None else block_valid(key_valid, N, G, v.device)[:, None]  # [B, 1, groups, G]
        qq, qk, lq, lk, vg = (chunked(t, G) for t in (quad_q, quad_k, lin_q, zero_padded(lin_k, key_valid), v))
        quadratic = relu_squared_attention(qq, qk, vg, causal=self.causal, key_valid=valid, scale=1.0 / G)
        # The linear part carries a running state across groups: accumulate it in (at least) fp32.
        dtype = accumulation_dtype(lq, lk, vg)
        with autocast_off(v.device):
            if self.causal:
                lq, lk, vg = (t.to(dtype) for t in (lq, lk, vg))
                linear = torch.matmul(lq, states_of_earlier_chunks(lk / G, vg))  # 1/G on the narrow keys
                return from_blocks(quadratic + linear.to(quadratic.dtype), N)
            lin_q, lin_k, v = (t.to(dtype) for t in (lin_q, lin_k, v))
            lengths = valid_lengths(key_valid, v.shape[0], N, v.device, dtype)[:, None, None, None]
            state = torch.matmul(lin_k.transpose(-1, -2), v) / lengths  # v is zero at padding
            # one state for every group: multiplied unchunked, since a broadcast over groups would copy it
            return from_blocks(quadratic, N) + torch.matmul(lin_q, state).to(quadratic.dtype)


# FLASH's builder: the unit with groups of G = 256 tokens (the paper's). A partial, so that its signature carries
# that default (the registry reads every knob's default off the builder's signature) and the unit's others.
FLASH = partial(GatedAttentionUnit, group_size=256)
