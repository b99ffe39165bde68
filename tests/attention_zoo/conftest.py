"""Run the attention_zoo tests single-threaded: their tensors are tiny, and on a small shared machine
intra-op threads only contend (the same tests run 4-5x slower with two threads under load)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
