"""The conformance battery: the properties every token mixer must have, as plain functions.

The project's own tests run the built-in backends through these functions, and ``python -m attention_zoo.check``
runs a user's backend through the same ones. Each check takes ``make(causal, dtype=..., device=..., seed=...)``
(a fresh module in eval mode) and either returns a short figure or raises :class:`ConformanceError` saying what
is wrong and where (the position, the batch row).

- lengths: any N from 1 to 257, odd ones included, gives a finite ``[B, N, D]`` output
- padding: with right, left and scattered padding, values at padded positions never change a real output, and
  each row's real outputs equal those of its real tokens run alone (in a batch whose row 0 is padded and row 1
  is not, so that one row's mask applied to every row shows)
- causality, at N=320 with cuts t spread over it (both sides of 64, 128 and 256, and N-2): replacing the tokens
  after t (also by 30x larger ones) changes no output at or before t, no gradient reaches them from there, and,
  where the backend is prefix-consistent, the outputs at 0..t from ``x[:t+1]`` alone equal the full sequence's.
  The checker reruns it with every chunk/block/group/window size knob at 8 (``small_size_knobs``), so that
  those boundaries are crossed many times
- determinism: two builds under one seed have equal weights and equal outputs
- finiteness: outputs and gradients stay finite for inputs scaled by 1e-3 and 1e3
- bf16: under bf16 autocast the output is within a stated tolerance of fp32
- reference: outputs and gradients equal a float64 reference ``fn(module, x, padding_mask, causal)`` (which must
  return float64) on batches with a right-padded, an unpadded, a left-padded and a scattered-padded row; a
  mismatch names the first batch row and position that differ
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

Make = Callable[..., nn.Module]  # make(causal, *, dtype, device, seed) -> module in eval mode
Reference = Callable[[nn.Module, torch.Tensor, "torch.Tensor | None", bool], torch.Tensor]

LENGTHS = (1, 2, 3, 17, 63, 64, 65, 128, 257)
CAUSAL_LENGTH = 320
# last visible positions: the edges of chunks, blocks, groups and windows of 8, 16, 32, 64, 128 and 256 (a leak
# confined to a later chunk shows only past them), a few in between, and N-2 (only the last token hidden)
CUTS = (0, 7, 8, 15, 16, 31, 40, 63, 64, 65, 100, 127, 128, 129, 191, 200, 255, 256, 257, 300, CAUSAL_LENGTH - 2)
SIZE_KNOB_WORDS = ("chunk", "block", "group", "window")  # chunk_size, block, window_len: a size (is_size_knob)
SMALL_SIZE = 8
TOL_PREFIX = 1e-12  # float64, x[:t+1] against x: only the kernels' blocking may differ
# Perturbing the future changes nothing before it, to the bit, on a CPU (an exclusive prefix sum taken as
# "inclusive minus the own total" once rounded later tokens into earlier outputs: 3% in fp32 at 1e3 inputs).
# On a GPU, kernels may pick their summation order at run time: rounding passes there, a leak does not.
TOL_CAUSAL = 0.0
TOL_CAUSAL_GPU = 1e-12
PADDING_SIDES = ("right", "left", "scattered")
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


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: float, what: str, floor: float = 0.0,
                 rows: Sequence[str] | None = None) -> float:
    """The relative error of ``actual`` against ``expected``, raising past ``tol``; for ``[B, N, D]`` tensors the
    message names the first batch row (``rows[b]`` describes it) and position that differ."""
    if actual.shape != expected.shape:
        raise ConformanceError(f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}")
    if not torch.isfinite(actual).all():
        raise ConformanceError(f"{what}: non-finite values{_where(~torch.isfinite(actual), rows)}")
    error = relative_error(actual.double(), expected.double(), floor)
    if error > tol:
        raise ConformanceError(f"{what}: relative error {error:.3e} > {tol:.1e}"
                               f"{_first_mismatch(actual.double(), expected.double(), tol, floor, rows)}")
    return error


def _first_mismatch(actual: torch.Tensor, expected: torch.Tensor, tol: float, floor: float,
                    rows: Sequence[str] | None) -> str:
    """'; first at batch row b (...), position p (relative error e there)' for ``[B, N, D]``, else ''."""
    if actual.dim() != 3:
        return ""
    scale = max(expected.abs().max().item(), floor) or 1.0
    per_token = (actual - expected).abs().amax(-1).detach() / scale  # [B, N]
    bad = per_token > tol
    if not bad.any():
        return ""
    row, position = (int(v) for v in bad.nonzero()[0])
    return f"{_where(bad, rows)} (relative error {per_token[row, position].item():.2e} there)"


def _where(bad: torch.Tensor, rows: Sequence[str] | None) -> str:
    """'; first at batch row b (rows[b]), position p' of the first True in ``bad`` (row-major), for 3-d or 2-d."""
    bad = bad.any(-1) if bad.dim() == 3 else bad
    if bad.dim() != 2 or not bad.any():
        return ""
    row, position = (int(v) for v in bad.nonzero()[0])
    label = f" ({rows[row]})" if rows else ""
    return f"; first at batch row {row}{label}, position {position}"


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
    out, reference = out.detach(), reference.detach()
    scale = reference.abs().max().item() or 1.0
    change = (out - reference).abs().amax(-1) / scale  # [B, N]
    bad = (~(change <= allowed)).nonzero()  # a NaN that appears is a change too
    if not len(bad):
        return None
    row, position = (int(v) for v in bad[bad[:, 1].argmin()])
    return row, position, float(change[row, position])


def small_size_knobs(knobs: dict) -> dict:
    """The chunk/block/group/window size knobs among ``knobs`` (name -> current value) set to SMALL_SIZE, for
    those above it: the checker reruns causality with them, so that their boundaries fall inside N many times."""
    return {name: SMALL_SIZE for name, value in knobs.items()
            if is_size_knob(name) and isinstance(value, int) and not isinstance(value, bool) and value > SMALL_SIZE}


def is_size_knob(name: str) -> bool:
    """``chunk_size``, ``block``, ``window_size``, ...: a length in tokens, not a count (``n_groups``)."""
    words = name.lower().split("_")
    return words[-1] in SIZE_KNOB_WORDS or (words[-1] in ("size", "len", "length") and
                                            any(word in SIZE_KNOB_WORDS for word in words[:-1]))


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
    """Right, left and scattered padding: the padded tokens' values change no real output, and each row's real
    outputs are those of its real tokens alone."""
    module = make(causal, dtype=torch.float64, device=device)
    d_model = d_model_of(module)
    worst = 0.0
    for side in PADDING_SIDES:
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
        swap = torch.tensor([1, 0, 2], device=device)  # row 0 padded, row 1 not: one row's mask used for all shows
        _check_rows_alone(module, x[swap], mask[swap], side)
    return f"max change {worst:.1e}"


def _check_rows_alone(module: nn.Module, x: torch.Tensor, mask: torch.Tensor, side: str) -> None:
    """Each row's real outputs in the padded batch equal those of its real tokens run alone, unpadded: positions,
    chunks and blocks count real tokens only, and no row reads another row's mask."""
    batched = module(x, mask).detach()
    scale = batched.abs().max().item() or 1.0
    for row in range(x.shape[0]):
        real = (~mask[row]).nonzero()[:, 0]
        if not len(real):
            continue
        alone = module(x[row : row + 1, real], None)[0].detach()
        change = (batched[row, real] - alone).abs().amax(-1) / scale
        bad = (change > TOL_FLOAT64).nonzero()
        if len(bad):
            k = int(bad[0])
            raise ConformanceError(
                f"{side} padding: batch row {row} ({len(real)} real tokens of {x.shape[1]}, in a batch whose row 0 is "
                f"padded) has a real output at position {int(real[k])} that is not what its real tokens give alone "
                f"(relative difference {change[k].item():.2e}): each sequence must get what it gets alone, its "
                "positions, chunks and blocks counting real tokens only, under its own padding mask")


