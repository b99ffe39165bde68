"""Properties every backend must have beyond matching its reference: causality, chunk-size invariance,
prefix consistency (as the registry declares it), determinism, finiteness at extreme scales, and bf16
autocast within a documented tolerance of fp32."""
from __future__ import annotations

import pytest
import torch

import attention_zoo
from attention_zoo import conformance
from attention_zoo.mixers.gated import GatedAttentionUnit
from attention_zoo.ops import causal_logscaled_linear_attention, linear_attention
from tests.attention_zoo import reference
from tests.attention_zoo.cases import (
    CHUNKED,
    DEFAULT_CASES,
    DEVICES,
    SMALL_CASES,
    SMALL_KNOBS,
    assert_close,
    build,
    inputs,
    make_for,
    padding_mask,
    relative_error,
)

ALL_CASES = SMALL_CASES + [pytest.param(*p.values, id=f"{p.id}-defaults") for p in DEFAULT_CASES]


# -------------------------------------------------------------------------------------------- causality
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, knobs", ALL_CASES)
def test_future_tokens_change_no_past_output(name, knobs, device):
    """At N=320, cuts t past 64, 128 and 256 included: perturbing tokens after t (also with huge values, which
    would leak through a global stabiliser or a shared normaliser) changes no output at or before t, no
    gradient reaches them from there, and (where the registry says so) x[:t+1] alone gives the same outputs."""
    conformance.check_causality(make_for(name, knobs), device=device,
                                prefix_consistent=attention_zoo.get_spec(name).prefix_consistent)


@pytest.mark.parametrize("name, knobs", DEFAULT_CASES)
def test_causal_at_the_checkers_small_size_knobs(name, knobs):
    """The checker's second causality check: every chunk/block/group/window size knob at 8."""
    small = conformance.small_size_knobs(attention_zoo.get_spec(name).knobs | knobs)
    conformance.check_causality(make_for(name, knobs | small),
                                prefix_consistent=attention_zoo.get_spec(name).prefix_consistent)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("name, knobs", SMALL_CASES)
def test_padded_tokens_change_no_real_output(name, knobs, causal):
    conformance.check_padding(make_for(name, knobs), causal)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("name, knobs", ALL_CASES)
def test_any_length_gives_a_finite_output_of_the_input_shape(name, knobs, causal):
    conformance.check_lengths(make_for(name, knobs), causal)


@pytest.mark.parametrize("name, knobs", SMALL_CASES)
def test_causal_with_padding(name, knobs):
    """Causality holds in a left-padded batch too (the padding moves the real positions)."""
    module = build(name, True, knobs)
    x, mask = inputs(2, 50), padding_mask([50, 37], 50, "left")
    reference = module(x, mask)
    for t in (20, 30):
        changed = x.clone()
        changed[:, t + 1 :] = torch.randn_like(changed[:, t + 1 :])
        assert torch.equal(module(changed, mask)[:, : t + 1], reference[:, : t + 1])


