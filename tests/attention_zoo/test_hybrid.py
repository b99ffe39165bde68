"""Hybrid layer plans: another mixer at chosen layers of any backbone (``hybrid:NAME@everyK``,
``hybrid:NAME@I,J``, the mapping forms, the named ``minimax_hybrid``), built at its defaults and the model's
shape; a hybrid backbone passes the conformance battery and decodes exactly with mixed states (KV cache, linear,
delta); bad plans name the key and the valid forms; a hybrid run is its own variant and no paper table's row."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from attention_zoo import build_backbone, conformance
from attention_zoo.backbone import HYBRID_FORMS, NAMED_PLANS, register_plan
from attention_zoo.mixers.decayed import LightningAttention
from attention_zoo.mixers.delta import DeltaNet
from attention_zoo.mixers.softmax import SoftmaxAttention
from attention_zoo.mixers.transnormer import DiagAttention, NormAttention
from tests.attention_zoo.cases import padding_mask, relative_error
from tests.attention_zoo.test_backbone import kinds

SIZES = {"d_model": 32, "n_heads": 4, "n_layers": 8, "max_len": 400, "dropout": 0.0}
L, S, D = LightningAttention, SoftmaxAttention, DeltaNet


@pytest.mark.parametrize("plan, expected", [
    ("hybrid:vanilla@every4", [L, L, L, S, L, L, L, S]),
    ("hybrid:vanilla@0,5", [S, L, L, L, L, S, L, L]),
    ({"hybrid": "vanilla", "every": 2}, [L, S] * 4),
    ({"hybrid": {"name": "vanilla", "pos": "rope"}, "layers": [7]}, [L] * 7 + [S]),
    ("minimax_hybrid", [L] * 7 + [S]),  # MiniMax-01: one softmax layer after every 7 lightning layers
    ("hybrid:deltanet@every1", [D] * 8),
])
def test_hybrid_plans_place_the_mixer(plan, expected):
    assert kinds(build_backbone({"name": "lightning", "layer_plan": plan}, **SIZES)) == expected


def test_a_preset_keeps_its_halves_around_the_hybrid_layers():
    backbone = build_backbone({"name": "transnormer_t2", "layer_plan": "hybrid:vanilla@every3"}, **SIZES)
    Dg, Nm = DiagAttention, NormAttention
    assert kinds(backbone) == [Dg, Dg, S, Dg, Nm, S, Nm, Nm]


def test_hybrid_layers_take_their_defaults_and_the_models_shape():
    backbone = build_backbone({"name": "lightning", "layer_plan": "hybrid:vanilla@1", "chunk_size": 8, "pos": "rope"},
                              **(SIZES | {"causal": False}))
    lightning, softmax = backbone.blocks[0].mixer, backbone.blocks[1].mixer
    assert lightning.chunk_size == 8 and type(lightning.pos).__name__ == "RoPE"
    assert softmax.causal is False and softmax.n_heads == 4 and type(softmax.pos).__name__ == "NoPositions"
    # the lightning layers keep their place in the depth (their decays): layer 2 of 8, not of the 7 lightning ones
    alone = build_backbone({"name": "lightning", "chunk_size": 8, "pos": "rope"}, **(SIZES | {"causal": False}))
    assert torch.equal(backbone.blocks[2].mixer.fixed_log_decays, alone.blocks[2].mixer.fixed_log_decays)


@pytest.mark.parametrize("plan, message", [
    ("hybrid:vanilla@", "valid forms"),
    ("hybrid:vanilla@5,0", "increasing"),
    ("hybrid:vanilla@every0", "K >= 1"),
    ("hybrid:@every2", "valid forms"),
    ({"hybrid": "vanilla"}, "valid forms"),
    ({"hybrid": "vanilla", "every": 2, "layers": [1]}, "valid forms"),
    ({"hybrid": "vanilla", "layers": [True]}, "valid forms"),
    ("hybrid:vanilla@8", r"layer\(s\) \[8\] outside \[0, n_layers=8\)"),
    ("hybrid:vanilla@every9", "in no layer of n_layers=8"),
    ("hybrid:nope@every2", "valid choices"),
    ("minimax", "hybrids: .*named plans: .*minimax_hybrid"),
])
def test_bad_hybrid_plans_are_clear_errors(plan, message):
    with pytest.raises(ValueError, match=message) as err:
        build_backbone({"name": "lightning", "layer_plan": plan}, **SIZES)
    if plan != "hybrid:nope@every2":  # (an unknown backend lists the valid names instead)
        assert "layer_plan" in str(err.value)
    if message in ("valid forms", "increasing", "K >= 1", "hybrids: .*named plans: .*minimax_hybrid"):
        assert str(HYBRID_FORMS) in str(err.value)


def test_the_harness_names_the_key():
    from harness.config import ConfigError, ModelConfig, check_attention_builds, validate_attention
    from tasks.lm import LMTaskConfig

    attention = validate_attention({"name": "lightning", "layer_plan": "hybrid:vanilla@every9"})
    with pytest.raises(ConfigError, match=r"layer_plan='hybrid:vanilla@every9'.*n_layers=6"):
        check_attention_builds(attention, ModelConfig(), LMTaskConfig())


def test_a_named_plan_cannot_shadow_a_form():
    for name in ("minimax_hybrid", "split:2", "hybrid:x"):
        with pytest.raises(ValueError, match="taken"):
            register_plan(name, "hybrid:vanilla@every2")
    assert NAMED_PLANS["minimax_hybrid"] == "hybrid:vanilla@every8"


# ------------------------------------------------------------------------------------- conformance, decoding
HYBRIDS = [  # every kind of decoding state side by side: KV cache, decayed linear state, delta rule, Diag blocks
    pytest.param({"name": "lightning", "layer_plan": "hybrid:vanilla@every2", "chunk_size": 8}, id="lightning+vanilla"),
    pytest.param({"name": "deltanet", "layer_plan": "hybrid:vanilla@0,2", "chunk_size": 8}, id="deltanet+vanilla"),
    pytest.param({"name": "transnormer_t2", "layer_plan": {"hybrid": "mamba2", "layers": [1]}, "block_size": 8,
                  "chunk_size": 8}, id="t2+mamba2"),
]


def backbone_maker(attention: dict, n_layers: int = 4):
    def make(causal: bool, *, dtype=torch.float64, device="cpu", seed: int = 0) -> torch.nn.Module:
        torch.manual_seed(seed)
        sizes = SIZES | {"n_layers": n_layers, "causal": causal}
        return build_backbone(attention, **sizes).to(device=device, dtype=dtype).eval()

    return make


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("attention", HYBRIDS)
def test_a_hybrid_backbone_passes_the_battery(attention, causal):
    for _, check in conformance.battery(backbone_maker(attention), causal):
        check()


@pytest.mark.parametrize("attention", HYBRIDS)
def test_a_hybrid_backbone_decodes_exactly(attention):
    backbone = backbone_maker(attention)(True)
    x = conformance.inputs(2, 50, 32)
    mask = padding_mask([50, 33], 50, "left")
    with torch.no_grad():
        expected = backbone(x, mask)
        state = backbone.init_state(2)
        first, state = backbone.step(x[:, :17], state, mask[:, :17])
        rest = [backbone.step(x[:, t : t + 1], state, mask[:, t : t + 1])[0] for t in range(17, 50)]
    got, real = torch.cat([first, *rest], dim=1), ~mask[..., None]
    assert relative_error(got * real, expected * real) <= 1e-10


# -------------------------------------------------------------------------------------------- the record
def test_a_hybrid_run_is_its_own_variant_and_no_paper_row():
    from harness.report import specs
    from harness.variants import Defaults

    defaults = Defaults()
    base = defaults.sections("lm", "transnormer_t2", "smoke")
    rows = {}
    for plan in ("hybrid:vanilla@every2", {"hybrid": "vanilla", "layers": [0]}, "minimax_hybrid"):
        config = {"attention": base["attention"] | {"layer_plan": plan}, "model": base["model"]}
        variant = defaults.variant("lm", "transnormer_t2", "smoke", config)
        assert variant == {"attention.layer_plan": plan}
        record = SimpleNamespace(backend="transnormer_t2", config=config, n_layers=base["model"]["n_layers"])
        rows[str(plan)] = [row(record, variant) for row in (
            specs.backend_row, specs.table3_row, specs.table12_row,
            specs.ROW_KEYS["layer_plan"](["split", "reverse_split", "alternate", "parallel"]))]
    assert all(keys == [None] * 4 for keys in rows.values()), rows