def check_causality(make: Make, cuts: Sequence[int] = CUTS, length: int = CAUSAL_LENGTH, device="cpu",
                    prefix_consistent: bool = True) -> str:
    """No output at or before a cut t depends on a token after t: by replacement, by gradient and (where the
    backend says it is prefix-consistent) against ``x[:t+1]`` run alone. One batch row per cut."""
    module = make(True, dtype=torch.float64, device=device)
    cuts = [c for c in cuts if c < length - 1]
    x = inputs(1, length, d_model_of(module), device=device)
    _check_replaced_future(module, x, cuts)
    _check_future_gradient(module, x, cuts)
    if prefix_consistent:
        _check_prefixes(module, x, cuts)
    return f"N={length}, {len(cuts)} cuts in 0..{max(cuts)}" + (", prefixes alone" if prefix_consistent else "")


def _after(cuts: Sequence[int], x: torch.Tensor) -> torch.Tensor:
    """``[len(cuts), N]`` bool: position j of row i comes after cuts[i]."""
    return torch.arange(x.shape[1], device=x.device)[None, :] > torch.tensor(cuts, device=x.device)[:, None]


def _check_replaced_future(module: nn.Module, x: torch.Tensor, cuts: Sequence[int]) -> None:
    """Row i has the tokens after cuts[i] replaced; its outputs at 0..cuts[i] must equal the unchanged ones (in
    a batch of the same shape, so that the kernels sum in the same order)."""
    batch = x.expand(len(cuts), -1, -1).contiguous()  # laid out as the perturbed batch: the same kernels
    reference = module(batch, None)
    after = _after(cuts, x)[..., None]
    generator = torch.Generator().manual_seed(4)
    for scale in (1.0, 30.0):  # huge values would leak through a global stabiliser or normaliser
        noise = scale * torch.randn(batch.shape, generator=generator, dtype=torch.float64).to(x.device, x.dtype)
        out = module(torch.where(after, noise, batch), None)
        seen = ~after
        found = _first_change(out * seen, reference * seen, TOL_CAUSAL if x.device.type == "cpu" else TOL_CAUSAL_GPU)
        if found:
            row, position, error = found
            raise ConformanceError(f"sees the future: perturbing the tokens after {cuts[row]} changes the output at "
                                   f"position {position} (batch row {row}) by {error:.2e}")


