"""The parent side every benchmark shares, so that a benchmark module only says what it measures and how it
renders: the machine it ran on, the device, one cell in a fresh process, the give-up rule, the progress line
and the atomic writers of its outputs.

Cells run in a fresh Python process (``run_in_subprocess``; the child side is ``harness.bench.child``), so that
their memory is measured cleanly and a crash, an out-of-memory or a timeout is recorded as such instead of
ending the sweep. They inherit this process's environment as it is, OpenMP's wait policy included, set or
unset: what a plain ``import torch`` user gets (nothing in the benchmarks sets it).

CPU cells run with glibc's heap serving every allocation (``CPU_ALLOCATOR_ENV``; why: harness/allocator.py):
at N = 16K every [8, N, 64] fp32 tensor is above glibc's mmap threshold, so with its defaults each pass would
page-fault ~1.2 GB of fresh zeroed memory (measured: 300,000 minor faults per forward+backward of
norm_attention), a cost of the allocator that swamps the kernels' own. Set the variables yourself to override
them (e.g. ``MALLOC_MMAP_MAX_=65536``).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from harness.allocator import CPU_ALLOCATOR_ENV
from harness.run_record import git_commit, now, versions
from zoo_io.atomic import atomic_write, write_text

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[2]
GIVE_UP = ("oom", "timeout")  # a longer length of the same series would fail the same way
DEVICES = ("auto", "cpu", "cuda")


# ---------------------------------------------------------------------------------- the machine
def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (the machine may be shared: timings are only as clean as this)."""
    return [round(x, 2) for x in os.getloadavg()]


def omp_wait_policy() -> str:
    """The OpenMP wait policy the cells inherit."""
    return os.environ.get("OMP_WAIT_POLICY") or "default (unset)"


def environment(device: str, threads: int | None = None) -> dict[str, Any]:
    """What a benchmark ran on, for its JSON and markdown: command, machine, versions, commit and load.
    ``threads``: the torch threads of its cells, when it sets them."""
    return {
        "command": " ".join(shlex.quote(a) for a in ["python", "-m", "harness.bench", *sys.argv[1:]]),
        "date": now(),
        "device": device,
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "torch_threads": threads or torch.get_num_threads(),
        "omp_wait_policy": omp_wait_policy(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "versions": versions(),
        "git": git_commit(ROOT),
        "load_average_start": load_average(),
    }


def announce(env: dict[str, Any]) -> None:
    """The machine in one line, before the first cell."""
    print(f"{env['cpu']} | {env['logical_cpus']} logical CPUs | torch {env['torch']} ({env['torch_threads']} "
          f"threads) | device {env['device']} | load {env['load_average_start']}", flush=True)


def machine_text(env: dict[str, Any]) -> str:
    """The command and the machine, at the top of a markdown report (once the load at the end is known)."""
    return (f"Command: `{env['command']}`\n\nMachine: {env['cpu']}, {env['logical_cpus']} logical CPUs, torch "
            f"{env['torch']} ({env['torch_threads']} threads, OpenMP wait policy {env['omp_wait_policy']}), "
            f"device {env['device']}; load average {env['load_average_start']} at the start, "
            f"{env['load_average_end']} at the end.\n\n")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=DEVICES, default="auto")


def resolve_device(choice: str) -> str:
    """``auto``: CUDA where there is a GPU, else the CPU."""
    if choice != "auto":
        return choice
    return "cuda" if torch.cuda.is_available() else "cpu"


def gib(value: float | None) -> int | None:
    """``--memory-cap-gb`` in bytes (None: no cap)."""
    return int(value * 2**30) if value else None


def require_positive(args: argparse.Namespace, *names: str) -> None:
    """Raise ValueError naming the first option among ``names`` below 1."""
    for name in names:
        values = getattr(args, name)
        for value in values if isinstance(values, list) else [values]:
            if value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")


def int_list(text: str) -> list[int]:
    """An argparse type: comma-separated positive integers, sorted, each once."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return sorted(set(values))


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The command line's options as JSON values."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "handler"}


# ------------------------------------------------------------------------------ one cell, fresh process
def address_space_cap(cap_bytes: int) -> Callable[[], None]:
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


def run_in_subprocess(
    spec: Any, *, memory_cap_bytes: int | None, timeout_s: float, module: str = "harness.bench.cell"
) -> dict[str, Any]:
    """Measure ``spec`` (a dataclass with a ``device`` field) in a child process, ``python -m <module> SPEC_JSON
    RESULT_PATH`` (by default ``harness.bench.cell``, the kernel benchmark's); the result always has a
    ``status``. ``memory_cap_bytes`` caps a CPU cell's address space (CUDA maps far more than it uses)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cap = memory_cap_bytes if spec.device == "cpu" else None
    if spec.device == "cpu":
        for name, value in CPU_ALLOCATOR_ENV.items():
            env.setdefault(name, value)
    with tempfile.TemporaryDirectory(prefix="bench-cell-") as folder:
        result_path = Path(folder) / "result.json"
        command = [sys.executable, "-m", module, json.dumps(asdict(spec)), str(result_path)]
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s,
                                  preexec_fn=address_space_cap(cap) if cap else None)
        except subprocess.TimeoutExpired:
            return {"status": "timeout", "error": f"no result within {timeout_s:g} s"}
        if result_path.exists():
            return json.loads(result_path.read_text())
        return describe_exit(done.returncode, done.stderr)


class GiveUp:
    """The give-up rule: once a series (one backend and mode, say) runs out of memory or time at a length
    (``GIVE_UP``), its cells at that length and longer are skipped, not measured."""

    def __init__(self) -> None:
        self._failed: dict[Hashable, tuple[int, str]] = {}  # series -> (shortest length that gave up, status)

    def note(self, series: Hashable, length: int, status: str) -> None:
        """Record a cell's outcome."""
        failed = self._failed.get(series)
        if status in GIVE_UP and (failed is None or length < failed[0]):
            self._failed[series] = (length, status)

    def skipped(self, series: Hashable, length: int) -> dict[str, Any] | None:
        """The result of a cell skipped because its series gave up, or None: measure it."""
        failed = self._failed.get(series)
        if failed is None or length < failed[0]:
            return None
        return {"status": "skipped", "error": f"{failed[1]} at N={failed[0]}"}


def progress(index: int, total: int, text: str) -> None:
    """One line per cell, as it finishes."""
    print(f"[{index:>3}/{total}] {text}", flush=True)


def failed_text(row: dict[str, Any]) -> str:
    return f"{row['status']}: {row.get('error') or ''}"


# ---------------------------------------------------------------------------------------- outputs
def length_label(n: int) -> str:
    return f"{n // 1024}K" if n % 1024 == 0 else str(n)


def write_rows(path: Path, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    """Rows as CSV with these columns (others ignored), atomically: a reader never sees half a file."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_frame(path: Path, frame: pd.DataFrame) -> None:
    """A data frame as CSV, atomically."""
    write_text(path, frame.to_csv(index=False))


def write_figure(path: Path, figure: Figure) -> None:
    """A figure as PNG, atomically."""
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
