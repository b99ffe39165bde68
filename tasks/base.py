"""The Task interface: everything the trainer needs to know about a task, and nothing about optimisers.

A task owns its data (a ``builtin`` generator or the official ``files`` at ``data.path``), its model
(embeddings + an ``attention_zoo`` backbone + a head), its loss and its metrics. The trainer only ever
calls the methods below, so a new task family (``lm``, ``mlm``, ``glue/<name>``, ``lra/<name>``) plugs in
by subclassing :class:`Task` and registering itself in ``tasks/__init__.py``.

Example (what the trainer does, in miniature)::

    task = tasks.build({"name": "lm", "data": {"source": "builtin"}, "seq_len": 64})
    task.prepare()                                           # generate/read, tokenise, cache
    model = task.build_model({"name": "transnormer_t2"}, {"d_model": 64, "n_layers": 2, "n_heads": 2})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step, batch in zip(range(100), task.train_batches(batch_size=8, seed=0)):
        optimizer.zero_grad()
        (task.loss(model(**batch.inputs), batch) / batch.n_targets).backward()
        optimizer.step()
    model.eval()
    metrics = task.metrics()
    for batch in task.eval_batches("valid", batch_size=8):
        metrics.update(*task.metric_inputs(model(**batch.inputs), batch))
    print(task.primary_metric, metrics.compute()[task.primary_metric])
"""
from __future__ import annotations

import abc
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torchmetrics import MetricCollection

from attention_zoo import BackboneConfig, build_backbone

IGNORE_INDEX = -100  # targets with this value take no part in the loss or the metrics

DATA_SOURCES = ("builtin", "files")


@dataclass
class DataConfig:
    """Where a task's data comes from.

    ``source``: ``builtin`` (generated or packaged, deterministic by ``seed``) or ``files`` (a local copy of
    the official distribution at ``path``). ``cache_dir``: where generated files and tokenised tensors go.
    """

    source: str = "builtin"
    path: str | None = None
    cache_dir: str = ".cache/data"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.source not in DATA_SOURCES:
            raise ValueError(f"task.data.source={self.source!r} is not valid; valid choices: {list(DATA_SOURCES)}")
        if self.source == "files" and not self.path:
            raise ValueError("task.data.source=files needs task.data.path=DIR (the folder of the official files)")


@dataclass
class TaskConfig:
    """Fields every task has; a task family extends it with its own (sequence length, corpus size, ...)."""

    name: str = "lm"
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        """A family's checks of its own fields (it calls this first)."""


@dataclass
class Batch:
    """One batch: ``model(**inputs)`` gives the outputs that :meth:`Task.loss` compares with ``targets``.

    ``n_targets`` counts the targets that take part in the loss (not ``IGNORE_INDEX``; examples for a
    classifier), ``n_tokens`` the real (unpadded) input tokens, for tokens/sec. Both are known on the CPU.
    """

    inputs: dict[str, torch.Tensor]
    targets: torch.Tensor
    n_targets: int
    n_tokens: int

    def to(self, device: torch.device | str) -> Batch:
        inputs = {k: v.to(device, non_blocking=True) for k, v in self.inputs.items()}
        return Batch(inputs, self.targets.to(device, non_blocking=True), self.n_targets, self.n_tokens)


