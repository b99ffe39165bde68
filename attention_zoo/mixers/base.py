"""The shared shape of a multi-head token mixer: project, split heads, attend, merge, project back."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from attention_zoo.decoding import (
    DecodeState,
    advance,
    history_step,
    new_state,
    one_token_at_a_time,
    positions_of_new,
    valid_of,
)
from attention_zoo.ops.padding import valid_lengths as valid_lengths  # re-exported: mixers and plugins use them
from attention_zoo.ops.padding import zero_padded as zero_padded


def check_choice(knob: str, value, choices: Iterable) -> None:
    """Raise a ValueError naming the knob and its valid choices when ``value`` is not one of them."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"invalid value {value!r} for knob {knob!r}; valid choices: {choices}")


def check_positive(knob: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"knob {knob!r} must be a positive integer, got {value!r}")


def check_flag(knob: str, value) -> None:
    check_choice(knob, value, [True, False])


def check_real(knob: str, value, *, low: float, high: float = float("inf"), include_low: bool = True) -> None:
    """Raise a ValueError naming the knob and its valid interval when ``value`` is not a number in it
    (``[low, high)``, or ``(low, high)`` with ``include_low=False``)."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or not (value >= low if include_low else value > low) or not value < high:
        interval = f"{'[' if include_low else '('}{low}, {high})"
        raise ValueError(f"knob {knob!r} must be a number in {interval}, got {value!r}")


def check_dropout(value) -> None:
    check_real("attn_dropout", value, low=0.0, high=1.0)


def take_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[B, N, ...]`` reordered along N by ``index[B, N]``."""
    return x.gather(1, index.view(*index.shape, *[1] * (x.dim() - 2)).expand_as(x))


def real_tokens_first(
    run: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    x: torch.Tensor,
    padding_mask: torch.Tensor | None,
) -> torch.Tensor:
    """``run(x, padding_mask)`` with every sequence's real tokens moved to the front (their order kept),
    the outputs then put back in place.

    Positions, blocks, groups and segments then count real tokens only, so a batch padded on the left, on
    the right or in between gives each sequence exactly what it gets alone. For right padding the
    reordering is the identity.
    """
    if padding_mask is None:
        return run(x, None)
    order = torch.sort(padding_mask.to(torch.uint8), dim=-1, stable=True).indices  # [B, N]: real ones first
    out = run(take_tokens(x, order), padding_mask.gather(1, order))
    return take_tokens(out, torch.argsort(order, dim=-1))


