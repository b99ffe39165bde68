"""Shared test cases: which backends, with which knobs, how to build them and how to compare tensors."""
from __future__ import annotations

import pytest
import torch

import attention_zoo

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
}
PRESETS = ("transnormer_t1", "transnormer_t2")
PRESET_HALVES = {"diag": {"layer_index": 0, "n_layers": 2}, "norm": {"layer_index": 1, "n_layers": 2}}
CHUNKED = {"elu", "norm_attention", "performer", "cosformer"}  # the backends with a chunk_size knob
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
    torch.manual_seed(seed)
    module = attention_zoo.build_mixer(name, D_MODEL, N_HEADS, causal, **knobs)
    return module.to(device=device, dtype=dtype).eval()


def inputs(batch: int, length: int, *, seed: int = 1, dtype=torch.float64, device="cpu") -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, D_MODEL, generator=generator, dtype=torch.float64).to(device, dtype)


def padding_mask(lengths: list[int], total: int, side: str, *, seed: int = 2, device="cpu") -> torch.Tensor:
    """``[B, total]`` bool (True = padding) with ``lengths[b]`` real tokens on the left (``side="right"``
    padding), on the right (``"left"``), or scattered at random (``"scattered"``)."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.ones(len(lengths), total, dtype=torch.bool)
    for b, n in enumerate(lengths):
        if side == "right":
            mask[b, :n] = False
        elif side == "left":
            mask[b, total - n :] = False
        else:
            mask[b, torch.randperm(total, generator=generator)[:n]] = False
    return mask.to(device)


def relative_error(actual: torch.Tensor, expected: torch.Tensor, floor: float = 0.0) -> float:
    """max |actual - expected| / max(max |expected|, floor) (the plain difference when that is 0).

    ``floor`` keeps a quantity that is zero in exact arithmetic (e.g. the gradient of a key bias under
    softmax) from being judged on its rounding noise alone.
    """
    scale = max(expected.abs().max().item() if expected.numel() else 0.0, floor)
    diff = (actual - expected).abs().max().item() if expected.numel() else 0.0
    return diff / scale if scale > 0 else diff


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: float, what: str, floor: float = 0.0) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    error = relative_error(actual.double(), expected.double(), floor)
    assert error <= tol, f"{what}: relative error {error:.3e} > {tol:.1e}"


def parameters(module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [(name, p) for name, p in module.named_parameters() if p.requires_grad]


def gradients(output: torch.Tensor, x: torch.Tensor, module: torch.nn.Module, weight: torch.Tensor) -> dict:
    """d (output . weight) / d x and every parameter (a parameter the output does not use gets zeros)."""
    named = [("x", x)] + parameters(module)
    grads = torch.autograd.grad((output * weight).sum(), [t for _, t in named], allow_unused=True)
    return {name: torch.zeros_like(t) if g is None else g for (name, t), g in zip(named, grads)}
