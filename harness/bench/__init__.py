"""Speed and memory benchmarks: ``python -m harness.bench kernels`` (one token mixer per backend, mode and
length) and ``python -m harness.bench table7`` (the paper's model-level speed table)."""
from harness.bench.cli import main

__all__ = ["main"]
