"""Backbones: layer plans put the intended mixer in every layer; blocks wire norms, residuals and channel
mixers as configured; a padded batch equals each sequence alone; causal backbones are causal."""
from __future__ import annotations

import pytest
import torch

from attention_zoo import build_backbone
from attention_zoo.backbone import Block, FeedForward, GatedLinearUnit, ParallelMixers
from attention_zoo.mixers.gated import GatedAttentionUnit
from attention_zoo.mixers.kernel import CosFormerAttention, EluLinearAttention
from attention_zoo.mixers.performer import PerformerAttention
from attention_zoo.mixers.softmax import SoftmaxAttention
from attention_zoo.mixers.transnormer import FEATURE_MAPS, DiagAttention, NormAttention
from attention_zoo.norms import LayerNorm, SimpleRMSNorm
from tests.attention_zoo.cases import padding_mask

SIZES = {"d_model": 32, "n_heads": 4, "n_layers": 4, "max_len": 128, "dropout": 0.0}
Diag, Norm = DiagAttention, NormAttention


def kinds(backbone) -> list:
    """Per layer: the mixer's class, or a tuple of classes for parallel mixers."""
    out = []
    for block in backbone.blocks:
        mixer = block.mixer
        out.append(tuple(type(m) for m in mixer.mixers) if isinstance(mixer, ParallelMixers) else type(mixer))
    return out


def mixers(backbone) -> list:
    return [m for block in backbone.blocks for m in getattr(block.mixer, "mixers", [block.mixer])]


# ------------------------------------------------------------------------------------------ layer plans
@pytest.mark.parametrize("preset", ["transnormer_t1", "transnormer_t2"])
def test_preset_without_plan_is_diag_then_norm(preset):
    assert kinds(build_backbone(preset, **SIZES)) == [Diag, Diag, Norm, Norm]
    assert kinds(build_backbone(preset, **(SIZES | {"n_layers": 6}))) == [Diag] * 3 + [Norm] * 3


@pytest.mark.parametrize("k", range(5))
@pytest.mark.parametrize("preset", ["transnormer_t1", "transnormer_t2"])
def test_split_and_reverse_split_at_every_layer(preset, k):
    split = build_backbone({"name": preset, "layer_plan": f"split:{k}"}, **SIZES)
    assert kinds(split) == [Diag] * k + [Norm] * (4 - k)
    reverse = build_backbone({"name": preset, "layer_plan": f"reverse_split:{k}"}, **SIZES)
    assert kinds(reverse) == [Norm] * k + [Diag] * (4 - k)


@pytest.mark.parametrize(
    "preset, inner, feature_map", [("transnormer_t1", "relu", "elu"), ("transnormer_t2", "softmax", "1+elu")]
)
def test_plans_keep_the_preset_knobs(preset, inner, feature_map):
    backbone = build_backbone(
        {"name": preset, "layer_plan": "alternate", "block_size": 16, "chunk_size": 8, "pos": "rope"}, **SIZES
    )
    assert kinds(backbone) == [Diag, Norm, Diag, Norm]
    for m in mixers(backbone):
        assert type(m.pos).__name__ == "RoPE"
        if isinstance(m, Diag):
            assert (m.block_size, m.inner) == (16, inner)
        else:
            assert m.chunk_size == 8 and m.feature_map is FEATURE_MAPS[feature_map]


def test_parallel_plan_sums_diag_and_norm():
    backbone = build_backbone({"name": "transnormer_t2", "layer_plan": "parallel"}, **SIZES)
    assert kinds(backbone) == [(Diag, Norm)] * 4
    block = backbone.blocks[0].eval()
    x = torch.randn(2, 10, 32)
    expected = sum(m(x) for m in block.mixer.mixers)
    torch.testing.assert_close(block.mixer(x), expected)


