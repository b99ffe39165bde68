"""The delta rule op (attention_zoo/ops/delta.py) against its recurrence token by token in float64; the short
convolution's decoding; the attention maps of DeltaNet, Gated DeltaNet and Mamba-2 against their outputs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attention_zoo.maps import delta_weights
from attention_zoo.ops.conv import causal_conv, causal_conv_step
from attention_zoo.ops.delta import causal_delta_rule, delta_rule
from tests.attention_zoo.cases import build, inputs, padding_mask, relative_error
from tests.attention_zoo.reference import delta_rule_recurrence

B, H, N, DK, DV = 2, 3, 45, 6, 5
TOL = 1e-12


def case(gated: bool, seed: int = 0, strength: float = 1.0):
    """q, k (unit norm), v, beta in (0, 1) and log-decays (or None), float64."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, N, DK, generator=gen, dtype=torch.float64)
    k = F.normalize(torch.randn(B, H, N, DK, generator=gen, dtype=torch.float64), dim=-1)
    v = torch.randn(B, H, N, DV, generator=gen, dtype=torch.float64)
    beta = torch.rand(B, H, N, generator=gen, dtype=torch.float64)
    g = F.logsigmoid(strength * torch.randn(B, H, N, generator=gen, dtype=torch.float64)) if gated else None
    return q, k, v, beta, g


def recurrence(q, k, v, beta, g, causal=True):
    """tests/attention_zoo/reference.py's recurrence (the papers' S [d_v, d_k]), one batch row at a time."""
    return torch.stack([delta_rule_recurrence(q[b], k[b], v[b], beta[b], None if g is None else g[b], causal)
                        for b in range(q.shape[0])])


def close(actual, expected, tol=TOL):
    assert relative_error(actual, expected) <= tol, relative_error(actual, expected)


@pytest.mark.parametrize("gated", [False, True], ids=["delta", "gated"])
@pytest.mark.parametrize("chunk_size", [1, 7, 16, 64])
def test_causal_form_is_the_recurrence_and_continues_from_a_state(gated, chunk_size):
    q, k, v, beta, g = case(gated)
    expected = recurrence(q, k, v, beta, g)
    out, state = causal_delta_rule(q, k, v, beta, g, chunk_size=chunk_size)
    close(out, expected)
    cut = 19
    head = [t[:, :, :cut] if t is not None else None for t in (q, k, v, beta, g)]
    tail = [t[:, :, cut:] if t is not None else None for t in (q, k, v, beta, g)]
    first, middle = causal_delta_rule(*head, chunk_size=chunk_size)
    second, last = causal_delta_rule(*tail, chunk_size=chunk_size, initial_state=middle)
    close(torch.cat([first, second], dim=2), expected)
    close(last, state)


@pytest.mark.parametrize("gated", [False, True], ids=["delta", "gated"])
def test_one_token_at_a_time_is_the_parallel_form(gated):
    q, k, v, beta, g = case(gated, seed=1)
    expected, expected_state = causal_delta_rule(q, k, v, beta, g, chunk_size=16)
    state, outputs = None, []
    for t in range(N):
        one = [None if x is None else x[:, :, t : t + 1] for x in (q, k, v, beta, g)]
        out, state = causal_delta_rule(*one, initial_state=state)
        outputs.append(out)
    close(torch.cat(outputs, dim=2), expected)
    close(state, expected_state)


@pytest.mark.parametrize("gated", [False, True], ids=["delta", "gated"])
def test_bidirectional_form_is_the_forward_plus_the_reversed_exclusive_recurrence(gated):
    q, k, v, beta, g = case(gated, seed=2)
    close(delta_rule(q, k, v, beta, g, causal=False, chunk_size=16), recurrence(q, k, v, beta, g, causal=False))


@pytest.mark.parametrize("gated", [False, True], ids=["delta", "gated"])
def test_a_zero_key_with_zero_decay_leaves_the_state_as_it_was(gated):
    """Padded (or left-padded decoding) tokens: k = 0 and g = 0 neither erase, write nor decay."""
    q, k, v, beta, g = case(gated, seed=3)
    pads = torch.zeros(N, dtype=torch.bool)
    pads[[0, 5, 6, 30, N - 1]] = True
    k = k.masked_fill(pads[:, None], 0.0)
    g = None if g is None else g.masked_fill(pads, 0.0)
    out, state = causal_delta_rule(q, k, v, beta, g, chunk_size=8)
    real = [None if t is None else t[:, :, ~pads] for t in (q, k, v, beta, g)]
    alone, alone_state = causal_delta_rule(*real, chunk_size=8)
    close(out[:, :, ~pads], alone)
    close(state, alone_state)


