"""glibc keeps freed activations for reuse once the harness asks it to: repeated large allocations stop
page-faulting. Each case runs in a fresh interpreter (the setting is process-wide and cannot be undone)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, resource, sys, torch
from harness.allocator import keep_freed_memory
from attention_zoo.mixers.performer import PerformerAttention
changed = keep_freed_memory() if sys.argv[1] == "heap" else False
torch.set_num_threads(1)
mixer = PerformerAttention(64, 4, causal=False)
x = torch.randn(64, 160, 64, requires_grad=True)  # LRA Retrieval at cpu scale: 42 MB feature maps
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
mixer(x).sum().backward()  # warm up: the first step always faults its memory in
before = faults()
for _ in range(2):
    mixer(x).sum().backward()
print(json.dumps({"changed": changed, "faults": faults() - before}))
"""

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator")


def probe(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "ATTENTION_ZOO_CPU_ALLOCATOR"}
    done = subprocess.run([sys.executable, "-c", PROBE, mode], env={**clean, "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_freed_memory_is_reused_instead_of_faulted_in_again():
    default, heap = probe("system"), probe("heap")
    assert heap["changed"] is True
    # glibc's default maps every large block afresh: ~480k faults a step here (the heap: ~45k, measured)
    assert heap["faults"] * 4 < default["faults"]


def test_the_users_choice_is_kept():
    assert probe("heap", MALLOC_MMAP_MAX_="65536")["changed"] is False
    assert probe("heap", ATTENTION_ZOO_CPU_ALLOCATOR="system")["changed"] is False
