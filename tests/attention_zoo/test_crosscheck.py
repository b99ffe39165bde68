"""An independent cross-check of the decayed linear attention behind lightning, retnet, gla and mamba2, and of the
delta rule behind deltanet and gated_deltanet: the pure-PyTorch naive references of flash-linear-attention (the
package ``fla-core``: in the ``dev`` extra, or the extra ``crosscheck`` alone).

Their naive functions compute in float32 whatever the input (``.float()``), so the comparison is at float32
precision; the float64 exactness of our backends is checked against our own references (test_exactness.py).
The naive files are loaded alone: the package's ``__init__`` imports its Triton kernels, which a CPU machine
need not have.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from attention_zoo.ops.decay import causal_decayed_linear_attention, decayed_linear_attention
from attention_zoo.ops.delta import causal_delta_rule

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
