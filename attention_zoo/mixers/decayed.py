"""TransNormer's successors: linear attention with a decay, a norm of the heads and an output gate.

- ``LightningAttention`` (TransNormerLLM, Qin et al. 2023/2024): ``O = SRMSNorm(Q K^T-with-decay V) * U``,
  ``Q = silu(X W_q)``, ``K = silu(X W_k)``, ``U = X W_u``; a fixed per-head decay that depends on the layer,
  ``log lambda_h = -s_h (1 - l / (L - 1) + 1e-5)`` with ALiBi's slopes ``s_h = 2^(-8 (h + 1) / H)`` (as the
  authors' released code; the last layer barely decays); LRPE on q and k (LRPE-d: LRPE with the decay).
- ``Retention`` (RetNet, Sun et al. 2023): ``gamma_h = 1 - 2^(-5 - h)``, rotary positions on q and k, k scaled
  by d^-1/2, per-head RMSNorm without gain (RetNet's GroupNorm), gate ``silu(X W_g)``. RetNet's parallel form
  also rescales the decay matrix and the scores per row; the per-head norm cancels any per-row scale, so they
  are left out (the outputs differ only through the norm's epsilon).
- ``GatedLinearAttention`` (GLA, Yang et al. 2024): data-dependent decays per key channel,
  ``g_t = logsigmoid(W_2 W_1 x_t + b) / tau`` (low rank 16, tau = 16), q scaled by d^-1/2, per-head RMSNorm
  with a gain, gate ``silu(X W_r)``.
Simplifications, shared: q, k and v are all d_model wide (GLA halves the keys, RetNet doubles the values), so the
mixers drop into the same blocks as the rest of the zoo. Bidirectional: the symmetric decay of
``attention_zoo/ops/decay.py`` (our extension; the methods are defined causal).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attention_zoo.maps import AttentionMap, decayed_map
from attention_zoo.mixers.base import MultiHeadMixer, check_positive, check_real, zero_padded
from attention_zoo.norms import PerHeadRMSNorm, SimpleRMSNorm
from attention_zoo.ops.decay import causal_decayed_linear_attention, decayed_linear_attention
from attention_zoo.positional import build_relative_positional


class Gate(nn.Module):
    """``activation(x W)``: the output gate of a mixer, from the mixer's input."""

    def __init__(self, d_model: int, activation: str, bias: bool):
        super().__init__()
        self.proj = nn.Linear(d_model, d_model, bias=bias)
        self.activation = {"silu": F.silu, "identity": lambda t: t}[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.proj(x))


