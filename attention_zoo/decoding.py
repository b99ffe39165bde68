"""Recurrent inference: every causal mixer decodes token by token from a state.

``state = mixer.init_state(batch_size, device=..., dtype=...)`` then ``y, state = mixer.step(x, state,
padding_mask)`` for ``x[B, T, D]``, T >= 1 new tokens per sequence (T > 1: a prefill or a chunk of one),
``padding_mask[B, T]`` (True = padding, e.g. the left padding of prompts of different lengths). The outputs
equal the parallel forward's outputs at those positions over everything fed so far; padded tokens leave the
state as it was and get zero outputs. Positions count each sequence's real tokens only, as the parallel
forward does (``real_tokens_first``).

What a state holds (``DecodeState.tensors``):
- linear attention (elu, performer, cosformer, norm_attention): the running d_k x d_v state (with the
  normaliser as an extra column where there is one): constant memory;
- vanilla softmax: the key/value cache (grows with the context, by design);
- diag_attention (and the Diag layers of T1/T2): the keys and values of the current block only;
- flash: the cross-group linear state plus the current group's tokens: constant memory;
- flash_quad and ls: every input so far, the output recomputed (not constant memory, and for flash_quad,
  which divides by the sequence length, each token's output is the parallel output over its prefix).
Accumulation is in fp32 for low precisions; float64 stays float64.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from attention_zoo.ops import linear_attention
from attention_zoo.ops.precision import accumulation_dtype, autocast_off


@dataclass
class DecodeState:
    """The decoding state of one mixer (or block, or backbone) for a batch: how many real tokens each
    sequence has consumed, and the mixer's tensors (or the states of its parts)."""

    count: torch.Tensor  # [B] long: real tokens consumed per sequence
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    parts: list[DecodeState] = field(default_factory=list)

    @property
    def fresh(self) -> bool:
        return not bool(self.count.any())

    def nbytes(self) -> int:
        """Bytes of every tensor the state holds, its parts' included (the token counters left out): what a
        decoder keeps per batch between tokens (the recall diagnostics' state size)."""
        return sum(t.numel() * t.element_size() for t in self.tensors.values()) + sum(p.nbytes() for p in self.parts)


def new_state(batch_size: int, device=None, owner: torch.nn.Module | None = None) -> DecodeState:
    """An empty state on ``device``, by default the device of ``owner``'s parameters (a GPU model's state on
    its GPU, not on the CPU)."""
    if device is None and owner is not None:
        device = next((p.device for p in owner.parameters()), None)
    return DecodeState(torch.zeros(batch_size, dtype=torch.long, device=device))


def valid_of(x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """``[B, T]`` bool: the real tokens of a new chunk."""
    if padding_mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    return ~padding_mask


def positions_of_new(state: DecodeState, valid: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` long: each new real token's position among its sequence's real tokens (pads: the position
    of the next real token, never used)."""
    return state.count[:, None] + valid.long().cumsum(-1) - valid.long()


def advance(state: DecodeState, valid: torch.Tensor) -> None:
    state.count = state.count + valid.long().sum(-1)


def history_step(module: torch.nn.Module, x: torch.Tensor, state: DecodeState,
                 padding_mask: torch.Tensor | None) -> tuple[torch.Tensor, DecodeState]:
    """The exact fallback: keep every input, run the parallel forward over all of them, return the new
    tokens' outputs. Used where the algorithm has no constant-size state (FLASH-quad, Transformer-LS)."""
    valid = valid_of(x, padding_mask)
    if "inputs" in state.tensors:
        inputs = torch.cat([state.tensors["inputs"], x], dim=1)
        mask = torch.cat([state.tensors["padding"], ~valid], dim=1)
    else:
        inputs, mask = x, ~valid
    out = module(inputs, mask if mask.any() else None)[:, -x.shape[1]:]
    state.tensors["inputs"], state.tensors["padding"] = inputs, mask
    advance(state, valid)
    return out, state


def one_token_at_a_time(step_one, x: torch.Tensor, state: DecodeState,
                        padding_mask: torch.Tensor | None) -> tuple[torch.Tensor, DecodeState]:
    """Feed a chunk to a single-token ``step_one(x[B, 1, D], state, padding_mask[B, 1] | None)``."""
    outputs = []
    for t in range(x.shape[1]):
        mask = None if padding_mask is None else padding_mask[:, t : t + 1]
        out, state = step_one(x[:, t : t + 1], state, mask)
        outputs.append(out)
    return torch.cat(outputs, dim=1), state


def linear_step(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, state: DecodeState, *, chunk_size: int = 64,
                name: str = "kv") -> torch.Tensor:
    """Causal linear attention of new tokens on top of the running state ``S = sum_j k_j v_j^T``: the
    chunk's own causal product plus ``q S``; then ``S += k^T v``. ``k`` must be zero at padding."""
    dtype = accumulation_dtype(q, k, v)
    with autocast_off(q.device):
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        previous = state.tensors.get(name)
        if previous is None:
            previous = q.new_zeros(*q.shape[:2], q.shape[-1], v.shape[-1])
        if q.shape[-2] == 1:  # one token: its own term is (q . k) v; no chunked scan for a single position
            own = (q * k).sum(-1, keepdim=True) * v
        else:
            own = linear_attention(q, k, v, causal=True, chunk_size=chunk_size)
        out = own + torch.matmul(q, previous)
        state.tensors[name] = previous + torch.matmul(k.transpose(-1, -2), v)
    return out


def last_real_tokens(t: torch.Tensor, valid: torch.Tensor, counts: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, H, size, d]``: for each sequence, the last ``counts[b]`` real tokens of ``t[B, H, T, d]`` at the
    front (the rest zeros): the partial block or group a parallel prefill leaves for decoding to go on."""
    out = t.new_zeros(*t.shape[:2], size, t.shape[-1])
    for b in range(t.shape[0]):
        real = t[b][:, valid[b]]
        n = int(counts[b])
        if n:
            out[b, :, :n] = real[:, real.shape[1] - n :]
    return out


def block_fill(valid: torch.Tensor, block: int) -> torch.Tensor:
    """``[B]``: how many of each sequence's real tokens sit in its current (last) block of ``block`` tokens; a
    full last block counts ``block`` (the next token starts a new one)."""
    n = valid.long().sum(-1)
    partial = n % block
    return torch.where((partial == 0) & (n > 0), torch.full_like(n, block), partial)


def write_slot(buffer: torch.Tensor, value: torch.Tensor, slot: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``buffer[B, H, S, d]`` with ``value[B, H, 1, d]`` written at ``slot[b]`` for the ``rows`` that are True."""
    index = slot.clamp_max(buffer.shape[2] - 1)[:, None, None, None].expand(-1, buffer.shape[1], 1, buffer.shape[3])
    written = buffer.scatter(2, index, value.to(buffer.dtype))
    return torch.where(rows[:, None, None, None], written, buffer)