def test_strong_gates_stay_finite_and_accurate_in_float32():
    """Log-decays down to about -200 per token: every exponent the op takes is <= 0."""
    q, k, v, beta, g = case(True, seed=4, strength=200.0)
    expected = recurrence(q, k, v, beta, g)
    out, _ = causal_delta_rule(q.float(), k.float(), v.float(), beta.float(), g.float(), chunk_size=64)
    assert torch.isfinite(out).all()
    assert relative_error(out.double(), expected) <= 1e-4


@pytest.mark.parametrize("gated", [False, True], ids=["delta", "gated"])
def test_the_matrix_form_is_the_product_of_the_wy_factors(gated):
    """maps.delta_weights: o = W v, with W = tril(Q K^T Gamma) (I + tril(diag(beta) K K^T Gamma, -1))^-1 diag(beta)."""
    q, k, v, beta, g = case(gated, seed=5)
    close(torch.matmul(delta_weights(q, k, beta, g), v), recurrence(q, k, v, beta, g))


# ------------------------------------------------------------------------------------ short convolution
def test_the_convolution_decodes_over_real_tokens_only():
    gen = torch.Generator().manual_seed(6)
    weight = torch.randn(5, 1, 4, generator=gen, dtype=torch.float64)
    bias = torch.randn(5, generator=gen, dtype=torch.float64)
    x = torch.randn(2, 12, 5, generator=gen, dtype=torch.float64)
    valid = torch.ones(2, 12, dtype=torch.bool)
    valid[1, [0, 1, 4, 9]] = False  # row 1: pads before, between and after real tokens
    cache, outputs = None, []
    for start, size in ((0, 3), (3, 1), (4, 5), (9, 3)):
        out, cache = causal_conv_step(x[:, start : start + size], valid[:, start : start + size], cache, weight, bias)
        outputs.append(out)
    got = torch.cat(outputs, dim=1)
    for row in range(2):
        alone = causal_conv(x[row : row + 1, valid[row]], weight, bias)[0]
        close(got[row, valid[row]], alone)
    assert cache.shape == (2, 3, 5)


def test_a_corrupted_convolution_state_is_caught():
    """The decoding check has teeth: a convolution cache one token out of place changes the outputs."""
    for name in ("deltanet", "gated_deltanet", "mamba2"):
        module = build(name, True, {"chunk_size": 8})
        x = inputs(1, 40)
        state = module.init_state(1)
        with torch.no_grad():
            module.step(x[:, :20], state)
            key = next(k for k in state.tensors if k.startswith("conv"))
            state.tensors[key] = state.tensors[key].roll(1, dims=1)
            out, _ = module.step(x[:, 20:21], state)
        assert relative_error(out, module(x[:, :21])[:, 20:21]) > 1e-6, name


# ---------------------------------------------------------------------------------------- attention maps
def reconstruct(module, x, amap, mask):
    """The mixer's output from ``weights @ values`` and its own tail (merge, norm and gate, projection)."""
    core = torch.matmul(amap.weights, amap.values).transpose(1, 2).flatten(-2)
    out = module.project_out(core, x, mask)
    return out if mask is None else out.masked_fill(mask[..., None], 0.0)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("name", ["deltanet", "gated_deltanet", "mamba2"])
def test_attention_map_reproduces_the_output(name, causal):
    module = build(name, causal, {"chunk_size": 8})
    x, mask = inputs(2, 37), padding_mask([37, 22], 37, "right")
    amap = module.attention_map(x, ~mask)
    with torch.no_grad():
        close(reconstruct(module, x, amap, mask), module(x, mask), 1e-10)
    real = ~mask
    rows = amap.probs.sum(-1)[real[:, None, :].expand_as(amap.probs[..., 0])]
    close(rows, torch.ones_like(rows))
    pad_keys = ~real[:, None, None, :] & real[:, None, :, None]
    assert not amap.probs[pad_keys.expand_as(amap.probs)].any(), "padded keys must get no attention"
    if causal:
        assert amap.weights.triu(1).abs().max() == 0, "a causal map must not look ahead"
