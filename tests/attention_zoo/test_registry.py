"""The registry: names, knobs with defaults, capability flags, and clear errors for bad input."""
from __future__ import annotations

import typing

import pytest
import torch

import attention_zoo
from attention_zoo.mixers.gated import GatedAttentionUnit
from attention_zoo.mixers.transnormer import DiagAttention, NormAttention
from tests.attention_zoo.cases import D_MODEL, N_HEADS

NAMES = [
    "vanilla",
    "elu",
    "performer",
    "cosformer",
    "flash_quad",
    "flash",
    "ls",
    "norm_attention",
    "diag_attention",
    "transnormer_t1",
    "transnormer_t2",
    "lightning",
    "retnet",
    "gla",
    "deltanet",
    "gated_deltanet",
    "mamba2",
    "based",
    "hedgehog",
    "relu",
    "relu2",
    "hgrn2",
]

# name: (linear_causal, linear_bidirectional, owns_channel_mixer, prefix_consistent)
FLAGS = {
    "vanilla": (False, False, False, True),
    "elu": (True, True, False, True),
    "performer": (True, True, False, True),
    "cosformer": (True, True, False, False),
    "flash_quad": (False, False, True, False),
    "flash": (True, True, True, True),
    "ls": (False, True, False, True),
    "norm_attention": (True, True, False, True),
    "diag_attention": (True, True, False, True),
    "transnormer_t1": (True, True, False, True),
    "transnormer_t2": (True, True, False, True),
    "lightning": (True, True, False, True),
    "retnet": (True, True, False, True),
    "gla": (True, True, False, True),
    "deltanet": (True, True, False, True),
    "gated_deltanet": (True, True, False, True),
    "mamba2": (True, True, False, True),
    "based": (True, True, False, True),
    "hedgehog": (True, True, False, True),
    "relu": (True, True, False, True),
    "relu2": (True, True, False, True),
    "hgrn2": (True, True, False, True),
}


def test_available_lists_every_backend():
    assert attention_zoo.available() == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_capability_flags(name):
    spec = attention_zoo.get_spec(name)
    assert (spec.linear_causal, spec.linear_bidirectional, spec.owns_channel_mixer, spec.prefix_consistent) == FLAGS[
        name
    ]
    assert not spec.needs_max_length


@pytest.mark.parametrize("name", NAMES)
def test_every_backend_builds_with_its_defaults_and_maps_shapes(name):
    for causal in (True, False):
        module = attention_zoo.build_mixer(name, D_MODEL, N_HEADS, causal)
        assert module(torch.randn(2, 5, D_MODEL)).shape == (2, 5, D_MODEL)


def test_knob_defaults():
    assert attention_zoo.get_spec("flash").knobs["group_size"] == 256
    assert "group_size" not in attention_zoo.get_spec("flash_quad").knobs
    assert attention_zoo.get_spec("diag_attention").knobs["block_size"] == 64
    assert attention_zoo.get_spec("norm_attention").knobs | {} == {
        "feature_map": "1+elu",
        "norm": "srmsnorm",
        "pos": "lrpe",
        "chunk_size": 64,
        "bias": True,
    }
    assert attention_zoo.get_spec("vanilla").knobs["impl"] == "sdpa"
    assert attention_zoo.get_spec("cosformer").knobs["max_len"] is None


@pytest.mark.parametrize("preset, diag, norm", [
    ("transnormer_t1", {"inner": "relu", "norm": "srmsnorm"}, {"feature_map": "elu", "norm": "srmsnorm"}),
    ("transnormer_t2", {"inner": "softmax", "norm": "none"}, {"feature_map": "1+elu", "norm": "srmsnorm"}),
])
def test_presets_build_diag_then_norm(preset, diag, norm):
    """Layers [0, L/2) DiagAttention, [L/2, L) NormAttention, with PAPER.md's knobs (w = 64)."""
    built = [attention_zoo.build_mixer(preset, D_MODEL, N_HEADS, True, layer_index=i, n_layers=6) for i in range(6)]
    assert [type(m) for m in built] == [DiagAttention] * 3 + [NormAttention] * 3
    assert built[0].block_size == 64 and built[0].inner == diag["inner"]
    assert type(built[0].output_norm).__name__ == {"srmsnorm": "SimpleRMSNorm", "none": "Identity"}[diag["norm"]]
    assert type(built[5].output_norm).__name__ == "SimpleRMSNorm"
    assert type(built[0].pos).__name__ == type(built[5].pos).__name__ == "LRPE"