class MultiHeadMixer(nn.Module):
    """Base of the q/k/v mixers. Subclasses implement ``attend`` (heads in, heads out) and may set
    ``self.output_norm`` (applied over the merged width D before the output projection) and
    ``self.output_gate`` (a module of the mixer's input whose output multiplies the normed heads, as in
    TransNormerLLM, RetNet and GLA).

    ``forward(x[B, N, D], padding_mask[B, N] | None) -> [B, N, D]``; True in ``padding_mask`` marks
    padding. Outputs at padded positions are zero, and padded keys never reach a real token; wherever the
    padding sits, each sequence gets what it gets alone (see ``real_tokens_first``).
    """

    def __init__(self, d_model: int, n_heads: int, causal: bool, bias: bool = True):
        super().__init__()
        check_positive("d_model", d_model)
        check_positive("n_heads", n_heads)
        check_flag("causal", causal)
        check_flag("bias", bias)
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.causal = d_model, n_heads, causal
        self.head_dim = d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.output_norm: nn.Module | None = None
        self.output_gate: nn.Module | None = None

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.n_heads, self.head_dim)).transpose(1, 2)  # [B, H, N, d]

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x[B, N, D]`` -> q, k, v ``[B, H, N, d]`` (what ``attention_map`` hands to attention_zoo.maps)."""
        return self.split_heads(self.q_proj(x)), self.split_heads(self.k_proj(x)), self.split_heads(self.v_proj(x))

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_valid: torch.Tensor | None, x: torch.Tensor
    ) -> torch.Tensor:
        """``q, k, v [B, H, N, d]``, ``key_valid [B, N]`` or None, the mixer input ``x`` -> ``[B, H, N, d]``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return real_tokens_first(self.mix, x, padding_mask)

    # -------------------------------------------------------------------------- facts for the harness
    def core_products(self, n: int) -> tuple[float | None, float]:
        """Forward FLOPs of the attention core's matrix products for one sequence of ``n`` tokens (bidirectional):
        (products of two trainable operands, products with a constant operand); None where not defined."""
        return None, 0.0

    def forward_products(self, n: int, scope: str = "mixer") -> tuple[float | None, float]:
        """:meth:`core_products` plus the q, k, v and output projections (``scope="attention"``: without)."""
        core, constant = self.core_products(n)
        if core is None:
            return None, 0.0
        pos = getattr(self, "pos", None)  # a relative encoding on q and k (LRPE: a product with a fixed matrix)
        if pos is not None and hasattr(pos, "products"):
            constant += 2 * self.n_heads * pos.products(self.position_rows(n))
        return (0.0 if scope == "attention" else 4 * 2 * n * self.d_model**2) + core, constant

    def position_rows(self, n: int) -> int:
        """How many vectors per head the relative positional encoding is applied to (per q and per k)."""
        return n

    # ---------------------------------------------------------------------------- recurrent decoding
    prefill_in_parallel = False  # True: a fresh state's first chunk runs the parallel forward, then absorb()

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> DecodeState:
        """An empty decoding state (attention_zoo.decoding); causal mixers only."""
        if not self.causal:
            raise ValueError(f"{type(self).__name__} was built with causal=False: only causal mixers decode")
        return new_state(batch_size, device, owner=self)

    def step(self, x: torch.Tensor, state: DecodeState,
             padding_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, DecodeState]:
        """``x[B, T, D]``: the next T tokens of each sequence -> their outputs ``[B, T, D]`` and the state."""
        if type(self).attend_step is MultiHeadMixer.attend_step and not self.prefill_in_parallel:
            return history_step(self, x, state, padding_mask)  # no recurrent form (e.g. a plugin): recompute
        valid = valid_of(x, padding_mask)
        positions = positions_of_new(state, valid)
        if self.prefill_in_parallel and state.fresh:
            out = self.forward(x, padding_mask)
            self.absorb(self.split_heads(self.k_proj(x)), self.split_heads(self.v_proj(x)), valid, positions, state)
        elif self.prefill_in_parallel and x.shape[1] > 1:
            return one_token_at_a_time(self.step, x, state, padding_mask)
        else:
            q, k, v = (self.split_heads(proj(x)) for proj in (self.q_proj, self.k_proj, self.v_proj))
            mixed = self.attend_step(q, k, v, valid, positions, state, x).transpose(1, 2).flatten(-2)
            out = self.project_out(mixed, x, padding_mask).masked_fill(~valid[..., None], 0.0)
        advance(state, valid)
        return out, state

    def attend_step(self, q, k, v, valid, positions, state: DecodeState, x: torch.Tensor) -> torch.Tensor:
        """Decoding's ``attend``: the new tokens' heads ``[B, H, T, d]`` with the state of earlier ones. Not
        overridden: ``step`` recomputes from every input so far (exact, not constant-memory)."""
        raise NotImplementedError(f"{type(self).__name__} has no recurrent form")

    def absorb(self, k, v, valid, positions, state: DecodeState) -> None:
        """Put a parallel prefill's keys and values into a fresh state (``prefill_in_parallel`` mixers)."""
        raise NotImplementedError

    def mix(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """``forward`` for a batch whose padding (if any) is on the right."""
        key_valid = None if padding_mask is None else ~padding_mask
        q, k, v = (self.split_heads(proj(x)) for proj in (self.q_proj, self.k_proj, self.v_proj))
        out = self.project_out(self.attend(q, k, v, key_valid, x).transpose(1, 2).flatten(-2), x, padding_mask)
        return out if padding_mask is None else out.masked_fill(padding_mask[..., None], 0.0)

    def project_out(self, mixed: torch.Tensor, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """The merged heads ``[B, N, D]`` -> norm, gate (by the input ``x``), output projection."""
        if self.output_norm is not None:
            mixed = self.output_norm(mixed, padding_mask)
        if self.output_gate is not None:
            mixed = mixed * self.output_gate(x)
        return self.out_proj(mixed)
