"""The conformance battery: the properties every token mixer must have, as plain functions.

The project's own tests run the built-in backends through these functions, and ``python -m attention_zoo.check``
runs a user's backend through the same ones. Each check takes ``make(causal, dtype=..., device=..., seed=...)``
(a fresh module in eval mode) and either returns a short figure or raises :class:`ConformanceError` saying what
is wrong and where (the position, the batch row).

- lengths: any N from 1 to 257, odd ones included, gives a finite ``[B, N, D]`` output
- padding: values at padded positions never change an unpadded output (right and left padding)
- causality: perturbing the tokens after t changes no output at or before t, and no gradient reaches them
- determinism: two builds under one seed have equal weights and equal outputs
- finiteness: outputs and gradients stay finite for inputs scaled by 1e-3 and 1e3
- bf16: under bf16 autocast the output is within a stated tolerance of fp32
- reference: outputs and gradients equal a float64 reference ``fn(module, x, padding_mask, causal)``
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

Make = Callable[..., nn.Module]  # make(causal, *, dtype, device, seed) -> module in eval mode
Reference = Callable[[nn.Module, torch.Tensor, "torch.Tensor | None", bool], torch.Tensor]

LENGTHS = (1, 2, 3, 17, 63, 64, 65, 128, 257)
CUTS = (0, 15, 16, 31, 40, 63)  # last visible positions: chunk, block, group and window edges of small knobs
TOL_FLOAT64 = 1e-10  # float64 against a reference: only summation order differs (observed ~1e-15)
# Under bf16 autocast the output is within 5e-2 of fp32, relative to the largest fp32 output (bf16 keeps an
# 8-bit mantissa, ~4e-3 per rounding). Tokens whose output comes from normalising a near-zero vector (a norm
# over the attention output rescales it to unit RMS, amplifying its rounding) are not compared.
TOL_BF16 = 5e-2


class ConformanceError(AssertionError):
    """A mixer breaks a property; the message says which, where and by how much."""


# ------------------------------------------------------------------------------------------ helpers
def inputs(batch: int, length: int, d_model: int, *, seed: int = 1, dtype=torch.float64, device="cpu"):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, d_model, generator=generator, dtype=torch.float64).to(device, dtype)


def padding_mask(lengths: Sequence[int], total: int, side: str, *, seed: int = 2, device="cpu") -> torch.Tensor:
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


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: float, what: str, floor: float = 0.0) -> float:
    if actual.shape != expected.shape:
        raise ConformanceError(f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}")
    if not torch.isfinite(actual).all():
        raise ConformanceError(f"{what}: non-finite values")
    error = relative_error(actual.double(), expected.double(), floor)
    if error > tol:
        raise ConformanceError(f"{what}: relative error {error:.3e} > {tol:.1e}")
    return error


def parameters(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [(name, p) for name, p in module.named_parameters() if p.requires_grad]


def gradients(output: torch.Tensor, x: torch.Tensor, module: nn.Module, weight: torch.Tensor) -> dict:
    """d (output . weight) / d x and every parameter (a parameter the output does not use gets zeros)."""
    named = [("x", x)] + parameters(module)
    grads = torch.autograd.grad((output * weight).sum(), [t for _, t in named], allow_unused=True)
    return {name: torch.zeros_like(t) if g is None else g for (name, t), g in zip(named, grads)}


def d_model_of(module: nn.Module) -> int:
    for attribute in ("d_model", "dim", "embed_dim"):
        if isinstance(getattr(module, attribute, None), int):
            return getattr(module, attribute)
    first = next((p for p in module.parameters() if p.dim() == 2), None)
    if first is None:
        raise ConformanceError("cannot tell the model width: give the module a d_model attribute")
    return first.shape[1]


def _first_change(out: torch.Tensor, reference: torch.Tensor, allowed: float) -> tuple[int, int, float] | None:
    """(batch row, position, relative change) of the first output position that changed, or None."""
    scale = reference.abs().max().item() or 1.0
    change = (out - reference).abs().amax(-1) / scale  # [B, N]
    bad = (change > allowed).nonzero()
    if not len(bad):
        return None
    row, position = (int(v) for v in bad[bad[:, 1].argmin()])
    return row, position, float(change[row, position])


# ------------------------------------------------------------------------------------------- checks
def check_lengths(make: Make, causal: bool, lengths: Sequence[int] = LENGTHS, device="cpu") -> str:
    module = make(causal, dtype=torch.float64, device=device)
    d_model = d_model_of(module)
    for n in lengths:
        x = inputs(2, n, d_model, device=device)
        try:
            out = module(x, None)
        except Exception as err:
            raise ConformanceError(f"N={n}: {type(err).__name__}: {err}") from err
        if tuple(out.shape) != (2, n, d_model):
            raise ConformanceError(f"N={n}: output shape {tuple(out.shape)}, expected {(2, n, d_model)}")
        if not torch.isfinite(out).all():
            raise ConformanceError(f"N={n}: non-finite output")
    return f"N in {list(lengths)}"


def check_padding(make: Make, causal: bool, length: int = 50, device="cpu") -> str:
    """Right and left padding (and scattered, bidirectionally): the padded tokens' values change no real output."""
    module = make(causal, dtype=torch.float64, device=device)
    d_model = d_model_of(module)
    worst = 0.0
    for side in ("right", "left") if causal else ("right", "left", "scattered"):
        x, mask = inputs(3, length, d_model, device=device), padding_mask([length, 37, 5], length, side, device=device)
        reference = module(x, mask)
        changed = torch.where(mask[..., None], 30 * torch.randn_like(x), x)
        out = module(changed, mask)
        real = ~mask[..., None]
        found = _first_change(out * real, reference * real, 1e-12)
        if found:
            row, position, error = found
            raise ConformanceError(f"{side} padding leaks: changing the padded tokens of batch row {row} changes "
                                   f"its real output at position {position} (by {error:.2e} relative)")
        worst = max(worst, relative_error(out * real, reference * real))
    return f"max change {worst:.1e}"


