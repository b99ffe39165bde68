"""Shared test cases: which backends, with which knobs, how to build them and how to compare tensors."""
from __future__ import annotations

import pytest
import torch

import attention_zoo
from attention_zoo import conformance
from attention_zoo.check import maker
from attention_zoo.conformance import assert_close, gradients, padding_mask, parameters, relative_error

__all__ = ["assert_close", "gradients", "padding_mask", "parameters", "relative_error"]  # the battery's helpers

D_MODEL, N_HEADS = 32, 4
LENGTHS = [1, 63, 64, 65, 257]

# Small blocks, chunks, groups and windows, so that the lengths above span many of them cheaply.
SMALL_KNOBS = {
    "vanilla": {},
    "elu": {"chunk_size": 16},
    "performer": {"chunk_size": 16, "n_features": 24},
    "cosformer": {"chunk_size": 16},
    "flash_quad": {"qk_dim": 16},
    "flash": {"group_size": 32, "qk_dim": 16},
    "ls": {"window_size": 16, "n_landmarks": 4, "segment_landmarks": 2},
    "norm_attention": {"chunk_size": 16},
    "diag_attention": {"block_size": 16},
    "transnormer_t1": {"block_size": 16, "chunk_size": 16},
    "transnormer_t2": {"block_size": 16, "chunk_size": 16},
    "lightning": {"chunk_size": 16},
    "retnet": {"chunk_size": 16},
    "gla": {"chunk_size": 8},
    "deltanet": {"chunk_size": 8},
    "gated_deltanet": {"chunk_size": 8},
    "mamba2": {"chunk_size": 8, "d_state": 8},
    "based": {"chunk_size": 16, "feature_dim": 4},
    "hedgehog": {"chunk_size": 16, "feature_dim": 6},
    "relu": {"chunk_size": 16},
    "relu2": {"chunk_size": 16},
    "hgrn2": {"chunk_size": 8, "layer_index": 1, "n_layers": 2},  # lower bound 1/2 (the defaults: none)
}
PRESETS = ("transnormer_t1", "transnormer_t2")
PRESET_HALVES = {"diag": {"layer_index": 0, "n_layers": 2}, "norm": {"layer_index": 1, "n_layers": 2}}
CHUNKED = {"elu", "norm_attention", "performer", "cosformer", "lightning", "retnet", "gla", "deltanet",
           "gated_deltanet", "mamba2", "based", "hedgehog", "relu", "relu2", "hgrn2"}  # with a chunk_size
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=requires_cuda)]


def cases(knob_set: dict[str, dict]) -> list:
    """One pytest param per backend (two per preset: its Diag half and its Norm half)."""
    params = []
    for name in attention_zoo.available():
        knobs = knob_set.get(name, {})
        if name in PRESETS:
            params += [pytest.param(name, knobs | half, id=f"{name}-{part}") for part, half in PRESET_HALVES.items()]
        else:
            params.append(pytest.param(name, knobs, id=name))
    return params


SMALL_CASES = cases(SMALL_KNOBS)
DEFAULT_CASES = cases({})


def build(name: str, causal: bool, knobs: dict, *, seed: int = 0, dtype=torch.float64, device="cpu"):
    """The module in eval mode (no dropout, no Performer redraw), in ``dtype`` on ``device``."""
    return make_for(name, knobs)(causal, seed=seed, dtype=dtype, device=device)


def make_for(name: str, knobs: dict):
    """The conformance battery's ``make(causal, dtype=, device=, seed=)`` for a built-in backend: the
    checker's own (``attention_zoo.check.maker``) at the tests' sizes."""
    return maker(name, knobs, D_MODEL, N_HEADS)


def inputs(batch: int, length: int, *, seed: int = 1, dtype=torch.float64, device="cpu") -> torch.Tensor:
    return conformance.inputs(batch, length, D_MODEL, seed=seed, dtype=dtype, device=device)