def test_general_plans():
    split = build_backbone({"name": "elu", "layer_plan": {"split": 1, "first": "elu", "second": "vanilla"}}, **SIZES)
    assert kinds(split) == [EluLinearAttention] + [SoftmaxAttention] * 3
    alternate = build_backbone({"name": "elu", "layer_plan": {"alternate": ["performer", "cosformer"]}}, **SIZES)
    assert kinds(alternate) == [PerformerAttention, CosFormerAttention] * 2
    parallel = build_backbone({"name": "elu", "layer_plan": {"parallel": ["elu", "vanilla"]}}, **SIZES)
    assert kinds(parallel) == [(EluLinearAttention, SoftmaxAttention)] * 4
    listed = build_backbone(
        {
            "name": "elu",
            "layer_plan": [
                "elu",
                {"name": "vanilla", "impl": "math"},
                {"parallel": ["norm_attention", {"name": "diag_attention", "block_size": 8}]},
                "flash",
            ],
        },
        **SIZES,
    )
    assert kinds(listed) == [EluLinearAttention, SoftmaxAttention, (Norm, Diag), GatedAttentionUnit]
    assert listed.blocks[1].mixer.impl == "math" and listed.blocks[2].mixer.mixers[1].block_size == 8
    plain = build_backbone({"name": "cosformer", "chunk_size": 16}, **SIZES)
    assert kinds(plain) == [CosFormerAttention] * 4 and all(m.chunk_size == 16 for m in mixers(plain))


@pytest.mark.parametrize(
    "attention, message",
    [
        ({"name": "transnormer_t2", "layer_plan": "split:5"}, "outside"),
        ({"name": "transnormer_t2", "layer_plan": "zigzag"}, "split:k"),
        ({"name": "elu", "layer_plan": "alternate"}, "transnormer_t1"),
        ({"name": "elu", "layer_plan": ["elu", "elu"]}, "n_layers=4"),
        ({"name": "elu", "layer_plan": [3, 3, 3, 3]}, "invalid layer spec"),
        ({"name": "elu", "layer_plan": {"split": 2, "first": "elu", "second": "nope"}}, "valid choices"),
        ({"name": "nope"}, "valid choices"),
        ({"name": "elu", "block_size": 4}, "valid knobs"),
    ],
)
def test_bad_plans_are_clear_errors(attention, message):
    with pytest.raises(ValueError, match=message):
        build_backbone(attention, **SIZES)


@pytest.mark.parametrize(
    "option, message",
    [({"norm": "groupnorm"}, "srmsnorm"), ({"channel_mixer": "moe"}, "glu"), ({"n_layer": 2}, "n_layers")],
)
def test_bad_backbone_options_are_clear_errors(option, message):
    with pytest.raises(ValueError, match=message):
        build_backbone("elu", **(SIZES | option))


# ------------------------------------------------------------------------------------------------- blocks
def test_prenorm_block_wiring():
    backbone = build_backbone("transnormer_t2", **SIZES).eval()
    assert isinstance(backbone.final_norm, SimpleRMSNorm)
    block, x = backbone.blocks[0], torch.randn(2, 12, 32)
    h = x + block.mixer(block.mixer_norm(x))
    torch.testing.assert_close(block(x), h + block.channel_mixer(block.channel_norm(h)))
    manual = backbone.positions(x)
    for block in backbone.blocks:
        manual = block(manual)
    torch.testing.assert_close(backbone(x), backbone.final_norm(manual))


def test_postnorm_block_wiring():
    backbone = build_backbone("transnormer_t2", **(SIZES | {"prenorm": False, "norm": "layernorm"})).eval()
    assert backbone.final_norm is None
    block, x = backbone.blocks[0], torch.randn(2, 12, 32)
    assert isinstance(block.mixer_norm, LayerNorm)
    h = block.mixer_norm(x + block.mixer(x))
    torch.testing.assert_close(block(x), block.channel_norm(h + block.channel_mixer(h)))


