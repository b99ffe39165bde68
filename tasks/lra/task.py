"""Long-Range Arena (``task=lra/<name>``): ListOps, Text, Retrieval, Image, Pathfinder and Path-X.

Data: ``data.source=builtin`` generates files in the official formats (``tasks.lra.generators``),
``data.source=files`` reads a copy of the release at ``data.path``; both go through the same loaders
(``tasks.lra.data``), are split deterministically (``tasks.lra.splits``) and tokenised once into a cache
(``tasks.lra.source``). Model: embeddings, a bidirectional backbone, pooling and an MLP head
(``tasks.lra.model``). Metric: accuracy over every example of a split.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from tasks.base import Batch, Task, TaskConfig
from tasks.lra.data.pathfinder import DIFFICULTIES
from tasks.lra.model import POOLINGS, Classifier, DualEncoderClassifier, SequenceEncoder
from tasks.lra.source import load_tensors
from tasks.lra.specs import get_spec
from tasks.lra.splits import SPLITS


@dataclass
class LraTaskConfig(TaskConfig):
    """``seq_len``: tokens per sequence (per document for retrieval), longer ones cut; for the image tasks it
    must equal the tokens per image, ``(side / pool)^2``. ``pooling``: mean | cls | last. ``head_hidden``:
    width of the head's hidden layer (null: d_model). ``valid_fraction``: share of the training examples
    held out for validation where the source has no validation split (Text: 0 validates on the test set,
    as the authors' code does); ``test_fraction``: Pathfinder's test share. ``side``/``difficulty``: which
    Pathfinder (32: Pathfinder, 128: Path-X). ``pool``: image tasks, average-pool the grey image by this
    factor (1 = as released). ``builtin``: the generator's arguments (see its module)."""

    name: str = "lra/listops"
    seq_len: int = 2048
    pooling: str = "mean"
    head_hidden: int | None = None
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    side: int = 32
    difficulty: str = "curv_contour_length_14"
    pool: int = 1
    builtin: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            get_spec(self.name)
        except ValueError as err:  # fails with the choices before a run folder exists
            raise ValueError(f"task.name={self.name!r}: {err}") from None


class LraTask(Task):
    config_class = LraTaskConfig
    primary_metric = "accuracy"
    primary_mode = "max"
    causal = False

    cfg: LraTaskConfig

    def __init__(self, cfg: LraTaskConfig):
        super().__init__(cfg)
        self.spec = get_spec(cfg.name)
        if cfg.pooling not in POOLINGS:
            raise ValueError(f"task.pooling={cfg.pooling!r} is not valid; valid choices: {list(POOLINGS)}")
        if cfg.difficulty not in DIFFICULTIES:
            raise ValueError(f"task.difficulty={cfg.difficulty!r} is not valid; valid choices: {list(DIFFICULTIES)}")
        if cfg.seq_len < 1 or cfg.pool < 1:
            raise ValueError(f"task.seq_len={cfg.seq_len} and task.pool={cfg.pool} must be positive")
        if self.spec.image:
            side = cfg.side if self.spec.name in ("pathfinder", "pathx") else 32
            tokens = (side // cfg.pool) ** 2
            if cfg.seq_len != tokens:
                raise ValueError(
                    f"task.seq_len={cfg.seq_len} must equal the tokens per image of {cfg.name}, "
                    f"(side {side} / pool {cfg.pool})^2 = {tokens}"
                )
        self.splits = ("valid", "test")
        self.tensors: dict[str, dict[str, torch.Tensor]] = {}
        self.root: Path | None = None
        self.cache: Path | None = None

    # ------------------------------------------------------------------------------------------ data
    def prepare(self) -> None:
        if not self.tensors:
            self.tensors, self.root, self.cache = load_tensors(self.spec, self.cfg)

    def num_examples(self, split: str) -> int:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid choices: {list(SPLITS)}")
        if not self.tensors:
            raise RuntimeError(f"{self.cfg.name} is not prepared: call prepare() first")
        return len(self.tensors[split]["labels"])

    def _sequences(self, split: str, k: int, indices: list[int]) -> list[torch.Tensor]:
        data = self.tensors[split]
        tokens, offsets = data[f"tokens{k}"], data[f"offsets{k}"]
        return [tokens[offsets[i] : offsets[i + 1]] for i in indices]

    def collate(self, split: str, indices: list[int]) -> Batch:
        """Right-padded tokens ``[B, N]`` (retrieval: ``[B, 2, N]``), a padding mask when lengths differ."""
        rows = [self._sequences(split, k, indices) for k in range(self.spec.n_inputs)]
        lengths = torch.tensor([[len(seq) for seq in row] for row in rows])  # [inputs, B]
        width = max(int(lengths.max()), 1)
        tokens = torch.zeros(len(indices), self.spec.n_inputs, width, dtype=torch.long)
        for k, row in enumerate(rows):
            for b, seq in enumerate(row):
                tokens[b, k, : len(seq)] = seq
        inputs = {"tokens": tokens if self.spec.n_inputs > 1 else tokens[:, 0]}
        if int(lengths.min()) < width:
            mask = torch.arange(width) >= lengths.T.unsqueeze(-1)  # [B, inputs, N]
            inputs["padding_mask"] = mask if self.spec.n_inputs > 1 else mask[:, 0]
        targets = self.tensors[split]["labels"][indices]
        return Batch(inputs, targets, n_targets=len(indices), n_tokens=int(lengths.sum()))

    # ----------------------------------------------------------------------------------------- model
    def build_model(self, attention: Mapping[str, Any], model: Mapping[str, Any]) -> nn.Module:
        self.prepare()
        max_len = max(int((d[f"offsets{k}"][1:] - d[f"offsets{k}"][:-1]).max()) for d in self.tensors.values()
                      for k in range(self.spec.n_inputs))
        return self.build_model_for_length(attention, model, max_len)

    def build_model_for_length(self, attention: Mapping[str, Any], model: Mapping[str, Any],
                               max_len: int) -> nn.Module:
        """The encoder and head for sequences of at most ``max_len`` tokens (no data needed: the compute plan
        builds it on the meta device)."""
        max_len += self.cfg.pooling == "cls"
        backbone = self.build_backbone(attention, model, max_len=max_len)
        encoder = SequenceEncoder(backbone, self.spec.vocab_size, self.cfg.pooling,
                                  bool(model.get("scale_embeddings", False)))
        hidden = self.cfg.head_hidden or backbone.config.d_model
        head = DualEncoderClassifier if self.spec.n_inputs > 1 else Classifier
        return head(encoder, hidden, self.spec.n_classes)

    # --------------------------------------------------------------------------------- loss, metrics
    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(outputs.float(), batch.targets, reduction="sum")

    def metrics(self) -> MetricCollection:
        return MetricCollection({"accuracy": MulticlassAccuracy(self.spec.n_classes, average="micro")})

    def metric_inputs(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return outputs.argmax(dim=-1), batch.targets

    def describe(self) -> dict[str, Any]:
        """Sizes, lengths, class balance and the majority-class baseline (the training split's commonest
        class) of every split."""
        train_labels = self.tensors["train"]["labels"]
        majority = int(torch.bincount(train_labels, minlength=self.spec.n_classes).argmax())
        facts: dict[str, Any] = {"data_folder": str(self.root), "cache_folder": str(self.cache), "splits": {}}
        for split in SPLITS:
            data = self.tensors[split]
            lengths = data["offsets0"][1:] - data["offsets0"][:-1]
            counts = torch.bincount(data["labels"], minlength=self.spec.n_classes)
            facts["splits"][split] = {
                "examples": len(data["labels"]), "mean_length": float(lengths.float().mean()),
                "max_length": int(lengths.max()), "class_counts": counts.tolist(),
                "majority_baseline": float(counts[majority] / counts.sum()),
            }
        return facts
