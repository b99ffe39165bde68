"""The short convolution convention (``BackboneShape.short_conv = K``, 0 = off): a depthwise causal convolution of
kernel size K over the tokens of a mixer's input, before the mixer, in every layer and for every backend.

Zoology (Arora et al., 2024) puts a short convolution before every sequence mixer "for fair comparison", H3 and
Based keep one beside their attention, and Mamba-2, DeltaNet and GLA convolve q, k and v inside the mixer (here:
``attention.conv_size`` of ``deltanet``, ``gated_deltanet`` and ``mamba2``). This one is the backend-agnostic form:
``mixer(conv(x))`` with ``conv`` as in ``attention_zoo/ops/conv.py`` (each token sees itself and the K - 1 real
tokens before it, zeros before the first). It is causal in both modes (a bidirectional mixer after it still sees
every token). Padding anywhere: the real tokens are moved first (``real_tokens_first``), so a padded sequence gets
exactly what it gets alone. Decoding keeps the last K - 1 real inputs beside the mixer's own state.
"""
from __future__ import annotations

import torch
from torch import nn

from attention_zoo.decoding import DecodeState, advance, new_state, valid_of
from attention_zoo.mixers.base import real_tokens_first
from attention_zoo.mixers.delta import ShortConvolution


class ShortConvMixer(nn.Module):
    """``mixer(conv(x))``: a depthwise causal convolution (``nn.Conv1d``'s parameters and initialisation) on the
    input of ``mixer``, which keeps its own attention maps, FLOPs and state (the diagnostics find it as a
    submodule and see its real input)."""

    def __init__(self, mixer: nn.Module, d_model: int, size: int, bias: bool = True):
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"short_conv={size!r} must be a positive kernel size (0 turns it off)")
        self.conv = ShortConvolution(d_model, size, bias)
        self.mixer = mixer
        self.size = size

    @property
    def causal(self) -> bool:
        return bool(getattr(self.mixer, "causal", True))

    def convolve(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """The convolved input (``x[B, N, D]``, padding anywhere), zeros at the padded tokens."""
        def run(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
            out = self.conv(h)
            return out if mask is None else out.masked_fill(mask[..., None], 0.0)

        return real_tokens_first(run, x, padding_mask)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.mixer(self.convolve(x, padding_mask), padding_mask)

    def forward_products(self, n: int, scope: str = "mixer") -> tuple[float | None, float]:
        """The mixer's FLOPs plus the convolution's (K multiply-adds per channel and token) at ``scope="mixer"``."""
        own = getattr(self.mixer, "forward_products", None)
        both, constant = own(n, scope) if callable(own) else (None, 0.0)
        if both is None:
            return None, 0.0
        return both + (0.0 if scope == "attention" else 2.0 * n * self.conv.in_channels * self.size), constant

    # ----------------------------------------------------------------------------------- decoding
    def init_state(self, batch_size: int, *, device=None, dtype=None) -> DecodeState:
        state = new_state(batch_size, device, owner=self)
        state.parts = [self.mixer.init_state(batch_size, device=state.count.device, dtype=dtype)]
        return state

    def step(self, x: torch.Tensor, state: DecodeState,
             padding_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, DecodeState]:
        valid = valid_of(x, padding_mask)
        h = self.conv.step(x, valid, state, "conv")
        out, _ = self.mixer.step(h.masked_fill(~valid[..., None], 0.0), state.parts[0], padding_mask)
        advance(state, valid)
        return out, state
