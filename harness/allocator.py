"""glibc's allocator on CPU: keep freed memory in the heap instead of handing it back to the kernel.

PyTorch's CPU allocator does not cache, and glibc serves every block above its mmap threshold (adaptive, at
most 32 MiB) with a fresh ``mmap`` and unmaps it on ``free``: each training step then page-faults its large
activations in again, zeroed by the kernel. For Performer at LRA's cpu scale ([64, 4, 160, 256] features)
that is 60% of a forward+backward (1.56 s -> 0.55 s per layer with the heap). jemalloc or tcmalloc, which
PyTorch's CPU tuning guide recommends, avoid it the same way. The cost: the process keeps its peak memory.

Benchmark cells get it through the environment (``CPU_ALLOCATOR_ENV``, read by glibc at start); the trainer
sets it with ``mallopt`` when it trains on CPU. Set ``MALLOC_MMAP_MAX_`` or ``MALLOC_TRIM_THRESHOLD_`` yourself
to keep your own choice, or ``ATTENTION_ZOO_CPU_ALLOCATOR=system`` to leave glibc's defaults.
"""
from __future__ import annotations

import ctypes
import os
import sys

CPU_ALLOCATOR_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**40)}  # heap only, never trimmed
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (as ``CPU_ALLOCATOR_ENV``); False where nothing was changed:
    not glibc, the user chose (the variables above), or ``ATTENTION_ZOO_CPU_ALLOCATOR=system``."""
    if sys.platform != "linux" or os.environ.get("ATTENTION_ZOO_CPU_ALLOCATOR", "heap") == "system":
        return False
    if any(name in os.environ for name in CPU_ALLOCATOR_ENV):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # another C library (musl)
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