def test_flash_modules():
    flash = attention_zoo.build_mixer("flash", D_MODEL, N_HEADS, True)
    quad = attention_zoo.build_mixer("flash_quad", D_MODEL, N_HEADS, True)
    assert isinstance(flash, GatedAttentionUnit) and flash.group_size == 256
    assert isinstance(quad, GatedAttentionUnit) and quad.group_size is None


# --------------------------------------------------------------------------------------------- errors
def test_unknown_backend_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown attention backend 'softmax'") as error:
        attention_zoo.build_mixer("softmax", D_MODEL, N_HEADS, True)
    assert all(name in str(error.value) for name in NAMES)


def test_unknown_knob_lists_the_valid_knobs():
    with pytest.raises(ValueError, match="unknown knob") as error:
        attention_zoo.build_mixer("norm_attention", D_MODEL, N_HEADS, True, block_size=8)
    assert all(knob in str(error.value) for knob in ("feature_map", "norm", "pos", "chunk_size", "bias"))
    with pytest.raises(ValueError, match="group_size"):  # FLASH-quad's group size is fixed (no groups)
        attention_zoo.build_mixer("flash_quad", D_MODEL, N_HEADS, True, group_size=8)


BAD_VALUES = [
    ("vanilla", {"impl": "flash"}, ["sdpa", "math"]),
    ("vanilla", {"pos": "alibi"}, ["lrpe", "none", "rope"]),
    ("vanilla", {"attn_dropout": 1.5}, ["[0.0, 1.0)"]),
    ("elu", {"normalize": "yes"}, ["True", "False"]),
    ("elu", {"eps": -1.0}, ["[0.0, inf)"]),
    ("elu", {"chunk_size": 0}, ["positive integer"]),
    ("performer", {"n_features": 0}, ["positive integer"]),
    ("performer", {"redraw_interval": -1}, [">= 0"]),
    ("cosformer", {"eps": 0.0}, ["(0.0, inf)"]),
    ("cosformer", {"max_len": 0}, ["positive integer"]),
    ("flash", {"pos": "lrpe"}, ["none", "rope"]),
    ("flash", {"group_size": 0}, ["positive integer"]),
    ("flash_quad", {"qk_dim": 7}, ["even"]),
    ("ls", {"window_size": 7}, ["even"]),
    ("ls", {"n_landmarks": 0}, ["positive integer"]),
    ("ls", {"dual_ln": "batch"}, ["model", "head", "none"]),
    ("ls", {"relative_positions": "yes"}, ["True", "False"]),
    ("norm_attention", {"feature_map": "tanh"}, ["elu", "1+elu", "relu", "silu"]),
    ("norm_attention", {"norm": "groupnorm"}, ["batchnorm", "layernorm", "none", "rmsnorm", "srmsnorm"]),
    ("norm_attention", {"chunk_size": 2.5}, ["positive integer"]),
    ("diag_attention", {"inner": "sigmoid"}, ["softmax", "relu"]),
    ("diag_attention", {"block_size": 0}, ["positive integer"]),
    ("transnormer_t1", {"layer_index": 4, "n_layers": 4}, ["[0, n_layers=4)"]),
    ("transnormer_t2", {"block_size": -1}, ["positive integer"]),
]


@pytest.mark.parametrize("name, knobs, valid", [pytest.param(*case, id=f"{case[0]}-{case[1]}") for case in BAD_VALUES])
def test_bad_knob_value_names_the_knob_and_the_valid_values(name, knobs, valid):
    with pytest.raises(ValueError) as error:
        attention_zoo.build_mixer(name, D_MODEL, N_HEADS, True, **knobs)
    message = str(error.value)
    assert any(knob in message for knob in knobs), message
    assert all(v in message for v in valid), message


@pytest.mark.parametrize("norm", ["batchnorm"])
@pytest.mark.parametrize("name", ["norm_attention", "diag_attention"])
def test_batchnorm_is_refused_in_causal_mode(name, norm):
    """Batch statistics mix positions: a causal model with BatchNorm would see the future."""
    with pytest.raises(ValueError, match="valid choices for causal=True"):
        attention_zoo.build_mixer(name, D_MODEL, N_HEADS, True, norm=norm)
    attention_zoo.build_mixer(name, D_MODEL, N_HEADS, False, norm=norm)


