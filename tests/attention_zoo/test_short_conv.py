"""The short convolution convention (``short_conv = K``): ``mixer(conv(x))`` for every backend, exact against the
float64 reference (a naive convolution loop, then the backend's materialised reference) in both modes, with
padding on any side, outputs and gradients; causal; decoding from a state equals the parallel form; the backbone
option, its parameters and its checks."""
from __future__ import annotations

import pytest
import torch

import attention_zoo
from attention_zoo.short_conv import ShortConvMixer
from tests.attention_zoo.cases import D_MODEL, SMALL_CASES, build, inputs, padding_mask, relative_error
from tests.attention_zoo.reference import reference_sequence, short_conv
from tests.attention_zoo.test_decoding import PREFIX_ONLY, decode

TOL = 1e-10
KERNEL = 4
CASES = [p for p in SMALL_CASES if p.values[0] not in PREFIX_ONLY]  # flash_quad divides by the length


def wrapped(name: str, causal: bool, knobs: dict) -> ShortConvMixer:
    inner = build(name, causal, knobs)
    torch.manual_seed(5)
    return ShortConvMixer(inner, D_MODEL, KERNEL).to(torch.float64).eval()


def reference(name: str, knobs: dict, module: ShortConvMixer, x: torch.Tensor, mask: torch.Tensor | None):
    """Each sequence alone: its real tokens convolved by the naive loop, then the backend's reference."""
    outputs = []
    for b in range(x.shape[0]):
        real = torch.ones(x.shape[1], dtype=torch.bool) if mask is None else ~mask[b]
        out = torch.zeros_like(x[b])
        seq = short_conv(module.conv, x[b][real])
        outputs.append(out.index_put((real.nonzero()[:, 0],), reference_sequence(name, knobs, module.mixer, seq)))
    return torch.stack(outputs)


@pytest.mark.parametrize("side", ["none", "right", "left", "middle"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("name, knobs", CASES)
def test_outputs_and_gradients_match_the_float64_reference(name, knobs, causal, side):
    module = wrapped(name, causal, knobs)
    x = inputs(2, 37).requires_grad_(True)
    mask = None if side == "none" else padding_mask([37, 23], 37, side)
    got = module(x, mask)
    want = reference(name, knobs, module, x, mask)
    assert relative_error(got, want) <= TOL
    cotangent = torch.randn_like(got)
    grads = torch.autograd.grad((got * cotangent).sum(), [x, module.conv.weight])
    expected = torch.autograd.grad((want * cotangent).sum(), [x, module.conv.weight])
    for g, e in zip(grads, expected):
        assert relative_error(g, e) <= TOL


@pytest.mark.parametrize("name, knobs", CASES)
def test_a_later_token_never_changes_an_earlier_output(name, knobs):
    module = wrapped(name, True, knobs)
    x = inputs(1, 40)
    changed = x.clone()
    changed[:, 25:] += 1.0
    with torch.no_grad():
        assert torch.equal(module(x)[:, :25], module(changed)[:, :25])


@pytest.mark.parametrize("name, knobs", [p for p in CASES if p.values[0] != "cosformer"])
def test_decoding_from_a_state_equals_the_parallel_form(name, knobs):
    module = wrapped(name, True, knobs)
    x = inputs(2, 30)
    got, state = decode(module, x, [11, 3])
    with torch.no_grad():
        assert relative_error(got, module(x)) <= TOL
    assert state.tensors["conv"].shape == (2, KERNEL - 1, D_MODEL)
    mask = padding_mask([30, 19], 30, "left")  # prompts of different lengths, left-padded
    got, _ = decode(module, x, [14], mask)
    with torch.no_grad():
        want = module(x, mask)
    assert relative_error(got[~mask], want[~mask]) <= TOL


def test_the_backbone_option_wraps_every_layer_and_counts_its_parameters():
    sizes = {"d_model": 32, "n_layers": 3, "n_heads": 4}
    plain = attention_zoo.build_backbone("norm_attention", sizes)
    convolved = attention_zoo.build_backbone("norm_attention", sizes | {"short_conv": KERNEL})
    assert all(isinstance(block.mixer, ShortConvMixer) for block in convolved.blocks)
    extra = sum(p.numel() for p in convolved.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == 3 * (32 * KERNEL + 32)  # a depthwise kernel and a bias per layer
    for wrong in (-1, 2.5, True):
        with pytest.raises(ValueError, match="short_conv"):
            attention_zoo.build_backbone("norm_attention", sizes | {"short_conv": wrong})


def test_the_run_config_takes_it_under_model_and_keeps_old_hashes():
    from harness.config import config_hash, resolved_dict, validate
    from tests.harness.conftest import SMOKE, compose_config

    plain = compose_config(*SMOKE, "attention=gla")
    zero = resolved_dict(plain)
    assert zero["model"]["short_conv"] == 0
    before = dict(zero, model={k: v for k, v in zero["model"].items() if k != "short_conv"})
    assert config_hash(zero) == config_hash(before)  # runs recorded before the option keep their folders
    four = compose_config(*SMOKE, "attention=gla", "model.short_conv=4")
    validate(four)
    assert config_hash(resolved_dict(four)) != config_hash(zero)
