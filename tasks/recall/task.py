"""Associative recall diagnostics (``task=recall/<name>``): Zoology's MQAR and MAD's noisy in-context recall and
selective copying, on any causal backend.

Data: seeded built-in generators (``tasks.recall.mqar``, ``noisy``, ``selective_copy``), split and cached by
``tasks.recall.data``. Model: the causal LM of ``tasks.lm`` (embeddings, the backbone, a head tied to the
embeddings) over the task's vocabulary plus one padding row that never occurs (sequences have a fixed length;
a real token must not get the padding row's zero embedding). Loss: cross-entropy on the answer positions (MAD's
noisy recall trains on every next token: ``train_on``). Metric: accuracy over the answer positions only.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from tasks.base import IGNORE_INDEX, Batch, Task, TaskConfig
from tasks.lm import LanguageModel
from tasks.recall.data import SPLITS, load_splits
from tasks.recall.specs import ALL_KNOBS, get_spec


@dataclass
class RecallTaskConfig(TaskConfig):
    """``vocab_size``, ``seq_len`` and the knobs below belong to the generator of ``name`` (null: its default;
    a knob of another recall task is an error): MQAR ``num_kv_pairs``, ``power_a``, ``num_passes``,
    ``filler``; noisy recall ``noise_vocab_size``, ``frac_noise``, ``train_on``; selective copying
    ``num_tokens_to_copy``. Each module of ``tasks/recall`` documents its knobs. ``*_examples``: split sizes
    (the generator's seed is ``data.seed``)."""

    name: str = "recall/mqar"
    train_examples: int = 20_000
    valid_examples: int = 1_000
    test_examples: int = 1_000
    vocab_size: int | None = None
    seq_len: int | None = None
    num_kv_pairs: int | None = None
    power_a: float | None = None
    num_passes: int | None = None
    filler: str | None = None
    noise_vocab_size: int | None = None
    frac_noise: float | None = None
    train_on: str | None = None
    num_tokens_to_copy: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        spec = get_spec(self.name)
        if self.data.source != "builtin":
            raise ValueError(f"task.data.source={self.data.source!r} is not valid for {self.name}, whose data are "
                             "generated; valid choices: ['builtin']")
        foreign = [k for k in ALL_KNOBS if k not in spec.knobs and getattr(self, k) is not None]
        if foreign:
            raise ValueError(f"task.{foreign[0]} is not a knob of {self.name}; its knobs: {list(spec.knobs)}")
        for split in SPLITS:
            if getattr(self, f"{split}_examples") < 1:
                raise ValueError(f"task.{split}_examples={getattr(self, f'{split}_examples')} must be positive")
        self.params()  # the generator's own checks, now

    def params(self) -> Any:
        """The generator's knobs of this task (its defaults where null)."""
        spec = get_spec(self.name)
        return spec.params(**{k: getattr(self, k) for k in spec.knobs if getattr(self, k) is not None})

    def sizes(self) -> dict[str, int]:
        return {split: getattr(self, f"{split}_examples") for split in SPLITS}


class RecallTask(Task):
    config_class = RecallTaskConfig
    primary_metric = "accuracy"
    primary_mode = "max"
    causal = True

    cfg: RecallTaskConfig

    def __init__(self, cfg: RecallTaskConfig):
        super().__init__(cfg)
        self.spec, self.params = get_spec(cfg.name), cfg.params()
        self.tensors: dict[str, dict[str, torch.Tensor]] = {}
        self.folder = None

    @property
    def pad(self) -> int:
        """The model's padding row: one past the task's vocabulary, never in the data."""
        return self.params.vocab_size

    # ------------------------------------------------------------------------------------------ data
    def prepare(self) -> None:
        if not self.tensors:
            data = self.cfg.data
            self.tensors, self.folder = load_splits(self.spec, self.params, self.cfg.sizes(), data.seed,
                                                    data.cache_dir)

    def num_examples(self, split: str) -> int:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid choices: {list(SPLITS)}")
        if not self.tensors:
            raise RuntimeError(f"{self.cfg.name} is not prepared: call prepare() first")
        return len(self.tensors[split]["inputs"])

    def collate(self, split: str, indices: list[int]) -> Batch:
        """Tokens and targets ``[B, input_len]``; targets ``IGNORE_INDEX`` except at the answers."""
        data = self.tensors[split]
        tokens, targets = data["inputs"][indices].long(), data["targets"][indices].long()
        n_targets = int((targets != IGNORE_INDEX).sum())
        return Batch({"tokens": tokens}, targets, n_targets=n_targets, n_tokens=tokens.numel())

    def collate_train(self, indices: list[int], seed: int, position: int) -> Batch:
        batch = self.collate("train", indices)
        if not getattr(self.params, "trains_on_every_token", False):
            return batch
        tokens = batch.inputs["tokens"]
        # every next token: the inputs shifted by one, and at the last position its answer (the probe's value)
        targets = torch.cat([tokens[:, 1:], batch.targets[:, -1:]], dim=1)
        return Batch(batch.inputs, targets, n_targets=int((targets != IGNORE_INDEX).sum()), n_tokens=batch.n_tokens)

    # ----------------------------------------------------------------------------------------- model
    def build_model(self, attention: Mapping[str, Any], model: Mapping[str, Any]) -> nn.Module:
        backbone = self.build_backbone(attention, model, max_len=self.params.input_len)
        return LanguageModel(backbone, self.params.vocab_size + 1, self.pad, model.get("scale_embeddings", True))

    # --------------------------------------------------------------------------------- loss, metrics
    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        answers = batch.targets != IGNORE_INDEX  # the softmax only where there is a target
        return F.cross_entropy(outputs[answers].float(), batch.targets[answers], reduction="sum")

    def metrics(self) -> MetricCollection:
        accuracy = MulticlassAccuracy(self.params.vocab_size + 1, average="micro", ignore_index=IGNORE_INDEX)
        return MetricCollection({"accuracy": accuracy})

    def metric_inputs(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return outputs.argmax(dim=-1), batch.targets

    @torch.no_grad()
    def describe_model(self, model: nn.Module) -> dict[str, Any]:
        """The recurrent state a decoder of this model holds per sequence after reading one whole input (the
        state-size axis of Zoology's and Based's plots): measured, not computed by formula, by stepping the
        model through the first test example and summing the bytes of every tensor the state holds."""
        if not hasattr(model, "init_state"):
            return {}
        tokens = self.tensors["test"]["inputs"][:1].long().to(next(model.parameters()).device)
        training = model.training
        model.eval()
        try:
            _, state = model.step(tokens, model.init_state(1))
        finally:
            model.train(training)
        dtype = next(model.parameters()).dtype
        return {"decoding_state": {"bytes": state.nbytes(), "tokens": tokens.shape[1],
                                   "dtype": str(dtype).removeprefix("torch.")}}

    def describe(self) -> dict[str, Any]:
        """The task's facts: its source, knobs (vocabulary, pairs, length), the model's input length and
        vocabulary, and per split the examples and answers."""
        facts: dict[str, Any] = {
            "task": self.cfg.name, "source": self.spec.source, "params": asdict(self.params),
            "input_len": self.params.input_len, "model_vocab_size": self.params.vocab_size + 1,
            "cache_folder": str(self.folder), "splits": {},
        }
        for split in SPLITS:
            targets = self.tensors[split]["targets"]
            answers = int((targets != IGNORE_INDEX).sum())
            facts["splits"][split] = {"examples": len(targets), "answers": answers,
                                      "answers_per_example": answers / max(1, len(targets))}
        return facts
