"""Batch-norm running statistics under several processes, as one process trains them.

One process accumulating an update's micro-batches moves each running mean and variance once per micro-batch,
in order. Under DistributedDataParallel each process sees its own micro-batches only, and DDP would copy rank 0's
buffers to the others at every forward: the statistics (and every evaluation that uses them) would depend on the
number of processes. Instead each process records its micro-batches' statistics, and after the update every
process replays all of them, rank by rank (the order of the global batch), from the update's starting values.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from attention_zoo.norms import MaskedBatchNorm
from harness import distributed


def tracked_norms(model: nn.Module) -> list[MaskedBatchNorm]:
    return [m for m in model.modules() if isinstance(m, MaskedBatchNorm) and m.norm.track_running_stats]


@contextlib.contextmanager
def replayed_across_processes(norms: list[MaskedBatchNorm]) -> Iterator[None]:
    """Around one update's micro-batches: on exit, every process holds the statistics one process would."""
    if not norms or not distributed.is_active():
        yield
        return
    start = [(n.norm.running_mean.clone(), n.norm.running_var.clone(), n.norm.num_batches_tracked.clone())
             for n in norms]
    for norm in norms:
        norm.recorded = []
    try:
        yield
        # [micro-batches, 2, sum of D]: every process has as many micro-batches (equal shares of the update)
        local = torch.cat([torch.stack(n.recorded) for n in norms], dim=-1)
        everyone = distributed.all_gather(local)  # [processes, micro-batches, 2, sum of D]
        for norm, (mean, var, tracked), part in zip(norms, start, _split(everyone, norms)):
            norm.norm.running_mean.copy_(mean)
            norm.norm.running_var.copy_(var)
            norm.norm.num_batches_tracked.copy_(tracked)
            for batch_mean, batch_var in part.flatten(0, 1):  # rank by rank, micro-batch by micro-batch
                _move(norm.norm, batch_mean, batch_var)
    finally:
        for norm in norms:
            norm.recorded = None


def _split(everyone: torch.Tensor, norms: list[MaskedBatchNorm]) -> list[torch.Tensor]:
    return list(everyone.split([n.norm.num_features for n in norms], dim=-1))


@torch.no_grad()
def _move(norm: nn.BatchNorm1d, mean: torch.Tensor, var: torch.Tensor) -> None:
    """One running-statistics update, as nn.BatchNorm1d makes it."""
    norm.num_batches_tracked += 1
    momentum = norm.momentum if norm.momentum is not None else 1 / float(norm.num_batches_tracked)
    norm.running_mean.lerp_(mean.to(norm.running_mean.dtype), momentum)
    norm.running_var.lerp_(var.to(norm.running_var.dtype), momentum)
