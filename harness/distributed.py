"""Data-parallel training under ``torchrun``: the process group, this process's place in it, and the few
collective operations the trainer needs.

``torchrun --nproc_per_node=P -m harness.run ...`` starts P copies of the run with ``RANK``, ``WORLD_SIZE``
and ``LOCAL_RANK`` in their environment; :func:`setup` joins them into one group (NCCL on GPUs, gloo on CPUs)
and pins each GPU process to its own device. Without those variables everything is a single process and
every function here is a no-op, so the trainer has one code path.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, writes records and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def from_environment() -> ProcessInfo:
    """Where this process sits, as ``torchrun`` says (a single process when it says nothing)."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise RuntimeError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them): {err}") from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise RuntimeError(f"invalid process placement: RANK={rank}, WORLD_SIZE={world_size}")
    return ProcessInfo(rank, world_size, local_rank)


def setup(device_choice: str, timeout_minutes: float = 30.0) -> ProcessInfo:
    """Join the process group when started by ``torchrun`` with more than one process (idempotent).

    ``device_choice`` is ``trainer.device``; on CUDA each process takes ``cuda:LOCAL_RANK``.
    """
    info = from_environment()
    if not info.distributed or dist.is_initialized():
        return info
    use_cuda = device_choice != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo", rank=info.rank, world_size=info.world_size,
                            timeout=datetime.timedelta(minutes=timeout_minutes))
    return info


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``values`` over all processes (``values`` itself when alone)."""
    if is_active():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier() -> None:
    if is_active():
        dist.barrier()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. generating and caching data), the others after it has finished."""
    main = not is_active() or dist.get_rank() == 0
    if not main:
        barrier()
    yield
    if main:
        barrier()