def _check_future_gradient(module: nn.Module, x: torch.Tensor, cuts: Sequence[int]) -> None:
    """No gradient from row i's outputs at 0..cuts[i] reaches its tokens after cuts[i]."""
    batch = x.expand(len(cuts), -1, -1).clone().requires_grad_(True)
    after = _after(cuts, x)
    out = module(batch, None)
    (grad,) = torch.autograd.grad((out * ~after[..., None]).sum(), batch)
    leaked = (grad.abs().amax(-1) != 0) & after
    if leaked.any():
        row, position = (int(v) for v in leaked.nonzero()[0])
        raise ConformanceError(f"sees the future: the token at {position} reaches an output at or before "
                               f"{cuts[row]} through the gradient")


def _check_prefixes(module: nn.Module, x: torch.Tensor, cuts: Sequence[int]) -> None:
    """The outputs at 0..t from ``x[:t+1]`` alone equal the full sequence's (whatever follows t, its output is
    the same)."""
    full = module(x, None)
    for t in cuts:
        found = _first_change(module(x[:, : t + 1], None), full[:, : t + 1], TOL_PREFIX)
        if found:
            _, position, error = found
            raise ConformanceError(
                f"not prefix-consistent: the output at position {position} from the tokens 0..{t} alone differs from "
                f"the full sequence's by {error:.2e} relative (a backend whose outputs depend on the total length "
                "registers prefix_consistent=False)")


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


REFERENCE_ROWS = ("right padding", "no padding", "left padding", "scattered padding")


