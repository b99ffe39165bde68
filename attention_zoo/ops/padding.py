"""Padding helpers shared by the mixers and the attention maps (``key_valid [B, N]``: True marks a real token)."""
from __future__ import annotations

import torch


def zero_padded(x: torch.Tensor, key_valid: torch.Tensor | None) -> torch.Tensor:
    """Zero the padded positions of ``x[B, H, N, d]`` so that they contribute nothing to a sum."""
    return x if key_valid is None else x * key_valid[:, None, :, None].to(x.dtype)


def valid_lengths(
    key_valid: torch.Tensor | None, batch: int, length: int, device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``[B]`` in ``dtype``: the number of real tokens per sequence, at least 1.

    A fully padded row then divides by 1, not 0: its outputs are zeroed anyway, and a 0/0 there would
    put NaN into the gradients of the shared parameters.
    """
    if key_valid is None:
        return torch.full((batch,), float(length), device=device, dtype=dtype)
    return key_valid.sum(-1).clamp_min(1).to(dtype)
