"""HGRN2 (Qin et al. 2024, "HGRN2: Gated Linear RNNs with State Expansion"), on the decayed linear attention of
``attention_zoo/ops/decay.py`` (a decay per key channel, as GLA).

Per head (d = D / H, the state expansion: the paper's expand ratio is its head size), as the authors' ``Hgru2_1d``:
- the forget gate ``f_t = beta + (1 - beta) sigmoid(x_t W_f + b_f)`` with a lower bound beta, ``k_t = 1 - f_t``
  (computed as ``(1 - beta) sigmoid(-(x_t W_f + b_f))``), the input ``i_t = silu(x_t W_i + b_i)`` and the output gate
  ``o_t = sigmoid(x_t W_o + b_o)``;
- the state expanded by an outer product, ``H_t = diag(f_t) H_{t-1} + k_t^T i_t`` (d x d), read by the output gate,
  ``y_t = o_t H_t``: the decayed linear attention with q = o, k = 1 - f, v = i and log-decays log f per key channel;
- LayerNorm over D (the authors' default ``norm_type``), then the output projection.
Projections: ``q_proj`` is W_o, ``k_proj`` W_f, ``v_proj`` W_i (the roles of the linear-attention reading).

The lower bound: HGRN learns one per layer and channel, ``softmax`` over the layers then a cumulative sum minus the
first layer's, so that it grows with depth (layer 0: none); from their initialisation (all equal) that is exactly
``l / L`` in layer l of L. A mixer here is built alone, so beta is fixed at that value (knob ``lower_bound: null``;
the backbone tells each layer where it is, as for Lightning), or at the ``lower_bound`` given, in every layer.
Bidirectional (our extension, as the other decayed backends): the symmetric decay of ``ops/decay.py``, i.e. the
gates of the tokens between query and key (the authors' bidirectional module adds an inclusive reversed scan
instead, with the query's own gate and the diagonal counted twice).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attention_zoo.maps import AttentionMap, decayed_map
from attention_zoo.mixers.base import check_real
from attention_zoo.mixers.decayed import DecayedLinearAttention
from attention_zoo.norms import LayerNorm
from attention_zoo.ops.decay import causal_decayed_linear_attention, decayed_linear_attention
from attention_zoo.ops.precision import accumulation_dtype


class HGRN2(DecayedLinearAttention):
    """HGRN2's token mixer (see the module docstring)."""

    def __init__(self, d_model: int, n_heads: int, causal: bool, layer_index: int = 0, n_layers: int = 1,
                 lower_bound: float | None = None, chunk_size: int = 64, bias: bool = True):
        super().__init__(d_model, n_heads, causal, pos="none", chunk_size=chunk_size, bias=bias)
        if not 0 <= layer_index < n_layers:
            raise ValueError(f"layer_index={layer_index} is outside [0, n_layers={n_layers})")
        if lower_bound is not None:
            check_real("lower_bound", lower_bound, low=0.0, high=1.0)
        self.lower_bound = layer_index / n_layers if lower_bound is None else float(lower_bound)
        self.output_norm = LayerNorm(d_model)

    def gates(self, f: torch.Tensor, valid: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The key 1 - f and the log-decays log f of the forget gate's pre-activation ``f [B, H, N, d]`` (in fp32 or
        wider), both zero at padded tokens: a padded token neither writes nor decays."""
        f = f.to(accumulation_dtype(f))
        beta = self.lower_bound
        key = (1 - beta) * torch.sigmoid(-f)
        log_f = F.logsigmoid(f)
        if beta > 0:  # log(beta + (1 - beta) sigmoid(f)), >= log beta
            log_f = torch.logaddexp(torch.full_like(log_f, math.log(beta)), math.log1p(-beta) + log_f)
        if valid is None:
            return key, log_f
        real = valid[:, None, :, None].to(f.dtype)
        return key * real, log_f * real

    def inputs(self, q, k, v, valid):
        """q = the output gate, k = 1 - f, v = the input, g = log f (see ``gates``)."""
        key, log_f = self.gates(k, valid)
        return torch.sigmoid(q), key, F.silu(v), log_f

    def attend(self, q, k, v, key_valid, x) -> torch.Tensor:
        q, k, v, g = self.inputs(q, k, v, key_valid)
        return decayed_linear_attention(q, k, v, g, causal=self.causal, chunk_size=self.chunk_size)

    def attend_step(self, q, k, v, valid, positions, state, x) -> torch.Tensor:
        q, k, v, g = self.inputs(q, k, v, valid)
        out, state.tensors["S"] = causal_decayed_linear_attention(
            q, k, v, g, chunk_size=self.chunk_size, initial_state=state.tensors.get("S"))
        return out

    def attention_map(self, x: torch.Tensor, key_valid: torch.Tensor | None) -> AttentionMap:
        """The N x N decayed scores (analysis only): attention_zoo.maps.decayed_map; values: the input i."""
        q, k, v, g = self.inputs(*self.project_qkv(x), key_valid)
        return decayed_map(q, k, v, g, key_valid, causal=self.causal)