def check_causality(make: Make, cuts: Sequence[int] = CUTS, length: int = 70, device="cpu") -> str:
    module = make(True, dtype=torch.float64, device=device)
    d_model = d_model_of(module)
    x = inputs(2, length, d_model, device=device)
    reference = module(x, None)
    allowed = 0.0 if device == "cpu" else 1e-12  # bitwise on CPU; GPU kernels may reorder sums
    for t in (c for c in cuts if c < length - 1):
        for scale in (1.0, 30.0):  # huge values would leak through a global stabiliser or normaliser
            changed = x.clone()
            changed[:, t + 1 :] = scale * torch.randn_like(changed[:, t + 1 :])
            found = _first_change(module(changed, None)[:, : t + 1], reference[:, : t + 1], allowed)
            if found:
                row, position, error = found
                raise ConformanceError(f"sees the future: perturbing the tokens after {t} changes the output at "
                                       f"position {position} (batch row {row}) by {error:.2e}")
        x_grad = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(module(x_grad, None)[:, : t + 1].sum(), x_grad)
        leaked = (grad[:, t + 1 :].abs().amax(-1) != 0).nonzero()
        if len(leaked):
            row, position = (int(v) for v in leaked[0])
            raise ConformanceError(f"sees the future: the token at {t + 1 + position} (batch row {row}) reaches "
                                   f"an output at or before {t} through the gradient")
    return f"cuts {[c for c in cuts if c < length - 1]}"