class DecayedLinearAttention(MultiHeadMixer):
    """Shared by the three: ``features`` of q and k (activations, positions, scales), the log-decays of the
    input (``log_decay``), the decayed linear attention core, and its recurrent form."""

    def __init__(self, d_model: int, n_heads: int, causal: bool, *, pos: str, chunk_size: int, bias: bool):
        super().__init__(d_model, n_heads, causal, bias)
        check_positive("chunk_size", chunk_size)
        self.chunk_size = chunk_size
        self.pos = build_relative_positional(pos, self.head_dim)

    def features(self, q, k, positions=None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pos(q, positions), self.pos(k, positions)

    def log_decay(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, H, N]`` (one decay per head and token) or ``[B, H, N, d]`` (per key channel), all <= 0."""
        raise NotImplementedError

    def real_decays(self, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        """``log_decay(x)``, zero at padded tokens: a padded token neither decays the state nor adds to it,
        and its input reaches no output."""
        g = self.log_decay(x)
        if valid is None:
            return g
        return g * (valid[:, None, :, None] if g.dim() == 4 else valid[:, None, :]).to(g.dtype)

    def attend(self, q, k, v, key_valid, x) -> torch.Tensor:
        q, k = self.features(q, k)
        return decayed_linear_attention(q, zero_padded(k, key_valid), v, self.real_decays(x, key_valid),
                                        causal=self.causal, chunk_size=self.chunk_size)

    def attend_step(self, q, k, v, valid, positions, state, x) -> torch.Tensor:
        q, k = self.features(q, k, positions)
        g = self.real_decays(x, valid)
        out, state.tensors["S"] = causal_decayed_linear_attention(
            q, zero_padded(k, valid), v, g, chunk_size=self.chunk_size, initial_state=state.tensors.get("S"))
        return out

    def attention_map(self, x: torch.Tensor, key_valid: torch.Tensor | None) -> AttentionMap:
        """The N x N attention this mixer implies (analysis only): attention_zoo.maps.decayed_map."""
        q, k, v = self.project_qkv(x)
        q, k = self.features(q, k)
        return decayed_map(q, k, v, self.real_decays(x, key_valid), key_valid, causal=self.causal)

    def core_products(self, n: int) -> tuple[float | None, float]:
        """Forward FLOPs of the core's products per sequence (bidirectional: two chunked passes): in-chunk
        q k^T and A v, each chunk's k^T v, and q S."""
        c, d = self.chunk_size, self.head_dim
        return self.n_heads * 2 * 2 * (2 * n * c * d + 2 * n * d * d), 0.0


def alibi_slopes(n_heads: int) -> list[float]:
    """ALiBi's head slopes ``2^(-8 (h + 1) / H)`` (for H not a power of two: the next power's odd ones)."""
    def power_of_two(n: int) -> list[float]:
        return [2 ** (-8 * (h + 1) / n) for h in range(n)]

    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = power_of_two(closest)
    if closest < n_heads:
        slopes += power_of_two(2 * closest)[0::2][: n_heads - closest]
    return slopes


class LightningAttention(DecayedLinearAttention):
    """TransNormerLLM's attention (see the module docstring). ``layer_index`` / ``n_layers`` set the decay;
    a backbone sets them per layer."""

    def __init__(self, d_model: int, n_heads: int, causal: bool, layer_index: int = 0, n_layers: int = 1,
                 pos: str = "lrpe", chunk_size: int = 64, bias: bool = False):
        super().__init__(d_model, n_heads, causal, pos=pos, chunk_size=chunk_size, bias=bias)
        if not 0 <= layer_index < n_layers:
            raise ValueError(f"layer_index={layer_index} is outside [0, n_layers={n_layers})")
        depth = 1 - layer_index / (n_layers - 1) + 1e-5 if n_layers > 1 else 1 + 1e-5
        register_fixed_decays(self, [-slope * depth for slope in alibi_slopes(n_heads)])
        self.output_norm = SimpleRMSNorm(d_model)
        self.output_gate = Gate(d_model, "identity", bias)

    def features(self, q, k, positions=None):
        return self.pos(F.silu(q), positions), self.pos(F.silu(k), positions)

    def log_decay(self, x):
        return fixed_decays(self.fixed_log_decays, x)


def register_fixed_decays(module: nn.Module, log_decays: list[float]) -> None:
    """One fixed log-decay per head as a float64 buffer: it moves with the module (no host-to-device copy per
    forward) and rounds to the input's dtype as the exact values would; not saved (it follows from the knobs)."""
    module.register_buffer("fixed_log_decays", torch.tensor(log_decays, dtype=torch.float64), persistent=False)


def fixed_decays(per_head: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``[B, H, N]``: one fixed log-decay per head, for every token of ``x[B, N, D]``."""
    return per_head.to(x.dtype)[None, :, None].expand(x.shape[0], -1, x.shape[1])


class Retention(DecayedLinearAttention):
    """RetNet's multi-scale retention (see the module docstring)."""

    def __init__(self, d_model: int, n_heads: int, causal: bool, pos: str = "rope", chunk_size: int = 64,
                 bias: bool = False):
        super().__init__(d_model, n_heads, causal, pos=pos, chunk_size=chunk_size, bias=bias)
        register_fixed_decays(self, [math.log(1 - 2.0 ** (-5.0 - h)) for h in range(n_heads)])
        self.output_norm = PerHeadRMSNorm(n_heads, self.head_dim, affine=False)
        self.output_gate = Gate(d_model, "silu", bias)

    def features(self, q, k, positions=None):
        return self.pos(q, positions), self.pos(k * self.head_dim**-0.5, positions)

    def log_decay(self, x):
        return fixed_decays(self.fixed_log_decays, x)


class GatedLinearAttention(DecayedLinearAttention):
    """GLA (see the module docstring): the decay of each key channel is a gate of the token."""

    def __init__(self, d_model: int, n_heads: int, causal: bool, chunk_size: int = 64, gate_rank: int = 16,
                 gate_temperature: float = 16.0, pos: str = "none", bias: bool = False):
        super().__init__(d_model, n_heads, causal, pos=pos, chunk_size=chunk_size, bias=bias)
        check_positive("gate_rank", gate_rank)
        check_real("gate_temperature", gate_temperature, low=0.0, include_low=False)
        self.gate_temperature = gate_temperature
        self.gate_down = nn.Linear(d_model, gate_rank, bias=False)
        self.gate_up = nn.Linear(gate_rank, d_model, bias=True)
        self.output_norm = PerHeadRMSNorm(n_heads, self.head_dim, affine=True)
        self.output_gate = Gate(d_model, "silu", bias)

    def features(self, q, k, positions=None):
        return self.pos(q * self.head_dim**-0.5, positions), self.pos(k, positions)

    def log_decay(self, x):
        g = F.logsigmoid(self.gate_up(self.gate_down(x))) / self.gate_temperature  # [B, N, D]
        return self.split_heads(g)  # [B, H, N, d]