# ------------------------------------------------------------------------------------ chunk invariance
CHUNKED_CASES = [p for p in SMALL_CASES if p.values[0] in CHUNKED or p.id.endswith("-norm")]


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)], ids=["float64", "float32"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("name, knobs", CHUNKED_CASES)
def test_chunk_size_changes_nothing(name, knobs, causal, dtype, tol):
    x, mask = inputs(3, 70, dtype=dtype), padding_mask([70, 50, 3], 70, "right")
    expected = build(name, causal, knobs | {"chunk_size": 70}, dtype=dtype)(x, mask)
    for chunk_size in (1, 5, 16, 64, 100):
        out = build(name, causal, knobs | {"chunk_size": chunk_size}, dtype=dtype)(x, mask)
        assert_close(out, expected, tol, f"chunk_size={chunk_size}")


# ---------------------------------------------------------------------------------- prefix consistency
def is_prefix_consistent(module, length: int = 70) -> bool:
    x = inputs(2, length)
    full = module(x)
    return all(relative_error(module(x[:, :t]), full[:, :t]) <= 1e-12 for t in (1, 16, 33, 64))


@pytest.mark.parametrize("name, knobs", ALL_CASES)
def test_prefix_consistency_matches_the_registry_flag(name, knobs):
    """In causal mode, the output at t is the same whatever follows, exactly when the registry says so."""
    expected = attention_zoo.get_spec(name).prefix_consistent
    assert is_prefix_consistent(build(name, True, knobs)) == expected


def test_cosformer_with_a_fixed_horizon_is_prefix_consistent():
    """cosFormer's M = max_len (rather than the current length) makes causal outputs prefix-consistent."""
    assert is_prefix_consistent(build("cosformer", True, {"max_len": 80, "chunk_size": 16}))


def test_cosformer_longer_than_max_len_is_an_error():
    with pytest.raises(ValueError, match="max_len"):
        build("cosformer", True, {"max_len": 8})(inputs(1, 9))


# ---------------------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("name, knobs", SMALL_CASES)
def test_deterministic_under_a_seed(name, knobs):
    conformance.check_determinism(make_for(name, knobs))
    first, other = build(name, True, knobs, seed=5), build(name, True, knobs, seed=6)
    assert not all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), other.state_dict().values()))


@pytest.mark.parametrize("name", ["vanilla", "diag_attention", "ls"])
def test_attention_dropout_is_deterministic_under_a_seed(name):
    module = build(name, False, SMALL_KNOBS[name] | {"attn_dropout": 0.3}).train()
    x = inputs(2, 40)
    torch.manual_seed(9)
    first = module(x)
    torch.manual_seed(9)
    assert torch.equal(module(x), first)
    assert not torch.equal(module.eval()(x), first)


def test_performer_redraws_in_training_only_and_deterministically():
    def projections(seed: int, interval: int, train: bool) -> list[torch.Tensor]:
        module = build("performer", True, {"n_features": 8, "redraw_interval": interval}, seed=seed).train(train)
        drawn = []
        for _ in range(5):
            module(inputs(1, 10))
            drawn.append(module.projection.clone())
        return drawn

    drawn = projections(0, 2, True)
    assert torch.equal(drawn[0], drawn[1]) and not torch.equal(drawn[1], drawn[2])
    assert torch.equal(drawn[2], drawn[3]) and not torch.equal(drawn[3], drawn[4])
    assert all(torch.equal(a, b) for a, b in zip(drawn, projections(0, 2, True)))
    assert all(torch.equal(p, drawn[0]) for p in projections(0, 2, False))
    assert all(torch.equal(p, drawn[0]) for p in projections(0, 0, True))


def test_performer_projection_is_stacked_orthogonal_blocks():
    module = build("performer", False, {"n_features": 20})
    rows = module.projection / module.projection.norm(dim=-1, keepdim=True)
    block = rows[: module.head_dim]
    torch.testing.assert_close(block @ block.t(), torch.eye(module.head_dim, dtype=block.dtype), rtol=0, atol=1e-5)


# --------------------------------------------------------------------------------------- finiteness
@pytest.mark.parametrize("scale", [1e-3, 1e3])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("name, knobs", ALL_CASES)
def test_finite_at_extreme_input_scales(name, knobs, causal, scale):
    conformance.check_finite(make_for(name, knobs), causal, scales=(scale,))


# bf16 autocast: within conformance.TOL_BF16 of fp32 (docs/attention_zoo.md). Exception by design: a norm over
# the attention output (NormAttention, T1's DiagAttention) rescales a near-zero vector to unit RMS, amplifying
# its rounding without bound (e.g. the first token of a causal ReLU block with q.k ~ 0); tokens whose pre-norm
# RMS is under 1e-2 of the median are not compared (conformance.well_conditioned_tokens).
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("name, knobs", ALL_CASES)
def test_bf16_autocast_stays_close_to_fp32(name, knobs, causal, device):
    conformance.check_bf16(make_for(name, knobs), causal, device=device)


