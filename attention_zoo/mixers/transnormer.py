"""TransNormer's two token mixers (Qin et al. 2022), with every knob of the paper's ablations."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from attention_zoo.decoding import block_fill, last_real_tokens, linear_step, write_slot
from attention_zoo.maps import AttentionMap, diag_map, norm_attention_map
from attention_zoo.mixers.base import MultiHeadMixer, check_choice, check_dropout, check_positive, zero_padded
from attention_zoo.norms import NORMS, build_norm
from attention_zoo.ops import (
    attention_within_blocks,
    block_valid,
    elu_plus_one,
    from_blocks,
    linear_attention,
    to_blocks,
)
from attention_zoo.positional import build_relative_positional

FEATURE_MAPS = {
    "elu": F.elu,  # T1: can be negative
    "1+elu": elu_plus_one,  # T2
    "relu": F.relu,
    "silu": F.silu,
}


def check_output_norm(norm: str, causal: bool) -> None:
    check_choice("norm", norm, sorted(NORMS))
    if norm == "batchnorm" and causal:
        raise ValueError(
            "norm='batchnorm' mixes statistics across positions, which leaks the future in a causal model; "
            f"valid choices for causal=True: {sorted(set(NORMS) - {'batchnorm'})}"
        )


class NormAttention(MultiHeadMixer):
    """O = Norm(phi(Q) (phi(K)^T V)): linear attention without the row-sum denominator.

    No 1/sqrt(d), no denominator, no epsilon; LRPE on phi(q), phi(k); heads merged, then one norm over
    the full width D (SimpleRMSNorm by default; BatchNorm in the authors' LRA runs); then out_proj.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        causal: bool,
        feature_map: str = "1+elu",
        norm: str = "srmsnorm",
        pos: str = "lrpe",
        chunk_size: int = 64,
        bias: bool = True,
    ):
        super().__init__(d_model, n_heads, causal, bias)
        check_choice("feature_map", feature_map, FEATURE_MAPS)
        check_output_norm(norm, causal)
        check_positive("chunk_size", chunk_size)
        self.feature_map, self.chunk_size = FEATURE_MAPS[feature_map], chunk_size
        self.pos = build_relative_positional(pos, self.head_dim)
        self.output_norm = build_norm(norm, d_model)

    def attend(self, q, k, v, key_valid, x) -> torch.Tensor:
        q = self.pos(self.feature_map(q))
        k = zero_padded(self.pos(self.feature_map(k)), key_valid)
        return linear_attention(q, k, v, causal=self.causal, chunk_size=self.chunk_size)

    def attention_map(self, x: torch.Tensor, key_valid: torch.Tensor | None) -> AttentionMap:
        """The N x N attention this mixer implies (analysis only): attention_zoo.maps.norm_attention_map."""
        q, k, v = self.project_qkv(x)
        q, k = self.pos(self.feature_map(q)), self.pos(self.feature_map(k))
        return norm_attention_map(q, k, v, key_valid, causal=self.causal)

    def core_products(self, n: int) -> tuple[float | None, float]:
        """Forward FLOPs of the core's matrix products per sequence (bidirectional): phi(K)^T V, then phi(Q) S."""
        return self.n_heads * 2 * 2 * n * self.head_dim**2, 0.0

    def attend_step(self, q, k, v, valid, positions, state, x) -> torch.Tensor:
        q = self.pos(self.feature_map(q), positions)
        k = zero_padded(self.pos(self.feature_map(k), positions), valid)
        return linear_step(q, k, v, state, chunk_size=self.chunk_size).to(v.dtype)


