"""Run one cell in a fresh Python process, so that its memory is measured cleanly and a crash, an
out-of-memory or a timeout is recorded as such instead of ending the sweep.

CPU cells run with glibc's heap serving every allocation (``CPU_ALLOCATOR_ENV``; why: harness/allocator.py):
at N = 16K every [8, N, 64] fp32 tensor is above glibc's mmap threshold, so with its defaults each pass would
page-fault ~1.2 GB of fresh zeroed memory (measured: 300,000 minor faults per forward+backward of
norm_attention), a cost of the allocator that swamps the kernels' own. Set the variables yourself to override
them (e.g. ``MALLOC_MMAP_MAX_=65536``). Cells run with OpenMP's wait policy as the user left it, not with the
harness's passive one (``benchmark_environment``).
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness import KEEP_OMP_DEFAULTS, POLICY_FROM_HARNESS, USER_OMP_WAIT_POLICY
from harness.allocator import CPU_ALLOCATOR_ENV
from harness.bench.cell import CellSpec

ROOT = Path(__file__).resolve().parents[2]


def address_space_cap(cap_bytes: int):
    """A ``preexec_fn`` that limits the child's address space (RLIMIT_AS): allocations beyond it fail."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))

    return apply


def describe_exit(returncode: int, stderr: str) -> dict[str, Any]:
    """Status of a child that wrote no result: killed by a signal or exited with an error."""
    tail = (stderr.strip().splitlines() or ["no output"])[-1][:300]
    if returncode < 0:
        name = signal.Signals(-returncode).name
        if -returncode == signal.SIGKILL:  # on Linux almost always the kernel's out-of-memory killer
            return {"status": "oom", "error": f"killed by {name} (likely the out-of-memory killer)"}
        return {"status": "crashed", "error": f"killed by {name}: {tail}"}
    return {"status": "crashed", "error": f"exit code {returncode}: {tail}"}


def omp_wait_policy() -> str:
    """The OpenMP wait policy benchmark cells run with: the user's ``OMP_WAIT_POLICY``, or OpenMP's default."""
    return USER_OMP_WAIT_POLICY or "default (unset)"


def benchmark_environment() -> dict[str, str]:
    """The cells' environment: this one, but with OpenMP's wait policy as the user left it. The harness's
    own passive policy (harness/__init__.py, right for training on a shared machine) is not what a user of
    torch gets, and it slows small kernels down (harness/__init__.py), so a benchmark does not inherit it."""
    env = dict(os.environ)
    if USER_OMP_WAIT_POLICY is None:
        env.pop("OMP_WAIT_POLICY", None)
        env.pop(POLICY_FROM_HARNESS, None)
        env[KEEP_OMP_DEFAULTS] = "1"
    return env


def run_in_subprocess(
    spec: CellSpec, *, memory_cap_bytes: int | None, timeout_s: float, module: str = "harness.bench.cell"
) -> dict[str, Any]:
    """Measure ``spec`` in a child process (``python -m <module> SPEC_JSON RESULT_PATH``, by default
    ``harness.bench.cell``; any dataclass spec with a ``device`` field); the result always has a ``status``."""
    env = benchmark_environment()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cap = memory_cap_bytes if spec.device == "cpu" else None  # CUDA maps far more address space than it uses
    if spec.device == "cpu":
        for name, value in CPU_ALLOCATOR_ENV.items():
            env.setdefault(name, value)
    with tempfile.TemporaryDirectory(prefix="bench-cell-") as folder:
        result_path = Path(folder) / "result.json"
        command = [sys.executable, "-m", module, json.dumps(asdict(spec)), str(result_path)]
        try:
            done = subprocess.run(
                command,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                preexec_fn=address_space_cap(cap) if cap else None,
            )
        except subprocess.TimeoutExpired:
            return {"status": "timeout", "error": f"no result within {timeout_s:g} s"}
        if result_path.exists():
            result = json.loads(result_path.read_text())
            result.pop("spec", None)
            return result
        return describe_exit(done.returncode, done.stderr)
