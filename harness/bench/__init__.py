"""Speed and memory benchmarks: ``python -m harness.bench kernels | table7 | decode | compile`` (``cli``), each
on the shared machinery of ``skeleton`` (parent side) and ``child`` (the process that measures one cell)."""
from harness.bench.cli import main

__all__ = ["main"]