def reference_batch(n: int, d_model: int, device="cpu") -> tuple[torch.Tensor, torch.Tensor | None, Sequence[str]]:
    """Inputs, padding mask and row labels of the reference comparison at length ``n``: rows padded on the right,
    not at all, on the left and at scattered positions (a mixer assuming right padding passes the first two only);
    no mask at N=1."""
    if n == 1:
        return inputs(2, 1, d_model, device=device), None, ("no padding", "no padding")
    half = max(n // 2, 1)
    mask = torch.cat([padding_mask([half], n, "right"), padding_mask([n], n, "right"), padding_mask([half], n, "left"),
                      padding_mask([half], n, "scattered")])
    return inputs(len(REFERENCE_ROWS), n, d_model, device=device), mask.to(device), REFERENCE_ROWS


def check_reference(make: Make, causal: bool, reference: Reference, lengths: Sequence[int] = (1, 17, 64, 65, 257),
                    tol: float = TOL_FLOAT64, device="cpu") -> str:
    """Outputs and gradients (input and every parameter) equal ``reference`` in float64, under right, left and
    scattered padding."""
    worst = 0.0
    for n in lengths:
        module = make(causal, dtype=torch.float64, device=device)
        x, mask, rows = reference_batch(n, d_model_of(module), device)
        error, _, _ = compare_to_reference(module, x, mask, float64_reference(reference, module, mask, causal),
                                           tol=tol, what=f"N={n}: ", ignore_padded=True, rows=rows)
        worst = max(worst, error)
    return f"max relative error {worst:.1e} (tolerance {tol:g}; right, left and scattered padding)"


def float64_reference(reference: Reference, module: nn.Module, mask: torch.Tensor | None,
                      causal: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> reference(module, x, mask, causal)``, refusing an output that is not float64 (a float32 one
    cannot confirm agreement to TOL_FLOAT64, and would hide the mixer's own float32 shortcuts)."""
    def expected_of(x: torch.Tensor) -> torch.Tensor:
        out = reference(module, x, mask, causal)
        if not isinstance(out, torch.Tensor) or out.dtype != torch.float64:
            got = out.dtype if isinstance(out, torch.Tensor) else type(out).__name__
            raise ConformanceError(f"the reference returned {got} for float64 inputs: it must compute and return "
                                   "float64")
        return out

    return expected_of


def compare_to_reference(module: nn.Module, x: torch.Tensor, mask: torch.Tensor | None, expected_of,
                         *, tol: float = TOL_FLOAT64, what: str = "", ignore_padded: bool = False,
                         rows: Sequence[str] | None = None):
    """Output and gradients (input and every parameter) of ``module`` on ``x`` against ``expected_of(x)``
    within ``tol``; ``ignore_padded``: compare real tokens only (a reference may leave padded outputs
    unspecified); ``rows``: what each batch row is, for the message. Returns (the largest relative error, the
    raw output, its gradients)."""
    x = x.clone().requires_grad_(True)
    weight = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype).to(x.device)
    raw, expected = module(x, mask), expected_of(x)
    actual = raw
    if ignore_padded and mask is not None:
        actual, expected = raw.masked_fill(mask[..., None], 0), expected.masked_fill(mask[..., None], 0)
    worst = assert_close(actual, expected, tol, f"{what}output", rows=rows)
    got, want = gradients(actual, x, module, weight), gradients(expected, x, module, weight)
    largest = max(g.abs().max().item() for g in want.values() if g.numel())
    for name in got:  # the floor: gradients that vanish in exact arithmetic
        worst = max(worst, assert_close(got[name], want[name], tol, f"{what}gradient of {name}", 1e-4 * largest,
                                        rows=rows if name == "x" else None))
    return worst, raw, got


def battery(make: Make, causal: bool, reference: Reference | None = None, device="cpu", *,
            prefix_consistent: bool = True, small: tuple[str, Make] | None = None) -> list[tuple[str, Any]]:
    """The checks for one mode, as (name, thunk) pairs, in the order the checker prints them. ``small``: (a label
    such as "chunk_size=8", the ``make`` with those knobs) for a second causality check."""
    causality = [("causality", lambda: check_causality(make, device=device, prefix_consistent=prefix_consistent))]
    if small is not None:
        label, make_small = small
        causality.append((f"causality ({label})", lambda: check_causality(
            make_small, device=device, prefix_consistent=prefix_consistent)))
    checks = [
        ("lengths 1..257", lambda: check_lengths(make, causal, device=device)),
        ("padding", lambda: check_padding(make, causal, device=device)),
        *(causality if causal else []),
        ("determinism", lambda: check_determinism(make, causal, device=device)),
        ("finite at 1e-3 / 1e3", lambda: check_finite(make, causal, device=device)),
        ("bf16 autocast", lambda: check_bf16(make, causal, device=device)),
    ]
    if reference is not None:
        checks.append(("float64 reference", lambda: check_reference(make, causal, reference, device=device)))
    return checks
