"""Benchmark cells inherit OpenMP's wait policy from the process that starts them, exactly, set or unset (what
a plain ``import torch`` user gets): nothing in the benchmarks sets it, and the environment reports it."""
import pytest

from harness.bench.cell import CellSpec
from harness.bench.skeleton import environment, run_in_subprocess


@pytest.mark.parametrize("policy", [None, "ACTIVE", "PASSIVE"])
def test_a_cell_sees_the_parents_policy_exactly(policy, monkeypatch):
    if policy is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    result = run_in_subprocess(CellSpec("vanilla", "causal", 8), memory_cap_bytes=None, timeout_s=300,
                               module="tests.bench.omp_probe")
    assert result == {"status": "ok", "omp_wait_policy": policy}
    assert environment("cpu")["omp_wait_policy"] == (policy or "default (unset)")
