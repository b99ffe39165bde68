"""Mamba-2 (Dao & Gu 2024): the SSD layer, on the decayed linear attention of ``attention_zoo/ops/decay.py``.

As the authors' ``Mamba2`` with ``ngroups = 1``, ``E = expand * D`` channels in H heads of P = E / H:
- the input projection gives z (E, the gate), x (E), B and C (``d_state`` each, shared by all heads) and dt (one
  per head); x, B and C go through one short causal depthwise convolution (``conv_size`` taps, with a bias) and
  silu;
- dt = softplus(dt + dt_bias), A = -exp(A_log) per head (A drawn uniformly in [1, 16], dt log-uniformly in
  [1e-3, 0.1]), D per head (ones);
- the SSD, per head: ``h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T``, ``y_t = h_t C_t + D x_t``; i.e. the decayed
  linear attention with q = C, k = B, v = dt x and the scalar log-decay g = dt A;
- ``y = RMSNorm(y * silu(z))`` over E (gate before the norm, eps 1e-5, with a gain), then the output projection
  E -> D.
The fused input projection is written as five ``nn.Linear`` (x is ``v_proj``, B ``k_proj``, C ``q_proj``, the roles
of the SSD duality), the one convolution of [x, B, C] is depthwise, so both are the same function. Knob ``bias``:
the projections' biases (the authors': none). Here a token mixer in the zoo's block (with its channel mixer), not
the authors' block without an MLP at twice the depth; ``n_heads`` is the zoo's, so P = E / H (the authors fix P =
64 and derive H). A_log, dt_bias and D are ordinary parameters (the authors exempt them from weight decay).
Bidirectional (our extension): the SSD's symmetric decay exp(-|G_i - G_j|) (``decayed_linear_attention``), as the
other successors; the convolution stays causal.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attention_zoo.decoding import DecodeState, advance, valid_of
from attention_zoo.maps import AttentionMap, ssd_map
from attention_zoo.mixers.base import MultiHeadMixer, check_positive, zero_padded
from attention_zoo.mixers.delta import NORM_EPS, ShortConvolution, check_non_negative, inverse_softplus_dt
from attention_zoo.norms import RMSNorm
from attention_zoo.ops.decay import causal_decayed_linear_attention, decayed_linear_attention
from attention_zoo.ops.precision import accumulation_dtype


class Mamba2(MultiHeadMixer):
    """Mamba-2's SSD layer (see the module docstring)."""

    def __init__(self, d_model: int, n_heads: int, causal: bool, chunk_size: int = 64, expand: int = 2,
                 d_state: int = 64, conv_size: int = 4, bias: bool = False):
        super().__init__(d_model, n_heads, causal, bias)
        for knob, value in (("chunk_size", chunk_size), ("expand", expand), ("d_state", d_state)):
            check_positive(knob, value)
        check_non_negative("conv_size", conv_size)
        self.chunk_size, self.d_state, self.conv_size = chunk_size, d_state, conv_size
        self.inner = expand * d_model
        self.head_dim = self.inner // n_heads
        self.z_proj = nn.Linear(d_model, self.inner, bias=bias)
        self.v_proj = nn.Linear(d_model, self.inner, bias=bias)  # x
        self.k_proj = nn.Linear(d_model, d_state, bias=bias)  # B
        self.q_proj = nn.Linear(d_model, d_state, bias=bias)  # C
        self.dt_proj = nn.Linear(d_model, n_heads, bias=bias)
        self.conv = ShortConvolution(self.inner + 2 * d_state, conv_size, bias=True) if conv_size else None
        self.A_log = nn.Parameter(torch.log(torch.empty(n_heads).uniform_(1, 16)))
        self.dt_bias = nn.Parameter(inverse_softplus_dt(n_heads))
        self.D = nn.Parameter(torch.ones(n_heads))
        self.output_norm = RMSNorm(self.inner, eps=NORM_EPS)
        self.out_proj = nn.Linear(self.inner, d_model, bias=bias)

    # ------------------------------------------------------------------------------------------ pieces
    def ssd_inputs(self, x: torch.Tensor, valid: torch.Tensor | None, state: DecodeState | None = None):
        """x's heads ``[B, H, N, P]``, B and C ``[B, 1, N, d_state]`` (B zero at padded tokens), dt and the
        log-decays dt A ``[B, H, N]`` (zero at padded tokens). Decoding: the convolution's inputs in ``state``."""
        xbc = torch.cat([self.v_proj(x), self.k_proj(x), self.q_proj(x)], dim=-1)
        if self.conv is not None:
            xbc = self.conv(xbc) if state is None else self.conv.step(xbc, valid, state, "conv")
        xs, b, c = F.silu(xbc).split([self.inner, self.d_state, self.d_state], dim=-1)
        raw = self.dt_proj(x).to(accumulation_dtype(x))
        dt = F.softplus(raw + self.dt_bias.to(raw.dtype)).transpose(1, 2)  # [B, H, N]
        g = -torch.exp(self.A_log).to(dt.dtype)[:, None] * dt
        if valid is not None:
            g = g * valid[:, None, :].to(g.dtype)
        return self.split_heads(xs), zero_padded(b[:, None], valid), c[:, None], dt, g

    def ssd(self, xs, b, c, dt, g, state: DecodeState | None = None) -> torch.Tensor:
        """``y [B, H, N, P]`` = the SSD + D x (decoding: from and into ``state.tensors["S"]``)."""
        v = xs.to(dt.dtype) * dt[..., None]
        if state is None:  # C and B with one head, shared by all: their in-chunk product is computed once
            y = decayed_linear_attention(c, b, v, g, causal=self.causal, chunk_size=self.chunk_size)
        else:
            y, state.tensors["S"] = causal_decayed_linear_attention(
                c, b, v, g, chunk_size=self.chunk_size, initial_state=state.tensors.get("S"))
        return (y + self.D.to(y.dtype)[:, None, None] * xs.to(y.dtype)).to(xs.dtype)

    def project_out(self, mixed: torch.Tensor, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """Mamba-2's order: the gate first, then the norm (``norm_before_gate=False``, in fp32 at least), then the
        projection."""
        gated = mixed.to(accumulation_dtype(mixed)) * F.silu(self.z_proj(x))
        return self.out_proj(self.output_norm(gated, padding_mask))

    def project_qkv(self, x: torch.Tensor):
        raise NotImplementedError("Mamba-2 has no q/k/v heads: see ssd_inputs")

    # ------------------------------------------------------------------------------------ the mixer
    def mix(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        valid = None if padding_mask is None else ~padding_mask
        y = self.ssd(*self.ssd_inputs(x, valid))
        out = self.project_out(y.transpose(1, 2).flatten(-2), x, padding_mask)
        return out if padding_mask is None else out.masked_fill(padding_mask[..., None], 0.0)

    def step(self, x: torch.Tensor, state: DecodeState,
             padding_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, DecodeState]:
        valid = valid_of(x, padding_mask)
        y = self.ssd(*self.ssd_inputs(x, valid, state), state=state)
        out = self.project_out(y.transpose(1, 2).flatten(-2), x, padding_mask).masked_fill(~valid[..., None], 0.0)
        advance(state, valid)
        return out, state

    def attention_map(self, x: torch.Tensor, key_valid: torch.Tensor | None) -> AttentionMap:
        """The N x N SSD matrix plus D (analysis only): attention_zoo.maps.ssd_map; values: x's heads."""
        xs, b, c, dt, g = self.ssd_inputs(x, key_valid)
        return ssd_map(c, b, xs, dt, g, self.D, key_valid, causal=self.causal)

    def forward_products(self, n: int, scope: str = "mixer") -> tuple[float | None, float]:
        """Forward FLOPs per sequence (bidirectional: two chunked passes): per head and pass, the in-chunk C B^T
        and A (dt x), each chunk's B^T (dt x) and C S; plus (``scope="mixer"``) the projections D -> 2E + 2 d_state
        + H and E -> D and the convolution."""
        c, p, s, h, width = self.chunk_size, self.head_dim, self.d_state, self.n_heads, self.d_model
        core = h * 2 * (2 * n * c * s + 2 * n * c * p + 2 * 2 * n * s * p)
        if scope == "attention":
            return core, 0.0
        projections = 2 * n * width * (2 * self.inner + 2 * s + h) + 2 * n * self.inner * width
        return core + projections + 2 * n * (self.inner + 2 * s) * self.conv_size, 0.0
