"""An independent cross-check of the decayed linear attention behind lightning, retnet, gla, mamba2 and hgrn2, of the
delta rule behind deltanet and gated_deltanet, and of the normalised linear attention over the feature maps of based,
hedgehog, relu and relu2: the pure-PyTorch naive references of flash-linear-attention (the package ``fla-core``: in
the ``dev`` extra, or the extra ``crosscheck`` alone).

Most of their naive functions compute in float32 whatever the input (``.float()``), so the comparison is at float32
precision (those that keep the input's dtype, Based's and the chunked linear attention's, at float64's); the float64
exactness of our backends is checked against our own references (test_exactness.py).
The naive files are loaded alone: the package's ``__init__`` imports its Triton kernels, which a CPU machine
need not have.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from attention_zoo.ops import feature_maps
from attention_zoo.ops.decay import causal_decayed_linear_attention, decayed_linear_attention
from attention_zoo.ops.delta import causal_delta_rule
from attention_zoo.ops.linear import normalized_linear_attention

_FLA = importlib.util.find_spec("fla")
pytestmark = pytest.mark.skipif(
    _FLA is None, reason='needs the optional extra "crosscheck": pip install -e ".[crosscheck]"')
TOL = 2e-5  # float32 against float64, relative to the output's scale
B, H, N, D = 2, 4, 77, 16


def naive(method: str):
    """``fla/ops/<method>/naive.py`` as a module, without importing the package (and its kernels)."""
    path = Path(_FLA.submodule_search_locations[0]) / "ops" / method / "naive.py"
    spec = importlib.util.spec_from_file_location(f"fla_naive_{method}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours.double() - theirs.double()).abs().max() / theirs.double().abs().max())


def tensors(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, H, N, D, generator=generator, dtype=torch.float64) for _ in range(3))


def time_major(t: torch.Tensor) -> torch.Tensor:
    return t.transpose(1, 2).contiguous()  # fla's [B, T, H, d]


def test_retnet_core_matches_fla_naive_retention():
    """RetNet: gamma_h = 1 - 2^(-5-h), q scaled by d^-1/2 (fla scales q; ours scales k: the same product)."""
    q, k, v = tensors()
    gamma = 1 - 2.0 ** (-5.0 - torch.arange(H, dtype=torch.float64))
    g = gamma.log()[None, :, None].expand(B, H, N)
    ours = decayed_linear_attention(q * D**-0.5, k, v, g, causal=True, chunk_size=16)
    assert error(ours, naive("retention").naive_retention(q, k, v)) < TOL


def test_lightning_core_matches_fla_simple_gla_with_a_fixed_decay():
    """Lightning: a fixed decay per head, no scaling (fla's simple GLA with g constant and scale 1)."""
    q, k, v = tensors(1)
    g = (-(2.0 ** (-8.0 * torch.arange(1, H + 1, dtype=torch.float64) / H)))[None, :, None].expand(B, H, N)
    ours, state = causal_decayed_linear_attention(q, k, v, g, chunk_size=16)
    theirs, their_state = naive("simple_gla").naive_recurrent_simple_gla(
        *(time_major(t) for t in (q, k, v)), time_major(g), scale=1.0, output_final_state=True)
    assert error(ours, theirs.transpose(1, 2)) < TOL and error(state, their_state) < TOL


def test_data_dependent_scalar_decay_matches_fla_chunked_simple_gla():
    """One data-dependent decay per head and token (Mamba-2's SSD core), against fla's chunked naive form."""
    q, k, v = tensors(2)
    g = torch.nn.functional.logsigmoid(torch.randn(B, H, N, dtype=torch.float64)) / 4
    ours = decayed_linear_attention(q * D**-0.5, k, v, g, causal=True, chunk_size=32)
    theirs, _ = naive("simple_gla").naive_chunk_simple_gla(*(time_major(t) for t in (q, k, v, g)), chunk_size=16)
    assert error(ours, theirs.transpose(1, 2)) < TOL


def test_gla_core_matches_fla_naive_recurrent_gla():
    """GLA: a decay per key channel (gates logsigmoid / 16), q scaled by d^-1/2, and the final state."""
    q, k, v = tensors(3)
    gk = torch.nn.functional.logsigmoid(torch.randn(B, H, N, D, dtype=torch.float64) * 3) / 16
    ours, state = causal_decayed_linear_attention(q * D**-0.5, k, v, gk, chunk_size=16)
    theirs, their_state = naive("gla").naive_recurrent_gla(*(time_major(t) for t in (q, k, v, gk)),
                                                         output_final_state=True)
    assert error(ours, theirs.transpose(1, 2)) < TOL and error(state, their_state) < TOL


def delta_tensors(seed: int):
    """q, k with unit-norm keys (the mixers L2-normalise them), v, beta in (0, 1), log-decays."""
    q, k, v = tensors(seed)
    generator = torch.Generator().manual_seed(seed + 100)
    beta = torch.rand(B, H, N, generator=generator, dtype=torch.float64)
    g = torch.nn.functional.logsigmoid(torch.randn(B, H, N, generator=generator, dtype=torch.float64))
    return q, torch.nn.functional.normalize(k, dim=-1), v, beta, g


def test_delta_rule_matches_fla_naive_recurrence_and_chunkwise_form():
    """DeltaNet: fla scales q by d^-1/2 inside; ours takes it scaled. Their chunkwise form needs N % C == 0."""
    q, k, v, beta, _ = delta_tensors(4)
    ours, state = causal_delta_rule(q * D**-0.5, k, v, beta, chunk_size=16)
    delta = naive("delta_rule")
    theirs, their_state = delta.delta_rule_recurrence(q, k, v, beta)
    assert error(ours, theirs) < TOL and error(state, their_state) < TOL
    whole = 64
    ours, state = causal_delta_rule(*(t[:, :, :whole] for t in (q * D**-0.5, k, v, beta)), chunk_size=32)
    theirs, their_state = delta.delta_rule_chunkwise(*(t[:, :, :whole] for t in (q, k, v, beta)), chunk_size=16)
    assert error(ours, theirs) < TOL and error(state, their_state) < TOL


def test_gated_delta_rule_matches_fla_naive_recurrent_and_chunked_forms():
    """Gated DeltaNet: alpha_t = exp(g_t) per head, the same scaling of q."""
    q, k, v, beta, g = delta_tensors(5)
    ours, state = causal_delta_rule(q * D**-0.5, k, v, beta, g, chunk_size=16)
    gated = naive("gated_delta_rule")
    theirs, their_state = gated.naive_recurrent_gated_delta_rule(
        *(time_major(t) for t in (q, k, v)), beta.transpose(1, 2), g.transpose(1, 2), output_final_state=True)
    assert error(ours, theirs.transpose(1, 2)) < TOL and error(state, their_state) < TOL
    theirs, their_state = gated.naive_chunk_gated_delta_rule(
        *(time_major(t) for t in (q, k, v)), g.transpose(1, 2), beta.transpose(1, 2), chunk_size=32,
        output_final_state=True)
    assert error(ours, theirs.transpose(1, 2)) < TOL and error(state, their_state) < TOL


# ------------------------------------------------------------------------ feature maps (based, hedgehog, relu, relu2)
def test_based_matches_fla_naive_parallel_and_chunked_based():
    """Based: 1 + s + s^2 / 2 with s = q . k / sqrt(d) (fla scales q by d^-1/2; our Taylor features hold the same
    scales), over the row sum + 1e-6. Their naive Based keeps float64; their chunked form needs N % C == 0."""
    q, k, v = tensors(6)
    rows, cols = feature_maps.taylor_exp_pairs(D)
    phi_q, phi_k = feature_maps.taylor_exp(q, rows, cols), feature_maps.taylor_exp(k, rows, cols)
    ours = normalized_linear_attention(phi_q, phi_k, v, causal=True, chunk_size=16, eps=1e-6)
    based = naive("based")
    assert error(ours, based.naive_parallel_based(q, k, v)) < 1e-12
    whole = 64
    theirs = based.naive_chunk_based(*(t[:, :, :whole] for t in (q, k, v)), chunk_size=16)
    assert error(ours[:, :, :whole], theirs) < 1e-12


@pytest.mark.parametrize("name", ["hedgehog", "relu", "squared_relu"])
def test_normalised_feature_maps_match_fla_naive_linear_attention(name):
    """phi(q) and phi(k) handed to fla's naive linear attention with its normaliser (q . cumsum k + 1e-10, scale 1):
    the recurrent form (float32) and the chunked one (keeps float64; chunks of 64, so N a multiple of 64)."""
    q, k, v = tensors(7)
    if name == "hedgehog":
        generator = torch.Generator().manual_seed(8)
        weight, bias = (torch.randn(*shape, generator=generator, dtype=torch.float64) for shape in ((H, D, D), (H, D)))
        phi = lambda t: feature_maps.hedgehog(t, weight, bias)  # noqa: E731
    else:
        phi = getattr(feature_maps, name)
    phi_q, phi_k = phi(q), phi(k)
    ours = normalized_linear_attention(phi_q, phi_k, v, causal=True, chunk_size=16, eps=1e-10)
    linear = naive("linear_attn")
    theirs, _ = linear.naive_recurrent_linear_attn(*(time_major(t) for t in (phi_q, phi_k, v)), scale=1.0,
                                                   normalize=True)
    assert error(ours, theirs.transpose(1, 2)) < TOL
    whole = 64
    theirs = linear.naive_chunk_linear_attn(*(time_major(t[:, :, :whole]) for t in (phi_q, phi_k, v)), scale=1.0,
                                            normalize=True)
    assert error(ours[:, :, :whole], theirs.transpose(1, 2)) < 1e-12


# ------------------------------------------------------------------------------------------------------- HGRN2
def hgrn2_tensors(seed: int, lower_bound: float):
    """The output gate (query), the forget gate's logits and the input; our key and log-decays from the mixer's
    gates, fla's from their HGRN2 layer's formula (g = logaddexp(log b, log(1 - b) + logsigmoid(f)), k = 1 - e^g)."""
    from attention_zoo.mixers.hgrn import HGRN2

    q, f, v = tensors(seed)
    q = torch.sigmoid(q)
    key, log_f = HGRN2(D * H, H, True, lower_bound=lower_bound).gates(f, None)
    g = torch.nn.functional.logsigmoid(f)
    if lower_bound:
        g = torch.logaddexp(torch.tensor(lower_bound, dtype=g.dtype).log(), torch.log1p(torch.tensor(-lower_bound))
                            + g)
    return q, (key, log_f), (1 - g.exp(), g), v


@pytest.mark.parametrize("lower_bound", [0.0, 0.5])
def test_hgrn2_matches_fla_naive_gla_as_their_hgrn2_layer_calls_it(lower_bound):
    """fla's HGRN2 layer runs GLA with q, k = 1 - f, v = i, log-decays log f (and scales q by d_k^-1/2)."""
    q, (key, log_f), (their_key, their_g), v = hgrn2_tensors(9, lower_bound)
    ours, state = causal_decayed_linear_attention(q * D**-0.5, key, v, log_f, chunk_size=16)
    theirs, their_state = naive("gla").naive_recurrent_gla(*(time_major(t) for t in (q, their_key, v, their_g)),
                                                         output_final_state=True)
    assert error(ours, theirs.transpose(1, 2)) < TOL and error(state, their_state) < TOL


def test_hgrn2_state_expansion_is_d_k_d_v_hgrn1_recurrences():
    """The outer-product state: each entry H[a, b] is HGRN1's element-wise recurrence h = f_a h + (1 - f_a) i_b
    (fla's naive HGRN), read out by the output gate: y_b = sum_a o_a H[a, b]."""
    q, (key, log_f), _, v = hgrn2_tensors(10, 0.25)
    ours, state = causal_decayed_linear_attention(q, key, v, log_f, chunk_size=16)
    written = (key[..., :, None] * v[..., None, :]).permute(0, 2, 1, 3, 4).flatten(2)  # [B, N, H d_k d_v]
    decays = log_f[..., :, None].expand(-1, -1, -1, -1, D).permute(0, 2, 1, 3, 4).flatten(2)
    hidden, last = naive("hgrn").naive_recurrent_hgrn(written, decays, output_final_state=True)
    hidden = hidden.unflatten(2, (H, D, D)).permute(0, 2, 1, 3, 4)  # [B, H, N, d_k, d_v]
    theirs = torch.einsum("zhna,zhnae->zhne", q, hidden.double())
    assert error(ours, theirs) < TOL and error(state, last.unflatten(1, (H, D, D))) < TOL
