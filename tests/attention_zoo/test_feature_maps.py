"""The feature maps of based, hedgehog, relu and relu2 (attention_zoo/ops/feature_maps.py) against their formulas, the
normalised linear attention over them against its recurrence token by token, HGRN2's gates and lower bounds, the
attention maps of the five against their outputs, and their FLOP counts against the counted matrix products; all in
float64 unless said otherwise."""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import attention_zoo
from attention_zoo.ops import feature_maps
from tests.attention_zoo.cases import build, inputs, padding_mask, relative_error
from tests.attention_zoo.test_delta import reconstruct
from tests.attention_zoo.test_exactness import check_against_reference

FEATURE_BACKENDS = ("based", "hedgehog", "relu", "relu2")
NEW_BACKENDS = (*FEATURE_BACKENDS, "hgrn2")
TOL = 1e-12


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("feature_dim", [1, 4, 16])
def test_taylor_features_give_the_second_order_expansion_of_exp(feature_dim):
    """phi(q) . phi(k) = 1 + s + s^2 / 2 with s = q . k / sqrt(d'), from 1 + d' + d'(d' + 1) / 2 features."""
    q, k = randn(7, feature_dim), randn(9, feature_dim, seed=1)
    rows, cols = feature_maps.taylor_exp_pairs(feature_dim)
    phi_q, phi_k = feature_maps.taylor_exp(q, rows, cols), feature_maps.taylor_exp(k, rows, cols)
    assert phi_q.shape[-1] == 1 + feature_dim + feature_dim * (feature_dim + 1) // 2
    s = q @ k.T / math.sqrt(feature_dim)
    assert relative_error(phi_q @ phi_k.T, 1 + s + s * s / 2) <= TOL


def test_hedgehog_features_are_two_softmaxes_over_the_features_per_head():
    x, weight, bias = randn(2, 3, 5, 4), randn(3, 4, 6, seed=1), randn(3, 6, seed=2)
    phi = feature_maps.hedgehog(x, weight, bias)
    z = torch.einsum("bhnd,hde->bhne", x, weight) + bias[:, None]
    assert relative_error(phi, torch.cat([z.exp() / z.exp().sum(-1, keepdim=True),
                                          (-z).exp() / (-z).exp().sum(-1, keepdim=True)], dim=-1)) <= TOL
    assert relative_error(phi[..., :6].sum(-1), torch.ones(2, 3, 5, dtype=torch.float64)) <= TOL


def test_hedgehog_maps_start_as_the_identity():
    module = build("hedgehog", True, {"feature_dim": 6})
    for layer in (module.q_map, module.k_map):
        assert torch.equal(layer.weight[1], torch.eye(8, 6, dtype=torch.float64)) and not layer.bias.any()


def randomize_maps(module):
    """Hedgehog's maps start at the identity: move them, so that the outputs depend on every entry."""
    with torch.no_grad():
        for layer in (module.q_map, module.k_map):
            layer.weight.add_(0.5 * torch.randn_like(layer.weight))
            layer.bias.add_(0.5 * torch.randn_like(layer.bias))


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("feature_dim", [None, 3, 12])
def test_hedgehog_with_moved_maps_matches_reference(feature_dim, causal):
    knobs = {"chunk_size": 16, "feature_dim": feature_dim}
    x, mask = inputs(3, 50), padding_mask([50, 33, 20], 50, "scattered")
    check_against_reference("hedgehog", knobs, causal, x, mask, prepare=randomize_maps)


def kernel_recurrence(q, k, v, eps):
    """o_t = phi(q_t)^T S_t / (phi(q_t) . z_t + eps), S_t = S_{t-1} + phi(k_t) v_t^T, z_t = z_{t-1} + phi(k_t)."""
    state, norm, out = q.new_zeros(*q.shape[:2], q.shape[-1], v.shape[-1]), torch.zeros_like(q[:, :, 0]), []
    for t in range(q.shape[2]):
        state = state + k[:, :, t, :, None] * v[:, :, t, None, :]
        norm = norm + k[:, :, t]
        out.append(torch.einsum("bhm,bhme->bhe", q[:, :, t], state) / ((q[:, :, t] * norm).sum(-1, keepdim=True) + eps))
    return torch.stack(out, dim=2)


@pytest.mark.parametrize("name", FEATURE_BACKENDS)
def test_the_chunked_core_is_the_recurrence(name):
    module = build(name, True, {"chunk_size": 7})
    x, mask = inputs(2, 40), padding_mask([40, 23], 40, "right")
    q, k, v = module.project_qkv(x)
    with torch.no_grad():
        phi_q, phi_k = module.features(q, k, ~mask)
        out = module.attend(q, k, v, ~mask, x)
        expected = kernel_recurrence(phi_q, phi_k, v, module.eps)
    real = ~mask[:, None, :, None]
    assert relative_error(out * real, expected * real) <= TOL


