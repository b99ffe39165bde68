"""The kernel benchmark: the command end to end on tiny sizes (no timing assertions), its out-of-memory
handling, the sweep's bookkeeping, the targets, the FLOP counts and the naive baselines."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from harness.allocator import CPU_ALLOCATOR_ENV
from harness.bench import kernels
from harness.bench.baselines import NaiveMaskedProduct, NaiveOuterCumsum
from harness.bench.cell import CellSpec
from harness.bench.cli import main
from harness.bench.flops import forward_backward_flops
from harness.bench.skeleton import ROOT, run_in_subprocess
from harness.bench.targets import evaluate
from harness.bench.workloads import NotApplicable, build_workload

LINUX = sys.platform.startswith("linux")


def test_command_writes_csv_tables_and_targets(tmp_path):
    out = tmp_path / "k.csv"
    command = [sys.executable, "-m", "harness.bench", "kernels", "--backends", "norm_attention", "--lengths", "32",
               "64", "--repeats", "1", "--warmup", "0", "--peak-size", "64", "--threads", "1", "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["mode"], r["n"]) for r in rows] == [
        ("causal", "32"), ("causal", "64"), ("bidirectional", "32"), ("bidirectional", "64")]
    assert all(r["status"] == "ok" for r in rows), rows
    assert all(float(r["time_median_s"]) > 0 and float(r["peak_memory_mib"]) >= 0 for r in rows)
    bidirectional = [r for r in rows if r["mode"] == "bidirectional"]
    assert all(float(r["flops_fwd_bwd"]) > 0 and float(r["fraction_of_matmul_peak"]) > 0 for r in bidirectional)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["matmul_peak_flops_per_s"] > 0 and meta["environment"]["torch"] == torch.__version__
    growth = [t for t in meta["targets"] if t["target"].startswith("peak memory growth")]
    assert len(growth) == 2 and all(t["value"] is not None for t in growth)
    markdown = out.with_suffix(".md").read_text()
    assert "**causal: forward+backward time, median s**" in markdown and "| norm_attention |" in markdown
    assert "[  4/4] norm_attention" in done.stdout  # the progress table


@pytest.mark.skipif(not LINUX, reason="RLIMIT_AS caps the address space on Linux")
def test_out_of_memory_is_recorded_not_raised():
    # an 8K x 8K score matrix per head (2 GiB) cannot fit under a 1.5 GiB address-space cap
    spec = CellSpec("naive_masked_product", "bidirectional", 8192, warmup=0, repeats=1, threads=1)
    result = run_in_subprocess(spec, memory_cap_bytes=int(1.5 * 2**30), timeout_s=300)
    assert result["status"] == "oom", result


def fake_sweep(monkeypatch, tmp_path, outcomes, *argv):
    """Run the sweep with cells answered by ``outcomes(spec)`` instead of subprocesses; returns the rows."""
    calls = []

    def fake_run(spec, memory_cap_bytes, timeout_s):
        calls.append(spec)
        if spec.kind == "matmul_peak":
            return {"status": "ok", "matmul_flops_per_s": 1e11}
        return outcomes(spec)

    monkeypatch.setattr(kernels, "run_in_subprocess", fake_run)
    out = tmp_path / "sweep.csv"
    assert main(["kernels", "--out", str(out), "--device", "cpu", *argv]) == 0
    return kernels.read_rows(out), [c for c in calls if c.kind == "mixer"]


def ok(seconds: float, mib: float) -> dict:
    return {"status": "ok", "time_median_s": seconds, "time_min_s": seconds, "time_max_s": seconds,
            "repeats": 1, "peak_memory_mib": mib, "memory_method": "fake", "flops_fwd_bwd": None}


def test_longer_lengths_are_skipped_after_an_out_of_memory(monkeypatch, tmp_path):
    def outcomes(spec):
        if spec.backend == "naive_masked_product" and spec.n >= 2048:
            return {"status": "oom", "error": "no memory"}
        return ok(0.1, spec.n / 10)

    rows, calls = fake_sweep(monkeypatch, tmp_path, outcomes, "--backends", "naive_masked_product", "elu",
                             "--modes", "causal", "--lengths", "1024", "2048", "4096")
    status = {(r["backend"], r["n"]): r["status"] for r in rows}
    assert status == {("naive_masked_product", 1024): "ok", ("naive_masked_product", 2048): "oom",
                      ("naive_masked_product", 4096): "skipped", ("elu", 1024): "ok", ("elu", 2048): "ok",
                      ("elu", 4096): "ok"}
    assert ("naive_masked_product", 4096) not in {(c.backend, c.n) for c in calls}


def test_resume_keeps_cells_measured_with_the_same_settings(monkeypatch, tmp_path):
    argv = ("--backends", "elu", "--modes", "causal", "--lengths", "64", "128")
    fake_sweep(monkeypatch, tmp_path, lambda spec: ok(0.5, 1.0), *argv)
    rows, calls = fake_sweep(monkeypatch, tmp_path, lambda spec: ok(0.25, 2.0), *argv, "--lengths", "64", "128",
                             "256", "--resume")
    assert [c.n for c in calls] == [256]
    assert [r["time_median_s"] for r in rows] == [0.5, 0.5, 0.25]
    _, calls = fake_sweep(monkeypatch, tmp_path, lambda spec: ok(0.25, 2.0), *argv, "--heads", "4", "--resume")
    assert [c.n for c in calls] == [64, 128]  # other settings: measured again


def test_unknown_backend_is_an_error_listing_the_choices(capsys, tmp_path):
    assert main(["kernels", "--backends", "softmaxx", "--out", str(tmp_path / "x.csv")]) == 2
    error = capsys.readouterr().err
    assert "softmaxx" in error and "norm_attention" in error and "naive_outer_cumsum" in error


def row(backend, mode, n, seconds, mib, linear=True):
    return {"backend": backend, "mode": mode, "n": n, "status": "ok", "time_median_s": seconds,
            "peak_memory_mib": mib, "linear": linear}


def test_targets_report_values_and_verdicts():
    rows = [row("vanilla", "causal", 16384, 8.0, 100, linear=False),
            row("norm_attention", "causal", 16384, 1.0, 100), row("norm_attention", "causal", 8192, 0.5, 50),
            row("norm_attention", "bidirectional", 16384, 0.25, 40),
            row("elu", "causal", 4096, 0.1, 10), row("elu", "causal", 8192, 0.2, 45)]
    results = {t["target"]: t for t in evaluate(rows)}
    speedup = results["speed-up of causal norm_attention over causal vanilla at N=16384"]
    assert speedup["value"] == pytest.approx(8.0) and speedup["passed"] is False
    ratio = results["causal / bidirectional time of norm_attention at N=16384"]
    assert ratio["value"] == pytest.approx(4.0) and ratio["passed"] is False
    assert results["peak memory growth per doubling of N, norm_attention (causal)"]["passed"] is True
    elu = results["peak memory growth per doubling of N, elu (causal)"]
    assert elu["value"] == pytest.approx(4.5) and elu["passed"] is False


@pytest.mark.parametrize("backend", ["norm_attention", "elu", "cosformer", "performer", "flash", "transnormer_t1"])
def test_analytic_flops_match_the_counted_matrix_products(backend):
    """Backends without fused softmax kernels (which the counter cannot see) against FlopCounterMode."""
    torch.manual_seed(0)
    module = build_workload(backend, "bidirectional", d_model=64, n_heads=2)
    x = torch.randn(2, 96, 64, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        module(x).backward(torch.randn_like(x))
    analytic = forward_backward_flops(backend, module, n=96, batch=2)
    assert analytic == pytest.approx(counter.get_total_flops(), rel=0.02)


@pytest.mark.parametrize("causal", [True, False])
def test_naive_baselines_agree_with_a_direct_formula(causal):
    torch.manual_seed(0)
    masked = NaiveMaskedProduct(16, 2, causal).double()
    cumsum = NaiveOuterCumsum(16, 2, causal).double()
    cumsum.load_state_dict(masked.state_dict())
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    q, k, v = (masked.split_heads(proj(x)) for proj in (masked.q_proj, masked.k_proj, masked.v_proj))
    q, k = 1 + torch.nn.functional.elu(q), 1 + torch.nn.functional.elu(k)
    expected = torch.zeros_like(v)
    for i in range(9):
        for j in range(i + 1 if causal else 9):
            expected[:, :, i] += (q[:, :, i] * k[:, :, j]).sum(-1, keepdim=True) * v[:, :, j]
    expected = masked.out_proj(expected.transpose(1, 2).flatten(-2))
    torch.testing.assert_close(masked(x), expected)
    torch.testing.assert_close(cumsum(x), expected)


def test_attention_scope_drops_the_square_projections_only():
    module = build_workload("norm_attention", "causal", d_model=32, n_heads=2, scope="attention")
    assert all(isinstance(getattr(module, p), torch.nn.Identity) for p in ("q_proj", "k_proj", "v_proj", "out_proj"))
    with pytest.raises(NotApplicable, match="flash"):
        build_workload("flash", "causal", d_model=32, n_heads=2, scope="attention")
    with pytest.raises(NotApplicable, match="mamba2"):  # its values are expanded, not d_model wide
        build_workload("mamba2", "causal", d_model=32, n_heads=2, scope="attention")


PEAK_PROBE = """
import torch
from harness.bench.memory import PeakMemory
memory = PeakMemory(torch.device("cpu"))
memory.reset()
block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
del block
print(memory.peak_mib())
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/self/status")
def test_cpu_peak_memory_sees_an_allocation_made_after_the_baseline():
    # in a fresh process: in this one, memory freed by earlier tests may be returned during the measurement
    done = subprocess.run([sys.executable, "-c", PEAK_PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 60 <= float(done.stdout.split()[-1]) < 200


def test_cpu_cells_use_the_heap_unless_the_user_says_otherwise(monkeypatch):
    spec = CellSpec("vanilla", "causal", 8)
    result = run_in_subprocess(spec, memory_cap_bytes=None, timeout_s=60, module="tests.bench.env_probe")
    assert result == {"status": "ok", **CPU_ALLOCATOR_ENV}
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "65536")  # glibc's default behaviour, asked for explicitly
    result = run_in_subprocess(spec, memory_cap_bytes=None, timeout_s=60, module="tests.bench.env_probe")
    assert result["MALLOC_MMAP_MAX_"] == "65536"


def test_the_markdown_gives_each_backends_time_over_the_first_with_the_repeats_range():
    def row(backend, n, median, low, high, status="ok"):
        return {"backend": backend, "mode": "causal", "n": n, "status": status, "time_median_s": median,
                "time_min_s": low, "time_max_s": high, "peak_memory_mib": 1.0}

    rows = [row("norm_attention", 1024, 1.0, 0.9, 1.25), row("deltanet", 1024, 2.0, 1.8, 2.25),
            row("norm_attention", 2048, 2.0, 2.0, 2.0), row("deltanet", 2048, 0.0, 0.0, 0.0, status="oom")]
    text = kernels.markdown_tables(rows)
    table = text.split("**causal: time over norm_attention's, median (range over the repeats)**", 1)[1]
    assert "| deltanet | 2.00 (1.44-2.50) |  |" in table  # 1.8 / 1.25 and 2.25 / 0.9; an OOM cell stays empty
    assert "| norm_attention |" not in table
    assert "time over" not in kernels.markdown_tables(rows[:1])  # one backend: no reference to divide by
