"""Every backend equals its naive float64 reference: outputs and gradients (input and every parameter), causal
and bidirectional, at lengths around chunk, block and group boundaries, unpadded and in padded batches."""
from __future__ import annotations

import pytest
import torch

from attention_zoo.conformance import TOL_FLOAT64, compare_to_reference
from tests.attention_zoo.cases import (
    DEFAULT_CASES,
    LENGTHS,
    SMALL_CASES,
    SMALL_KNOBS,
    assert_close,
    build,
    inputs,
    padding_mask,
    requires_cuda,
)
from tests.attention_zoo.reference import reference_forward


def check_against_reference(name, knobs, causal, x, mask=None, device="cpu", prepare=None):
    """float64 on both sides at conformance.TOL_FLOAT64 (1e-10): the only differences are rounding (observed
    ~1e-15; room for the different summation orders of chunked algorithms, far below any formula error)."""
    module = build(name, causal, knobs, device=device)
    if prepare is not None:
        prepare(module)
    _, actual, grads = compare_to_reference(module, x, mask, lambda x: reference_forward(name, knobs, module, x, mask))
    return actual, grads


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("name, knobs", SMALL_CASES)
def test_small_knobs_match_reference(name, knobs, causal, length):
    check_against_reference(name, knobs, causal, inputs(2, length))


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("length", [1, 65, 257])
@pytest.mark.parametrize("name, knobs", DEFAULT_CASES)
def test_default_knobs_match_reference(name, knobs, causal, length):
    check_against_reference(name, knobs, causal, inputs(2, length))


@pytest.mark.parametrize("side", ["right", "left", "scattered"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("name, knobs", SMALL_CASES)
def test_padded_batch_matches_each_sequence_alone(name, knobs, causal, side):
    """The reference runs each sequence alone on its real tokens; a fully padded row must stay harmless."""
    lengths, total = [70, 45, 17, 1, 0], 70
    mask = padding_mask(lengths, total, side)
    out, grads = check_against_reference(name, knobs, causal, inputs(len(lengths), total), mask)
    assert (out[mask] == 0).all(), "outputs at padded positions must be zero"
    assert (grads["x"][mask] == 0).all(), "padded tokens must not influence any real output"
    assert all(torch.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("name, knobs", SMALL_CASES)
def test_padding_content_is_ignored(name, knobs, causal):
    """Whatever the padded tokens hold (here huge values), real outputs do not move."""
    x = inputs(3, 50)
    mask = padding_mask([50, 31, 9], 50, "left")
    module = build(name, causal, knobs)
    noisy = torch.where(mask[..., None], 1e4 * torch.randn_like(x), x)
    torch.testing.assert_close(module(noisy, mask), module(x, mask), rtol=0, atol=1e-12)


# Every knob value of the paper's ablations, at one length that spans several blocks and chunks.
KNOB_VARIANTS = [
    ("vanilla", {"impl": "math"}),
    ("vanilla", {"pos": "rope"}),
    ("vanilla", {"pos": "lrpe", "bias": False}),
    ("elu", {"normalize": False, "chunk_size": 16}),
    ("elu", {"eps": 1e-2, "chunk_size": 16}),
    ("performer", {"n_features": 7, "chunk_size": 16}),
    ("performer", {"eps": 1e-2, "chunk_size": 16}),
    ("cosformer", {"max_len": 80, "chunk_size": 16}),
    ("cosformer", {"eps": 1e-1, "chunk_size": 16}),
    ("flash_quad", {"pos": "none", "expansion": 1, "qk_dim": 8}),
    ("flash", {"pos": "none", "group_size": 16, "qk_dim": 8}),
    ("ls", {"window_size": 8, "n_landmarks": 1, "segment_landmarks": 1}),
    ("ls", {"window_size": 8, "segment_landmarks": 3, "relative_positions": False}),
    *[("ls", {"window_size": 8, "n_landmarks": 3, "dual_ln": kind}) for kind in ("model", "head", "none")],
    *[("norm_attention", {"feature_map": f, "chunk_size": 16}) for f in ("elu", "1+elu", "relu", "silu")],
    *[("norm_attention", {"norm": n, "chunk_size": 16}) for n in ("srmsnorm", "rmsnorm", "layernorm", "none")],
    *[("norm_attention", {"pos": p, "chunk_size": 16}) for p in ("none", "rope")],
    *[
        ("diag_attention", {"block_size": 16, "inner": inner, "norm": norm})
        for inner in ("softmax", "relu")
        for norm in ("none", "srmsnorm", "rmsnorm", "layernorm")
    ],
    *[("diag_attention", {"block_size": 16, "pos": p}) for p in ("none", "rope")],
    ("diag_attention", {"block_size": 1}),
    ("transnormer_t1", {"pos": "rope", "layer_index": 2, "n_layers": 4}),
]


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("name, knobs", [pytest.param(n, k, id=f"{n}-{k}") for n, k in KNOB_VARIANTS])
def test_knob_variants_match_reference(name, knobs, causal):
    check_against_reference(name, knobs, causal, inputs(2, 50), padding_mask([50, 33], 50, "right"))


def randomize_ls_offsets(module):
    """Transformer-LS's u, v start at zero and its DualLNs at the identity: move them, so that the outputs
    (not only the gradients) depend on every term of the logits."""
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith(("content_bias", "position_bias", "local_norm", "global_norm")):
                p.add_(0.5 * torch.randn(p.shape, generator=generator, dtype=p.dtype))


@pytest.mark.parametrize("dual_ln", ["model", "head"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("length", [1, 63, 64, 65])
def test_ls_with_moved_position_biases_and_norms_matches_reference(length, causal, dual_ln):
    knobs = SMALL_KNOBS["ls"] | {"dual_ln": dual_ln}
    check_against_reference("ls", knobs, causal, inputs(2, length), prepare=randomize_ls_offsets)
    lengths = [length, max(length - 20, 1)]
    mask = padding_mask(lengths, length, "scattered")
    check_against_reference("ls", knobs, causal, inputs(2, length), mask, prepare=randomize_ls_offsets)


@pytest.mark.parametrize("name", ["norm_attention", "diag_attention"])
def test_batchnorm_output_norm_matches_reference_in_eval(name):
    """BatchNorm (the authors' LRA choice) is bidirectional only; in eval it uses its running statistics."""
    knobs = {"norm": "batchnorm", "block_size": 16} if name == "diag_attention" else {"norm": "batchnorm"}
    module = build(name, False, knobs)
    module.output_norm.norm.running_mean.normal_()
    module.output_norm.norm.running_var.uniform_(0.5, 2.0)
    x = inputs(2, 40)
    assert_close(module(x), reference_forward(name, knobs, module, x), TOL_FLOAT64, "output")


def test_batchnorm_statistics_ignore_padded_tokens():
    """In training, BatchNorm's batch statistics come from real tokens only."""
    module = build("norm_attention", False, {"norm": "batchnorm"}).train()
    x, mask = inputs(2, 30), padding_mask([30, 12], 30, "right")
    noisy = torch.where(mask[..., None], 1e4 * torch.randn_like(x), x)
    torch.testing.assert_close(module(noisy, mask), module(x, mask), rtol=0, atol=1e-12)


@requires_cuda
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("name, knobs", SMALL_CASES)
def test_matches_reference_on_cuda(name, knobs, causal):
    """The same guarantee on the GPU (float64 there too), with a padded batch."""
    x, mask = inputs(2, 65, device="cuda"), padding_mask([65, 30], 65, "left", device="cuda")
    check_against_reference(name, knobs, causal, x, mask, device="cuda")