class DiagAttention(MultiHeadMixer):
    """Attention inside non-overlapping blocks of ``block_size`` tokens (no interaction between blocks).

    q scaled by d^-1/2; LRPE inside each block (positions restart at 0); causal: lower-triangular inside
    the block. ``inner="softmax"`` (T2, ``norm="none"``) or ``inner="relu"`` (T1, ``norm="srmsnorm"``).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        causal: bool,
        block_size: int = 64,
        inner: str = "softmax",
        norm: str = "none",
        pos: str = "lrpe",
        attn_dropout: float = 0.0,
        bias: bool = True,
    ):
        super().__init__(d_model, n_heads, causal, bias)
        check_positive("block_size", block_size)
        check_choice("inner", inner, ["softmax", "relu"])
        check_dropout(attn_dropout)
        check_output_norm(norm, causal)
        self.block_size, self.inner, self.attn_dropout = block_size, inner, attn_dropout
        self.pos = build_relative_positional(pos, self.head_dim)
        self.output_norm = build_norm(norm, d_model)

    def attend(self, q, k, v, key_valid, x) -> torch.Tensor:
        n, w = q.shape[-2], self.block_size
        qb = self.pos(to_blocks(q, w))  # [B, H, nb, w, d]; positions per block (scaled by d^-1/2 in the kernel)
        kb, vb = self.pos(to_blocks(k, w)), to_blocks(v, w)
        # no mask but the causal one where only the last block's tail is padding (no real query sees it)
        only_tail = key_valid is None and (self.causal or n % w == 0)
        valid = None if only_tail else block_valid(key_valid, n, w, q.device)
        dropout = self.attn_dropout if self.training else 0.0
        out = attention_within_blocks(qb, kb, vb, valid, causal=self.causal, inner=self.inner, dropout_p=dropout,
                                      scale=self.head_dim**-0.5)
        return from_blocks(out, n)

    def attention_map(self, x: torch.Tensor, key_valid: torch.Tensor | None) -> AttentionMap:
        """The N x N attention this mixer implies (analysis only): attention_zoo.maps.diag_map."""
        q, k, v = self.project_qkv(x)
        return diag_map(q, k, v, key_valid, causal=self.causal, block_size=self.block_size, inner=self.inner,
                        pos=self.pos)

    def core_products(self, n: int) -> tuple[float | None, float]:
        """Forward FLOPs of the core's matrix products per sequence (bidirectional):
        Q K^T and A V inside blocks of w tokens."""
        w = self.block_size
        return self.n_heads * 2 * 2 * (-(-n // w) * w) * w * self.head_dim, 0.0

    def position_rows(self, n: int) -> int:
        return -(-n // self.block_size) * self.block_size  # positions are applied to whole (padded) blocks

    # decoding: the state is the current block's keys (rotated by their place in the block) and values
    prefill_in_parallel = True

    def absorb(self, k, v, valid, positions, state) -> None:
        w = self.block_size
        fill = block_fill(valid, w)
        keys = last_real_tokens(k, valid, fill, w)
        state.tensors["k"] = self.pos(keys, torch.arange(w, device=k.device).expand(k.shape[0], w))
        state.tensors["v"] = last_real_tokens(v, valid, fill, w)
        state.tensors["fill"] = fill

    def attend_step(self, q, k, v, valid, positions, state, x) -> torch.Tensor:  # one token: q [B, H, 1, d]
        w, rows = self.block_size, valid[:, 0]
        if "k" not in state.tensors:
            state.tensors.update(k=k.new_zeros(*k.shape[:2], w, k.shape[-1]),
                                 v=v.new_zeros(*v.shape[:2], w, v.shape[-1]),
                                 fill=torch.zeros_like(state.count))
        fill = state.tensors["fill"]
        slot = torch.where(fill >= w, torch.zeros_like(fill), fill)  # a full block: this token starts the next
        keys = write_slot(state.tensors["k"], self.pos(k, slot[:, None]), slot, rows)
        values = write_slot(state.tensors["v"], v, slot, rows)
        state.tensors.update(k=keys, v=values, fill=torch.where(rows, slot + 1, fill))
        q = self.pos(q * self.head_dim**-0.5, slot[:, None])
        scores = torch.matmul(q, keys.transpose(-1, -2))  # [B, H, 1, w]
        visible = (torch.arange(w, device=q.device)[None, :] <= slot[:, None])[:, None, None]  # [B, 1, 1, w]
        if self.inner == "softmax":
            weights = scores.masked_fill(~visible, -torch.inf).softmax(-1)
        else:
            weights = torch.relu(scores) * visible
        return torch.matmul(weights, values)
