"""One GPU per job when a launcher runs several jobs on one machine (Hydra's joblib launcher on a node of several
GPUs): each job leases the first free GPU, by an OS lock per device that the kernel drops when the job's process
dies, and waits while all are leased. Without this every job would train on ``cuda:0``."""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import torch

log = logging.getLogger(__name__)


def lock_path(index: int) -> Path:
    """The lock of GPU ``index`` of this machine, per user (jobs of one user share the GPUs they see)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "all").replace(",", "-")
    return Path(tempfile.gettempdir()) / f"attention-zoo-gpu-{os.getuid()}-{visible}-{index}.lock"


def try_lease(count: int) -> tuple[int, IO] | None:
    """The first free GPU of ``count`` and its held lock, or None when every one is leased."""
    for index in range(count):
        handle = open(lock_path(index), "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return index, handle
    return None


@contextlib.contextmanager
def one_gpu_per_job(wanted: bool, poll_s: float = 5.0) -> Iterator[int | None]:
    """Around one job of a sweep: with several GPUs and ``wanted``, this job's own GPU (made the current
    device) for as long as it runs; else nothing (one GPU, the CPU, or a run that already spans processes)."""
    count = torch.cuda.device_count() if wanted else 0
    if count < 2:
        yield None
        return
    lease = try_lease(count)
    while lease is None:  # more jobs than GPUs: wait for one to finish
        time.sleep(poll_s)
        lease = try_lease(count)
    index, handle = lease
    torch.cuda.set_device(index)
    log.info("this job trains on cuda:%d (one GPU per job of the sweep)", index)
    try:
        yield index
    finally:
        handle.close()  # releases the lock
