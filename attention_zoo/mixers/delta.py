"""The delta rule: DeltaNet (Yang et al. 2024) and Gated DeltaNet (Yang et al. 2025), on ``attention_zoo/ops/delta.py``.

Both, per head (d = D / H), as flash-linear-attention's layers (``DeltaNet``, ``GatedDeltaNet``) define them:
- q, k, v = silu(conv(X W)): a short causal depthwise convolution of each projection (``conv_size`` taps, no
  bias; ``conv_size: 0`` leaves it out), then silu;
- q and k L2-normalised per head (``x / sqrt(|x|^2 + 1e-6)``), q then scaled by d^-1/2;
- beta_t = sigmoid(x_t W_beta), one per head and token;
- ``S_t = alpha_t S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T``, ``o_t = S_t q_t`` (alpha_t = 1: DeltaNet);
- a per-head RMSNorm with a gain (eps 1e-5), then (Gated DeltaNet only) the gate silu(X W_g), then W_o.
Gated DeltaNet's decay is Mamba-2's: ``alpha_t = exp(-exp(A_log) softplus(x_t W_a + dt_bias))`` per head, A =
exp(A_log) drawn uniformly in (0, 16), dt_bias the inverse softplus of a dt drawn log-uniformly in [1e-3, 0.1].
Simplifications: q, k and v are all D wide (Gated DeltaNet's values are twice as wide as its keys in the paper);
A_log and dt_bias are ordinary parameters (the authors exempt them from weight decay).
Bidirectional (our extension): the causal scan plus a reversed scan over the strictly later tokens
(``attention_zoo/ops/delta.py``); the convolution stays causal in both modes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attention_zoo.maps import AttentionMap, delta_map
from attention_zoo.mixers.base import MultiHeadMixer, check_positive, zero_padded
from attention_zoo.mixers.decayed import Gate
from attention_zoo.norms import PerHeadRMSNorm
from attention_zoo.ops.conv import causal_conv, causal_conv_step
from attention_zoo.ops.delta import causal_delta_rule, delta_rule
from attention_zoo.ops.precision import accumulation_dtype

L2_EPS = 1e-6  # flash-linear-attention's l2norm: x / sqrt(sum x^2 + eps)
NORM_EPS = 1e-5  # their layers' norm_eps


def check_non_negative(knob: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"knob {knob!r} must be a non-negative integer (0: none), got {value!r}")


class ShortConvolution(nn.Conv1d):
    """A causal depthwise convolution over the tokens of ``x[B, N, C]`` (``attention_zoo/ops/conv.py``); an
    ``nn.Conv1d`` for its parameters and their initialisation."""

    def __init__(self, channels: int, size: int, bias: bool):
        super().__init__(channels, channels, size, groups=channels, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return causal_conv(x, self.weight, self.bias)

    def step(self, x: torch.Tensor, valid: torch.Tensor, state, name: str) -> torch.Tensor:
        """Decoding: the next tokens, with the last ``size - 1`` real inputs kept in ``state.tensors[name]``."""
        out, state.tensors[name] = causal_conv_step(x, valid, state.tensors.get(name), self.weight, self.bias)
        return out


def l2_normalised(x: torch.Tensor) -> torch.Tensor:
    x = x.to(accumulation_dtype(x))
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + L2_EPS)


def inverse_softplus_dt(n: int, dt_min: float = 1e-3, dt_max: float = 0.1, floor: float = 1e-4) -> torch.Tensor:
    """Mamba's dt_bias initialisation: softplus(dt_bias) = dt, dt drawn log-uniformly in [dt_min, dt_max]."""
    dt = torch.exp(torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp_min(floor)
    return dt + torch.log(-torch.expm1(-dt))


def zero_at_padding(t: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """``t[B, H, N]`` with zeros at the padded tokens."""
    return t if valid is None else t * valid[:, None, :].to(t.dtype)


class DeltaNet(MultiHeadMixer):
    """DeltaNet (see the module docstring); ``GatedDeltaNet`` adds the decay and the output gate."""

    gated = False

    def __init__(self, d_model: int, n_heads: int, causal: bool, chunk_size: int = 64, conv_size: int = 4,
                 bias: bool = False):
        super().__init__(d_model, n_heads, causal, bias)
        check_positive("chunk_size", chunk_size)
        check_non_negative("conv_size", conv_size)
        self.chunk_size, self.conv_size = chunk_size, conv_size
        self.q_conv, self.k_conv, self.v_conv = (
            ShortConvolution(d_model, conv_size, bias=False) if conv_size else None for _ in range(3))
        self.beta_proj = nn.Linear(d_model, n_heads, bias=False)
        self.output_norm = PerHeadRMSNorm(n_heads, self.head_dim, affine=True, eps=NORM_EPS)

    # ------------------------------------------------------------------------------------------ pieces
    def convolved(self, q, k, v, valid=None, state=None) -> tuple[torch.Tensor, ...]:
        """silu(conv(.)) of the heads ``[B, H, N, d]`` (decoding: ``state`` keeps each convolution's inputs)."""
        out = []
        for name, t, conv in (("conv_q", q, self.q_conv), ("conv_k", k, self.k_conv), ("conv_v", v, self.v_conv)):
            if conv is not None:
                tokens = t.transpose(1, 2).flatten(2)  # [B, N, D]: the projection's own layout
                tokens = conv(tokens) if state is None else conv.step(tokens, valid, state, name)
                t = self.split_heads(tokens)
            out.append(F.silu(t))
        return tuple(out)

    def features(self, q, k) -> tuple[torch.Tensor, torch.Tensor]:
        return l2_normalised(q) * self.head_dim**-0.5, l2_normalised(k)

    def betas(self, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        """``[B, H, N]``: sigmoid(x W_beta), zero at padded tokens."""
        beta = torch.sigmoid(self.beta_proj(x).to(accumulation_dtype(x))).transpose(1, 2)
        return zero_at_padding(beta, valid)

    def log_decay(self, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor | None:
        """``[B, H, N]`` log alpha (<= 0, zero at padded tokens), or None: no decay."""
        return None

    def inputs(self, q, k, v, valid, x, state=None):
        """The delta rule's q, k, v, beta and log-decays; padded tokens get k = 0, beta = 0, g = 0."""
        q, k, v = self.convolved(q, k, v, valid, state)
        q, k = self.features(q, k)
        return q, zero_padded(k, valid), v, self.betas(x, valid), self.log_decay(x, valid)

    # ------------------------------------------------------------------------------------ the mixer
    def attend(self, q, k, v, key_valid, x) -> torch.Tensor:
        q, k, v, beta, g = self.inputs(q, k, v, key_valid, x)
        return delta_rule(q, k, v, beta, g, causal=self.causal, chunk_size=self.chunk_size)

    def attend_step(self, q, k, v, valid, positions, state, x) -> torch.Tensor:
        q, k, v, beta, g = self.inputs(q, k, v, valid, x, state)
        out, state.tensors["S"] = causal_delta_rule(q, k, v, beta, g, chunk_size=self.chunk_size,
                                                    initial_state=state.tensors.get("S"))
        return out

    def attention_map(self, x: torch.Tensor, key_valid: torch.Tensor | None) -> AttentionMap:
        """The N x N matrix of the delta rule (analysis only): attention_zoo.maps.delta_map."""
        q, k, v, beta, g = self.inputs(*self.project_qkv(x), key_valid, x)
        return delta_map(q, k, v, beta, g, key_valid, causal=self.causal)

    def core_products(self, n: int) -> tuple[float | None, float]:
        """Forward FLOPs per sequence (bidirectional: two scans), per head and scan: the in-chunk k_beta k^T and
        q k^T, the triangular solve for u and w (C^2 (d_k + d_v) per chunk), w S, k^T (u - w S), q S and the
        in-chunk scores times (u - w S); plus the beta (and decay, gate) projections and the convolutions."""
        c, d, h, width = self.chunk_size, self.head_dim, self.n_heads, self.d_model
        scan = 2 * n * c * d * 3 + n * c * 2 * d + 3 * 2 * n * d * d
        extra = 2 * n * width * h * (2 if self.gated else 1) + 3 * 2 * n * width * self.conv_size
        if self.gated:
            extra += 2 * n * width * width
        return h * 2 * scan + extra, 0.0


class GatedDeltaNet(DeltaNet):
    """Gated DeltaNet (see the module docstring): the delta rule with Mamba-2's data-dependent decay per head."""

    gated = True

    def __init__(self, d_model: int, n_heads: int, causal: bool, chunk_size: int = 64, conv_size: int = 4,
                 bias: bool = False):
        super().__init__(d_model, n_heads, causal, chunk_size=chunk_size, conv_size=conv_size, bias=bias)
        self.a_proj = nn.Linear(d_model, n_heads, bias=False)
        self.A_log = nn.Parameter(torch.log(torch.empty(n_heads).uniform_(0, 16)))
        self.dt_bias = nn.Parameter(inverse_softplus_dt(n_heads))
        self.output_gate = Gate(d_model, "silu", bias)

    def log_decay(self, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        a = self.a_proj(x).to(accumulation_dtype(x))  # [B, N, H]
        g = -torch.exp(self.A_log).to(a.dtype) * F.softplus(a + self.dt_bias.to(a.dtype))
        return zero_at_padding(g.transpose(1, 2), valid)