@pytest.mark.parametrize("name", NEW_BACKENDS)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_attention_map_reproduces_the_output(name, causal):
    module = build(name, causal, {"chunk_size": 8})
    x, mask = inputs(2, 37), padding_mask([37, 22], 37, "right")
    amap = module.attention_map(x, ~mask)
    with torch.no_grad():
        assert relative_error(reconstruct(module, x, amap, mask), module(x, mask)) <= 1e-10
    real = ~mask
    rows = amap.probs.sum(-1)[real[:, None, :].expand_as(amap.probs[..., 0])]
    assert relative_error(rows, torch.ones_like(rows)) <= TOL
    pad_keys = ~real[:, None, None, :] & real[:, None, :, None]
    assert not amap.probs[pad_keys.expand_as(amap.probs)].any(), "padded keys must get no attention"
    if causal:
        assert amap.weights.triu(1).abs().max() == 0, "a causal map must not look ahead"
    if name in FEATURE_BACKENDS:
        assert amap.family == "kernel" and (amap.weights >= 0).all()


# ------------------------------------------------------------------------------------------------ HGRN2
@pytest.mark.parametrize("lower_bound", [0.0, 0.3, 0.9])
def test_hgrn2_gates_are_the_lower_bounded_forget_gate_and_its_complement(lower_bound):
    module = build("hgrn2", True, {"lower_bound": lower_bound})
    logits = 30 * randn(2, 4, 9, 8)
    key, log_f = module.gates(logits, None)
    f = lower_bound + (1 - lower_bound) * torch.sigmoid(logits)
    assert relative_error(log_f, f.log()) <= TOL and relative_error(key, 1 - f) <= TOL
    assert (log_f >= math.log(lower_bound) - 1e-15).all() if lower_bound else (log_f <= 0).all()


def test_hgrn2_lower_bounds_grow_with_depth_in_a_backbone():
    """layer_index / n_layers: HGRN's learned lower bounds at their initialisation (softmax over the layers of equal
    logits, cumulative, minus the first layer's)."""
    torch.manual_seed(0)
    backbone = attention_zoo.build_backbone({"name": "hgrn2"}, dict(d_model=32, n_layers=4, n_heads=4, causal=True))
    bounds = [m.lower_bound for m in backbone.modules() if type(m).__name__ == "HGRN2"]
    logits = torch.zeros(4)
    learned = logits.softmax(0).cumsum(0) - logits.softmax(0)[0]
    assert bounds == pytest.approx(learned.tolist()) == [0.0, 0.25, 0.5, 0.75]
    fixed = attention_zoo.build_backbone({"name": "hgrn2", "lower_bound": 0.5},
                                         dict(d_model=32, n_layers=4, n_heads=4, causal=True))
    assert {m.lower_bound for m in fixed.modules() if type(m).__name__ == "HGRN2"} == {0.5}


@pytest.mark.parametrize("value", [1.0, -0.1, "0.5"])
def test_hgrn2_refuses_a_lower_bound_outside_zero_one(value):
    with pytest.raises(ValueError, match="lower_bound"):
        attention_zoo.build_mixer("hgrn2", 32, 4, True, lower_bound=value)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_hgrn2_with_gates_beyond_factorising_matches_reference(causal):
    """Inputs scaled so that the forget gates reach e^-60 within a chunk (fp32's limit of the factorised in-chunk
    product, here in float64 with the threshold at e^-600): rows of both forms, against the recurrence."""
    module = build("hgrn2", causal, {"chunk_size": 16})
    with torch.no_grad():
        module.k_proj.weight.mul_(150.0)
    x, mask = inputs(2, 50), padding_mask([50, 31], 50, "left")
    check_against_reference("hgrn2", {"chunk_size": 16}, causal, x, mask, prepare=lambda m: m.load_state_dict(
        module.state_dict()))


# ------------------------------------------------------------------------------------------------ FLOPs
@pytest.mark.parametrize("name", NEW_BACKENDS)
def test_analytic_flops_match_the_counted_matrix_products(name):
    """forward_products (bidirectional, the harness's FLOPs: 3 x forward for forward+backward) against
    FlopCounterMode, at a length of whole chunks."""
    torch.manual_seed(0)
    module = attention_zoo.build_mixer(name, 64, 2, False)
    x = torch.randn(2, 128, 64, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        module(x).backward(torch.randn_like(x))
    both, constant = module.forward_products(128)
    assert 2 * (3 * both + 2 * constant) == pytest.approx(counter.get_total_flops(), rel=0.02)