def cancelling_inputs(n: int):
    """q = (1, -1), k = (1 + 1/64, 1), v = 1: every q . k is 1/64, but the running state sum_j k_j v_j^T
    grows like (n, n) and q . state cancels it down to (i + 1) / 64. A state kept in bf16 (8-bit
    significand) loses that difference entirely at a few thousand tokens; an fp32 state keeps it."""
    q = torch.tensor([1.0, -1.0], dtype=torch.bfloat16).expand(1, 1, n, 2)
    k = torch.tensor([1.0 + 1 / 64, 1.0], dtype=torch.bfloat16).expand(1, 1, n, 2)
    return q, k, torch.ones(1, 1, n, 1, dtype=torch.bfloat16)


def test_causal_linear_state_accumulates_in_fp32():
    q, k, v = cancelling_inputs(4096)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = linear_attention(q, k, v, causal=True, chunk_size=4)
    expected = torch.arange(1, 4097, dtype=torch.float32) / 64
    assert_close(out[0, 0, :, 0].float(), expected, 1e-2, "running state of 4096 tokens under bf16")


def test_performer_causal_state_accumulates_in_fp32():
    q, k, v = cancelling_inputs(4096)
    counts = torch.arange(1, 4097, dtype=torch.float32)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = causal_logscaled_linear_attention(q, k, torch.zeros(1, 1, 4096), v * counts[:, None], chunk_size=64)
    # equal weights 1/64 on every visible value 1..i+1: the running mean (i + 2) / 2
    assert_close(out[0, 0, :, 0].float(), (counts + 1) / 2, 1e-2, "normalised running mean under bf16")


def test_flash_cross_group_state_accumulates_in_fp32():
    module = GatedAttentionUnit(8, 1, True, qk_dim=2, group_size=4)
    q, k, v = cancelling_inputs(4096)
    zero = torch.zeros_like(q)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = module.mixed_chunk_attention(zero, zero, q, k, v, torch.ones(1, 4096, dtype=torch.bool))
    earlier_group_tokens = (torch.arange(4096) // 4 * 4).float()
    expected = earlier_group_tokens / 64 / 4  # (q . k) summed over earlier groups, over G
    assert_close(out[0, 0, :, 0].float(), expected, 1e-2, "cross-group state under bf16")


# ---------------------------------------------------------------------------------- Performer's stabilisers
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_performer_stabilisers_change_the_gradient_only_through_eps(causal):
    """The stabilisers' maxima are constants for autograd (ops/favor.py): with eps = 0 the gradient equals the
    fully differentiated function's; at the default eps they differ by the epsilon term's own dependence on
    the maxima only, a small relative change (printed: docs/attention_zoo.md quotes it)."""
    x = inputs(1, 129)
    weight = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=x.dtype)

    def gradients(module, function):
        x_ = x.clone().requires_grad_(True)
        (function(x_) * weight).sum().backward()
        found = [x_.grad] + [p.grad for p in module.parameters()]
        module.zero_grad(set_to_none=True)
        return torch.cat([g.flatten() for g in found])

    for eps, bound in ((0.0, 1e-10), (1e-6, 1e-3)):
        knobs = SMALL_KNOBS["performer"] | {"eps": eps}
        module = build("performer", causal, knobs)
        full_knobs = reference.full_knobs("performer", knobs)
        ours = gradients(module, module)
        full = gradients(module, lambda x_, m=module, k=full_knobs: reference.performer(
            m, k, x_[0], differentiate_eps_scale=True)[None])
        change = float((ours - full).norm() / full.norm())
        print(f"performer ({'causal' if causal else 'bidirectional'}), eps={eps:g}: relative gradient change "
              f"{change:.2e} from not differentiating the stabilisers")
        assert change < bound
