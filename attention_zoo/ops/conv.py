"""The short causal depthwise convolution of DeltaNet, Gated DeltaNet and Mamba-2, over the tokens of ``x[B, N, C]``.

``out_t = bias + sum_{s < K} weight[:, s] * x_{t - K + 1 + s}`` per channel, with ``x_t = 0`` before the first token:
each token sees itself and the K - 1 tokens before it. Padding must be on the right (real tokens first), where it
follows every real token and so reaches none; decoding keeps the last K - 1 real inputs (``causal_conv_step``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x[B, N, C]`` -> ``[B, N, C]`` for a depthwise ``weight[C, 1, K]`` (``nn.Conv1d``'s layout)."""
    size = weight.shape[-1]
    out = F.conv1d(F.pad(x.transpose(1, 2), (size - 1, 0)), weight, bias, groups=x.shape[-1])
    return out.transpose(1, 2).contiguous()  # token-major again: what follows (silu, heads) runs on it


def causal_conv_step(x: torch.Tensor, valid: torch.Tensor, cache: torch.Tensor | None, weight: torch.Tensor,
                     bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The next tokens ``x[B, T, C]`` (``valid[B, T]``: the real ones) after the last K - 1 real inputs ``cache[B,
    K - 1, C]`` (None: none yet, zeros) -> their outputs ``[B, T, C]`` and the new cache. Padded tokens are skipped:
    every real token sees the K - 1 real ones before it, as in the parallel form (outputs at pads: unspecified)."""
    size = weight.shape[-1]
    if cache is None:
        cache = x.new_zeros(x.shape[0], size - 1, x.shape[-1])
    order = torch.sort((~valid).to(torch.uint8), dim=-1, stable=True).indices  # real tokens first, in order
    history = torch.cat([cache.to(x.dtype), _take(x, order)], dim=1)  # [B, K - 1 + T, C]
    out = F.conv1d(history.transpose(1, 2), weight, bias, groups=x.shape[-1]).transpose(1, 2)
    out = _take(out, torch.argsort(order, dim=-1))
    # the last K - 1 real inputs: positions n .. n + K - 2 of the history, n = the real new tokens of the row
    n = valid.long().sum(-1)
    index = n[:, None] + torch.arange(size - 1, device=x.device)[None, :]
    return out, _take(history, index)


def _take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[B, M, C]`` at the token positions ``index[B, T]``."""
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))