def test_channel_mixers():
    glu = build_backbone("elu", **SIZES)
    assert all(isinstance(b.channel_mixer, GatedLinearUnit) for b in glu.blocks)
    assert glu.blocks[0].channel_mixer.w1.out_features == int(8 / 3 * 32)
    ffn = build_backbone("elu", **(SIZES | {"channel_mixer": "ffn", "activation": "relu"}))
    assert all(isinstance(b.channel_mixer, FeedForward) for b in ffn.blocks)
    assert ffn.blocks[0].channel_mixer.fc1.out_features == 4 * 32
    assert ffn.blocks[0].channel_mixer.activation is torch.nn.functional.relu
    sized = build_backbone("elu", **(SIZES | {"hidden_dim": 48}))
    assert sized.blocks[0].channel_mixer.w1.out_features == 48


@pytest.mark.parametrize("channel_mixer", ["glu", "ffn"])
def test_activation_dropout_reaches_the_channel_mixer(channel_mixer):
    """model.activation_dropout is the channel mixer's own dropout (before, its dropout was never set)."""
    backbone = build_backbone("elu", **(SIZES | {"channel_mixer": channel_mixer, "activation_dropout": 0.4,
                                                 "dropout": 0.0}))
    assert all(b.channel_mixer.dropout.p == 0.4 for b in backbone.blocks)
    x = torch.randn(2, 9, 32)
    assert not torch.equal(backbone.train()(x), backbone.eval()(x))  # the only dropout left is the channel's
    default = build_backbone("elu", **(SIZES | {"channel_mixer": channel_mixer}))
    assert all(b.channel_mixer.dropout.p == 0.0 for b in default.blocks)  # the authors' GLU: no inner dropout


@pytest.mark.parametrize("name", ["flash", "flash_quad"])
def test_flash_owns_its_channel_mixer(name):
    backbone = build_backbone(name, **SIZES)
    assert all(b.channel_mixer is None and b.channel_norm is None for b in backbone.blocks)
    mixer_params = sum(p.numel() for b in backbone.blocks for p in b.mixer.parameters())
    assert sum(p.numel() for p in backbone.parameters()) == mixer_params  # srmsnorm has no parameters
    mixed = build_backbone({"name": "elu", "layer_plan": [name, "elu", name, "elu"]}, **SIZES)
    assert [b.channel_mixer is None for b in mixed.blocks] == [True, False, True, False]


def test_block_is_a_block():
    assert all(isinstance(b, Block) for b in build_backbone("elu", **SIZES).blocks)


# ----------------------------------------------------------------------------- padding and causality
BACKBONES = [
    ("transnormer_t1", {"block_size": 8, "chunk_size": 8}, "sinusoidal"),
    ("transnormer_t2", {"block_size": 8, "chunk_size": 8}, "learned"),
    ("flash", {"group_size": 8, "qk_dim": 16}, "sinusoidal"),
    ("ls", {"window_size": 8}, "none"),
]


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("name, knobs, positional", BACKBONES)
def test_padded_batch_equals_each_sequence_alone(name, knobs, positional, causal, side):
    torch.manual_seed(0)
    backbone = build_backbone({"name": name} | knobs, **(SIZES | {"causal": causal, "positional": positional}))
    backbone = backbone.double().eval()
    lengths, total = [30, 19, 5], 30
    x, mask = torch.randn(3, total, 32, dtype=torch.float64), padding_mask(lengths, total, side)
    out = backbone(x, mask)
    for b in range(3):
        alone = backbone(x[b : b + 1, ~mask[b]])
        torch.testing.assert_close(out[b, ~mask[b]], alone[0], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name, knobs, positional", BACKBONES)
def test_causal_backbone_is_causal(name, knobs, positional):
    torch.manual_seed(0)
    backbone = build_backbone({"name": name} | knobs, **(SIZES | {"causal": True, "positional": positional})).eval()
    x = torch.randn(2, 30, 32)
    changed = x.clone()
    changed[:, 17:] = torch.randn(2, 13, 32)
    torch.testing.assert_close(backbone(changed)[:, :17], backbone(x)[:, :17], rtol=0, atol=0)


def test_learned_positions_refuse_longer_sequences():
    backbone = build_backbone("elu", **(SIZES | {"positional": "learned", "max_len": 8}))
    with pytest.raises(ValueError, match="max_len=8"):
        backbone(torch.randn(1, 9, 32))
