"""The N x N attention a mixer implies, for the diagnostics (Figure 2, the Proposition check).

The materialisers are facts of the backends and live with them (``attention_zoo/maps.py``, called by each
mixer's ``attention_map(x, key_valid)`` method); a plugin's mixer provides its own method of that name. This
module checks the input layout and calls the method.
"""
from __future__ import annotations

import torch
from torch import nn

from attention_zoo.maps import AttentionMap
from harness.mixer_sites import is_attention_mixer

__all__ = ["AttentionMap", "attention_map", "is_attention_mixer"]


@torch.no_grad()
def attention_map(mixer: nn.Module, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> AttentionMap:
    """The attention ``mixer`` implies on its input ``x[B, N, D]`` (True in ``padding_mask`` marks padding)."""
    if not is_attention_mixer(mixer):
        raise ValueError(f"cannot materialise the attention of {type(mixer).__name__}: it has no method "
                         "attention_map(x, key_valid) -> attention_zoo.maps.AttentionMap")
    if padding_mask is not None and (padding_mask.int().diff(dim=-1) < 0).any():
        raise ValueError(
            "attention_map needs right-padded sequences (real tokens first); a Backbone always passes its "
            "mixers right-padded batches"
        )
    return mixer.attention_map(x, None if padding_mask is None else ~padding_mask)