def test_heads_must_divide_the_width():
    with pytest.raises(ValueError, match="not divisible"):
        attention_zoo.build_mixer("vanilla", 30, 4, True)


def test_odd_head_dim_with_rotary_positions_is_an_error():
    with pytest.raises(ValueError, match="even head dimension"):
        attention_zoo.build_mixer("norm_attention", 12, 4, True)  # head_dim 3 with LRPE


def test_ls_relative_positions_need_an_even_width():
    with pytest.raises(ValueError, match="relative_positions"):
        attention_zoo.build_mixer("ls", 5, 5, True)  # sin/cos pairs of a width-5 embedding
    attention_zoo.build_mixer("ls", 5, 5, True, relative_positions=False)
    attention_zoo.build_mixer("ls", 5, 5, False)  # bidirectional: no relative positions


def test_causal_ls_has_the_parameters_of_the_authors_autoregressive_layer():
    """D = 512, 8 heads, rank 1, with q/k/v/out biases (their use_bias=True): 4 (D^2 + D) projections, the
    dynamic projection D -> H r (+ bias), W_r (no bias), W_c (+ bias), u and v [H, d], two LayerNorm(D)."""
    D, H = 512, 8
    with torch.device("meta"):
        module = attention_zoo.build_mixer("ls", D, H, True, segment_landmarks=1)
    expected = 4 * (D * D + D) + (D * H + H) + D * D + (D * D + D) + 2 * D + 2 * 2 * D
    assert sum(p.numel() for p in module.parameters()) == expected
    with torch.device("meta"):  # bidirectional: no relative positions, DualLN over each head's d by default
        module = attention_zoo.build_mixer("ls", D, H, False, n_landmarks=1)
    assert sum(p.numel() for p in module.parameters()) == 4 * (D * D + D) + (D * H + H) + 2 * 2 * (D // H)


# ---------------------------------------------------------------------------------- knob types, by annotation
@pytest.mark.parametrize("annotation, good, bad, expected", [
    (float, [1, 1.5], ["abc", True, None], "float"),
    (int, [3], [2.5, "3", False], "int"),
    (bool, [True], ["yes", 1], "bool"),
    (str, ["rope"], [1, None], "str"),
    (int | None, [None, 4], ["x"], "int or None"),
    (typing.Union[float, str], ["x", 0.5], [None], "float or str"),  # noqa: UP007  (older plugins' spelling)
    (typing.Literal["a", "b"], ["a"], ["c"], "one of ['a', 'b']"),
    (list[int], [[1, 2], []], [[1, "x"], 3], "list"),
    (tuple[float, ...], [[0.9, 0.98]], [["x"]], "a list of float"),
    (dict, [{"a": 1}], [[1]], "a mapping"),
    (typing.Any, ["anything", None], [], ""),
    (torch.Tensor, ["not understood: accepted"], [], ""),
])
def test_knob_values_are_checked_against_annotations(annotation, good, bad, expected):
    from attention_zoo.registry import type_mismatch

    assert all(type_mismatch(value, annotation) is None for value in good)
    assert all(expected in (type_mismatch(value, annotation) or "<fits>") for value in bad)


def test_every_builtin_knob_has_a_resolved_annotation_and_its_default_fits():
    from attention_zoo.registry import check_knob_types, knob_annotations

    for name in NAMES:
        spec = attention_zoo.get_spec(name)
        owned = set(attention_zoo.LayerPreset.BACKBONE_KNOBS) if spec.preset else set()
        assert set(knob_annotations(name)) == set(spec.knobs) - owned, name
        check_knob_types(name, {k: v for k, v in spec.knobs.items() if k not in owned})
    with pytest.raises(ValueError, match=r"knob 'eps' must be float \(its annotation in .*EluLinearAttention\), "
                                         r"got 'abc' \(str\)"):
        check_knob_types("elu", {"eps": "abc"})
    with pytest.raises(ValueError, match="knob 'block_size' must be int"):  # a preset: its parts' annotations
        check_knob_types("transnormer_t2", {"block_size": "64"})