class Task(abc.ABC):
    """Base class of all tasks. Subclasses set the class attributes and implement the abstract methods.

    ``primary_metric`` names the key of :meth:`metrics` used to pick the best checkpoint on validation,
    ``primary_mode`` says whether lower (``min``) or higher (``max``) is better. ``splits`` names the
    evaluation splits in the order (validation, test).
    """

    config_class: ClassVar[type[TaskConfig]] = TaskConfig
    primary_metric: ClassVar[str]
    primary_mode: ClassVar[str]  # "min" | "max"
    splits: ClassVar[tuple[str, str]] = ("valid", "test")
    causal: ClassVar[bool] = False

    def __init__(self, cfg: TaskConfig):
        self.cfg = cfg  # checked when made (DataConfig and the family's schema)

    # ------------------------------------------------------------------------------------------ data
    @abc.abstractmethod
    def prepare(self) -> None:
        """Generate or read the data, build the vocabulary, tokenise; cache what is costly. Idempotent."""

    @abc.abstractmethod
    def num_examples(self, split: str) -> int:
        """Number of examples in ``split`` ("train" or one of ``splits``)."""

    @abc.abstractmethod
    def collate(self, split: str, indices: list[int]) -> Batch:
        """The batch made of these examples of ``split`` (padding as needed, ``IGNORE_INDEX`` targets)."""

    def train_batches(
        self, batch_size: int, seed: int, start: int = 0, rank: int = 0, world_size: int = 1
    ) -> Iterator[Batch]:
        """Endless training batches of ``batch_size`` examples for this ``rank``, from batch number ``start``.

        Epoch ``e`` visits the examples in a permutation seeded by ``(seed, e)``; each step takes
        ``batch_size * world_size`` of them and rank ``r`` gets the ``r``-th slice, so the stream is the
        same for any resume point (``start`` skips without touching data) and shards cleanly across
        processes. The incomplete remainder of an epoch is dropped (training only).
        """
        n = self.num_examples("train")
        per_step = batch_size * world_size
        steps_per_epoch = n // per_step
        if steps_per_epoch == 0:
            raise ValueError(
                f"the training split has {n} examples, fewer than one step needs "
                f"(batch_size={batch_size} x world_size={world_size}); lower the batch size"
            )
        step = start
        while True:
            epoch, offset = divmod(step, steps_per_epoch)
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
            for s in range(offset, steps_per_epoch):
                first = s * per_step + rank * batch_size
                # the batch's first example's place in the training stream: the same whatever the process count
                position = epoch * steps_per_epoch * per_step + first
                yield self.collate_train(order[first : first + batch_size].tolist(), seed, position)
            step = (epoch + 1) * steps_per_epoch

    def collate_train(self, indices: list[int], seed: int, position: int) -> Batch:
        """A training batch of ``indices``; ``position``: the stream position of its first example, for draws
        that must depend on the example's place in training, not on the process that takes it (MLM's masks)."""
        return self.collate("train", indices)

    def eval_batches(self, split: str, batch_size: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        """Every example of ``split`` exactly once across ranks (rank ``r`` takes ``r, r + W, ...``), in
        order, the last batch possibly smaller: metrics cover the whole split."""
        indices = list(range(rank, self.num_examples(split), world_size))
        for first in range(0, len(indices), batch_size):
            yield self.collate(split, indices[first : first + batch_size])

    def eval_steps(self, split: str, batch_size: int, world_size: int = 1) -> int:
        """How many batches :meth:`eval_batches` yields on rank 0 (for progress bars)."""
        return math.ceil(math.ceil(self.num_examples(split) / world_size) / batch_size)

    # ----------------------------------------------------------------------------------------- model
    @abc.abstractmethod
    def build_model(self, attention: Mapping[str, Any], model: Mapping[str, Any]) -> nn.Module:
        """Embeddings + backbone (:meth:`build_backbone`) + head. ``model(**batch.inputs)`` -> outputs."""

    def build_backbone(self, attention: Mapping[str, Any], model: Mapping[str, Any], max_len: int) -> nn.Module:
        """The ``attention_zoo`` backbone, causal as the task requires, long enough for ``max_len``.

        ``model`` may hold task-model options beside the backbone's (e.g. ``tie_embeddings``); only the
        :class:`attention_zoo.BackboneConfig` fields are passed on.
        """
        sizes = backbone_options(model)
        sizes["causal"] = self.causal
        sizes["max_len"] = max(int(sizes.get("max_len", max_len)), max_len)
        return build_backbone(dict(attention), sizes)

    # --------------------------------------------------------------------------------- loss, metrics
    @abc.abstractmethod
    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The loss of one batch SUMMED over its ``batch.n_targets`` targets; the trainer divides by the
        total count over accumulated micro-batches (and processes), so every target weighs the same."""

    @abc.abstractmethod
    def metrics(self) -> MetricCollection:
        """Fresh metrics (torchmetrics) for one evaluation pass; keys include ``primary_metric``."""

    @abc.abstractmethod
    def metric_inputs(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(preds, target)`` for ``metrics().update`` from the model's outputs on ``batch``."""

    def describe(self) -> dict[str, Any]:
        """Facts about the prepared data worth recording with a run (sizes, vocabulary, entropy rate)."""
        return {split: self.num_examples(split) for split in ("train", *self.splits)}

    def describe_model(self, model: nn.Module) -> dict[str, Any]:
        """Facts about the built model worth recording beside the data's (merged into the record's ``data``);
        nothing by default."""
        return {}

    def save_artifacts(self, run_dir: str | Path) -> None:
        """Write into the run folder what a later run needs besides the weights (e.g. the tokenizer that
        fine-tuning must share with pretraining). Called once the model is built; nothing by default."""
        return None


def backbone_options(model: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``model`` that are :class:`attention_zoo.BackboneConfig` fields."""
    valid = {f.name for f in fields(BackboneConfig)} - {"attention", "knobs", "layer_plan"}
    return {k: v for k, v in model.items() if k in valid}