def check_determinism(make: Make, causal: bool = True, device="cpu") -> str:
    first, second = make(causal, seed=5, device=device), make(causal, seed=5, device=device)
    for (key, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        if not torch.equal(a, b):
            raise ConformanceError(f"{key} differs between two builds under the same seed")
    x = inputs(2, 40, d_model_of(first), device=device)
    if not torch.equal(first(x, None), second(x, None)):
        raise ConformanceError("two builds under the same seed give different outputs")
    return "same weights, same outputs"


def check_finite(make: Make, causal: bool, scales: Sequence[float] = (1e-3, 1e3), device="cpu") -> str:
    module = make(causal, dtype=torch.float32, device=device)
    d_model = d_model_of(module)
    for scale in scales:
        x = (scale * inputs(3, 70, d_model, dtype=torch.float32, device=device)).requires_grad_(True)
        mask = padding_mask([70, 20, 0], 70, "right", device=device)
        out = module(x, mask)
        if not torch.isfinite(out).all():
            raise ConformanceError(f"non-finite output for inputs scaled by {scale:g}")
        grads = gradients(out, x, module, torch.ones_like(out))
        bad = [name for name, g in grads.items() if not torch.isfinite(g).all()]
        if bad:
            raise ConformanceError(f"non-finite gradient of {bad[:3]} for inputs scaled by {scale:g}")
    return f"scales {[f'{s:g}' for s in scales]}"


def well_conditioned_tokens(module: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``[B, N]`` bool: the tokens whose output does not come from normalising a near-zero vector."""
    norm = getattr(module, "output_norm", None)
    if norm is None or type(norm).__name__ == "Identity":
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    captured = []
    handle = norm.register_forward_hook(lambda _, args, __: captured.append(args[0].detach()))
    module(x, mask)
    handle.remove()
    rms = captured[0].pow(2).mean(-1).sqrt()
    return rms >= 1e-2 * rms.median()


def check_bf16(make: Make, causal: bool, tol: float = TOL_BF16, device="cpu") -> str:
    module = make(causal, dtype=torch.float32, device=device)
    d_model = d_model_of(module)
    x = inputs(2, 257, d_model, dtype=torch.float32, device=device)
    mask = padding_mask([257, 100], 257, "right", device=device)
    expected = module(x, mask)
    compared = well_conditioned_tokens(module, x, mask) & ~mask
    if compared.sum() < 0.9 * (~mask).sum():
        raise ConformanceError("too few well-conditioned tokens for a meaningful bf16 comparison")
    x = x.clone().requires_grad_(True)
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        out = module(x, mask)
    error = assert_close(out.float()[compared], expected[compared], tol, "bf16 autocast output")
    grads = gradients(out.float(), x, module, torch.ones_like(expected))
    if not all(torch.isfinite(g).all() for g in grads.values()):
        raise ConformanceError("non-finite gradient under bf16 autocast")
    return f"relative error {error:.1e} (tolerance {tol:g})"


def check_reference(make: Make, causal: bool, reference: Reference, lengths: Sequence[int] = (1, 17, 64, 65, 257),
                    mask_side: str | None = "right", tol: float = TOL_FLOAT64, device="cpu") -> str:
    """Outputs and gradients (input and every parameter) equal ``reference`` in float64."""
    worst = 0.0
    for n in lengths:
        module = make(causal, dtype=torch.float64, device=device)
        x = inputs(2, n, d_model_of(module), device=device)
        mask = padding_mask([n, max(n // 2, 1)], n, mask_side, device=device) if mask_side and n > 1 else None
        error, _, _ = compare_to_reference(module, x, mask, lambda x, m=module, p=mask: reference(m, x, p, causal),
                                           tol=tol, what=f"N={n}: ", ignore_padded=True)
        worst = max(worst, error)
    return f"max relative error {worst:.1e} (tolerance {tol:g})"


def compare_to_reference(module: nn.Module, x: torch.Tensor, mask: torch.Tensor | None, expected_of,
                         *, tol: float = TOL_FLOAT64, what: str = "", ignore_padded: bool = False):
    """Output and gradients (input and every parameter) of ``module`` on ``x`` against ``expected_of(x)``
    within ``tol``; ``ignore_padded``: compare real tokens only (a reference may leave padded outputs
    unspecified). Returns (the largest relative error, the raw output, its gradients)."""
    x = x.clone().requires_grad_(True)
    weight = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype).to(x.device)
    raw, expected = module(x, mask), expected_of(x)
    actual = raw
    if ignore_padded and mask is not None:
        actual, expected = raw.masked_fill(mask[..., None], 0), expected.masked_fill(mask[..., None], 0)
    worst = assert_close(actual, expected, tol, f"{what}output")
    got, want = gradients(actual, x, module, weight), gradients(expected, x, module, weight)
    largest = max(g.abs().max().item() for g in want.values() if g.numel())
    for name in got:  # the floor: gradients that vanish in exact arithmetic
        worst = max(worst, assert_close(got[name], want[name], tol, f"{what}gradient of {name}", 1e-4 * largest))
    return worst, raw, got


def battery(make: Make, causal: bool, reference: Reference | None = None, device="cpu") -> list[tuple[str, Any]]:
    """The checks for one mode, as (name, thunk) pairs, in the order the checker prints them."""
    checks = [
        ("lengths 1..257", lambda: check_lengths(make, causal, device=device)),
        ("padding", lambda: check_padding(make, causal, device=device)),
        *([("causality", lambda: check_causality(make, device=device))] if causal else []),
        ("determinism", lambda: check_determinism(make, causal, device=device)),
        ("finite at 1e-3 / 1e3", lambda: check_finite(make, causal, device=device)),
        ("bf16 autocast", lambda: check_bf16(make, causal, device=device)),
    ]
    if reference is not None:
        checks.append(("float64 reference", lambda: check_reference(make, causal, reference, device=device)))
    return checks
