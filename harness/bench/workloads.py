"""What the kernel benchmark measures: one token mixer per (backend, mode), built the way users build it.

Backends are the registry's names plus the naive baselines of ``harness.bench.baselines``. Two scopes:
- ``mixer``: the module as ``attention_zoo.build_mixer`` returns it (projections included);
- ``attention``: the same module with its four d_model x d_model projections (q, k, v, out) replaced by
  identities, so only the attention proper (feature maps, positions, the mixing itself, the output norm)
  is timed. Backends whose projections are not square (the gated units ``flash``, ``flash_quad``; ``mamba2``'s
  expanded values) have no such split and are reported as not applicable.
"""
from __future__ import annotations

from torch import nn

from attention_zoo import available, build_mixer, get_spec
from attention_zoo.mixers.base import MultiHeadMixer
from harness.bench.baselines import BASELINES

MODES = ("causal", "bidirectional")
SCOPES = ("mixer", "attention")


class NotApplicable(Exception):
    """The cell does not exist for this backend (e.g. the attention scope of a gated unit)."""


def backend_names() -> list[str]:
    return [*available(), *BASELINES]


def check_backends(names: list[str]) -> None:
    unknown = [name for name in names if name not in backend_names()]
    if unknown:
        raise ValueError(f"unknown backend(s) {unknown}; valid choices: {backend_names()}")


def is_linear(backend: str, mode: str) -> bool:
    """Whether the registry promises linear time and memory in N for this mode (baselines: no)."""
    if backend in BASELINES:
        return False
    spec = get_spec(backend)
    return spec.linear_causal if mode == "causal" else spec.linear_bidirectional


def build_workload(backend: str, mode: str, d_model: int, n_heads: int, scope: str = "mixer") -> nn.Module:
    """The module one benchmark cell runs forward and backward."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid choices: {list(MODES)}")
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; valid choices: {list(SCOPES)}")
    check_backends([backend])
    causal = mode == "causal"
    if backend in BASELINES:
        module = BASELINES[backend](d_model, n_heads, causal)
    else:
        module = build_mixer(backend, d_model, n_heads, causal)
    if scope == "attention":
        square = all(getattr(getattr(module, name, None), "weight", None) is not None
                     and tuple(getattr(module, name).weight.shape) == (d_model, d_model)
                     for name in ("q_proj", "k_proj", "v_proj", "out_proj"))
        if not isinstance(module, MultiHeadMixer) or not square:  # gated units; Mamba-2's expanded values
            raise NotApplicable(f"{backend} has no square q/k/v/out projections to remove")
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            setattr(module, name, nn.Identity())
    return module
