"""Data-parallel training under ``torchrun``: the process group, this process's place in it, and the few
collective operations the trainer needs.

``torchrun --nproc_per_node=P -m harness.run ...`` starts P copies of the run with ``RANK``, ``WORLD_SIZE``
and ``LOCAL_RANK`` in their environment; so does a SLURM job step of P tasks (Hydra's submitit launcher with
``tasks_per_node=P``, what ``./reproduce.sh --gpus-per-run P`` asks for), whose tasks read ``SLURM_PROCID``,
``SLURM_STEP_NUM_TASKS`` and ``SLURM_LOCALID`` and meet at the step's first node. :func:`setup` joins them into
one group (NCCL on GPUs, gloo on CPUs) and pins each GPU process to its own device. Without those variables
everything is a single process and every function here is a no-op, so the trainer has one code path.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    init_method: str = "env://"  # where the group meets: torchrun's MASTER_ADDR/MASTER_PORT, or a SLURM step's

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, writes records and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def from_environment() -> ProcessInfo:
    """Where this process sits, as ``torchrun`` says, else as a SLURM job step of several tasks says (a single
    process when neither says anything)."""
    if "RANK" not in os.environ and int(os.environ.get("SLURM_STEP_NUM_TASKS", "1") or 1) > 1:
        return slurm_placement()
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise RuntimeError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them): {err}") from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise RuntimeError(f"invalid process placement: RANK={rank}, WORLD_SIZE={world_size}")
    return ProcessInfo(rank, world_size, local_rank)


def slurm_placement() -> ProcessInfo:
    """This task's place in its SLURM job step: rank ``SLURM_PROCID`` of ``SLURM_STEP_NUM_TASKS``, GPU
    ``SLURM_LOCALID``, meeting at the step's first node on a port derived from the job id (two jobs on one node
    never share it)."""
    try:
        rank, world_size = int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_STEP_NUM_TASKS"])
        local_rank = int(os.environ.get("SLURM_LOCALID", "0"))
        port = 20000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000
    except (KeyError, ValueError) as err:
        raise RuntimeError(f"a SLURM step of several tasks without a valid SLURM_PROCID, SLURM_STEP_NUM_TASKS, "
                           f"SLURM_LOCALID or SLURM_JOB_ID: {err}") from None
    if not 0 <= rank < world_size:
        raise RuntimeError(f"invalid SLURM placement: SLURM_PROCID={rank}, SLURM_STEP_NUM_TASKS={world_size}")
    return ProcessInfo(rank, world_size, local_rank, f"tcp://{first_node()}:{port}")


def first_node() -> str:
    """The host of rank 0: this machine for a one-node step, else the first of the step's node list."""
    if int(os.environ.get("SLURM_STEP_NUM_NODES", os.environ.get("SLURM_NNODES", "1")) or 1) <= 1:
        return "127.0.0.1"
    nodes = os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST", "")
    if nodes and not any(c in nodes for c in "[,"):
        return nodes
    found = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True, timeout=30)
    if found.returncode != 0 or not found.stdout.split():
        raise RuntimeError(f"cannot expand the SLURM node list {nodes!r}: {found.stderr.strip()}")
    return found.stdout.split()[0]


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
    dist.init_process_group("nccl" if use_cuda else "gloo", init_method=info.init_method, rank=info.rank,
                            world_size=info.world_size, timeout=datetime.timedelta(minutes=timeout_minutes))
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


def all_gather(values: torch.Tensor) -> torch.Tensor:
    """``values`` of every process, stacked in rank order ([processes, ...]; ``values[None]`` when alone)."""
    if not is_active():
        return values[None]
    gathered = [torch.empty_like(values) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, values.contiguous())
    return torch.stack(gathered)


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
