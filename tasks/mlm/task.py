"""Masked language modelling (RoBERTa style), the pretraining behind the paper's bidirectional results.

Data: the causal LM's sources (built-in corpus or WikiText files), byte-level BPE (:mod:`tasks.mlm.data`),
blocks of whole lines up to ``seq_len`` tokens with ``<s>`` in front. Masking (:mod:`tasks.mlm.masking`) is
dynamic in training (a new draw for every example at every visit, seeded by the training seed and the example's
place in the training stream, so a resumed run and any number of processes see the same masks) and fixed per
example in evaluation (seeded by the data seed, the split and the block's index, so every run is scored on the
same masked tokens).
Model: :class:`tasks.mlm.model.MaskedLanguageModel`. Metric: perplexity of the masked tokens.
The tokenizer is saved in the run folder (``tokenizer/``): GLUE fine-tuning uses the same one.
"""
from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.text import Perplexity

from tasks.base import IGNORE_INDEX, Batch, Task, TaskConfig
from tasks.data.synthetic_lm import CorpusConfig
from tasks.lm import builtin_corpus_folder
from tasks.mlm.data import describe_tokenizer, load_tokenizer, pack_file, text_files
from tasks.mlm.masking import MaskingConfig, mask_tokens
from tasks.mlm.model import Encoder, MaskedLanguageModel
from tasks.tokenizers import SPECIAL_TOKENS, BpeTokenizer, TokenizerConfig

TOKENIZER_DIR = "tokenizer"  # inside a run folder


@dataclass
class MLMTaskConfig(TaskConfig):
    """``seq_len``: tokens per block including ``<s>``; masking probabilities (RoBERTa's by default);
    ``tokenizer``: trained on the training split or loaded; ``corpus``: the built-in generator."""

    name: str = "mlm"
    seq_len: int = 512
    mask_prob: float = 0.15
    mask_token_prob: float = 0.8
    random_token_prob: float = 0.1
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seq_len < 2:
            raise ValueError(f"task.seq_len={self.seq_len} must be at least 2")


def build_encoder(task: Task, attention: Mapping[str, Any], model: Mapping[str, Any], vocab_size: int, pad_id: int,
                  max_len: int) -> Encoder:
    """The RoBERTa-style encoder: the task's bidirectional backbone, positions added before the embedding norm."""
    positional = model.get("positional", "learned")
    backbone = task.build_backbone(attention, {**model, "positional": "none"}, max_len=max_len)
    return Encoder(backbone, vocab_size, pad_id, positional, backbone.config.max_len,
                   scale_embeddings=model.get("scale_embeddings", False))


def _seed(*parts: object) -> int:
    return zlib.crc32(repr(parts).encode())


class MaskedLanguageModelTask(Task):
    config_class = MLMTaskConfig
    primary_metric = "perplexity"
    primary_mode = "min"
    causal = False

    cfg: MLMTaskConfig
    tokenizer: BpeTokenizer

    def __init__(self, cfg: MLMTaskConfig):
        super().__init__(cfg)
        self.masking = MaskingConfig(cfg.mask_prob, cfg.mask_token_prob, cfg.random_token_prob)
        self.folder: Path | None = None
        self.data: dict = {}

    # ------------------------------------------------------------------------------------------ data
    def prepare(self) -> None:
        data = self.cfg.data
        if data.source == "builtin":
            self.folder = builtin_corpus_folder(data.cache_dir, self.cfg.corpus, data.seed)
        else:
            self.folder = Path(data.path).expanduser()
        files = text_files(self.folder)
        self.tokenizer = load_tokenizer(self.cfg.tokenizer, files["train"], data.cache_dir)
        self.data = {split: pack_file(path, self.tokenizer, self.cfg.seq_len, data.cache_dir)
                     for split, path in files.items()}

    def save_artifacts(self, run_dir: str | Path) -> None:
        self.tokenizer.save(Path(run_dir) / TOKENIZER_DIR)

    def num_examples(self, split: str) -> int:
        return len(self.data[split])

    def _blocks(self, split: str, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``<s>`` + each block, padded: (tokens[B, N], maskable[B, N])."""
        packed, tok = self.data[split], self.tokenizer
        lengths = [int(packed.lengths[i]) + 1 for i in indices]
        tokens = torch.full((len(indices), max(lengths)), tok.pad_id, dtype=torch.long)
        for row, i in enumerate(indices):
            start = int(packed.starts[i])
            tokens[row, 0] = tok.bos_id
            tokens[row, 1 : lengths[row]] = packed.stream[start : start + lengths[row] - 1]
        maskable = (tokens != tok.pad_id) & (tokens != tok.bos_id) & (tokens != tok.eos_id)
        return tokens, maskable

    def _batch(self, tokens: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> Batch:
        padding = tokens == self.tokenizer.pad_id
        predict = targets != IGNORE_INDEX
        batch_inputs = {"tokens": inputs, "predict_mask": predict}
        if padding.any():
            batch_inputs["padding_mask"] = padding
        return Batch(batch_inputs, targets[predict], n_targets=int(predict.sum()), n_tokens=int((~padding).sum()))

    def _mask(self, tokens: torch.Tensor, maskable: torch.Tensor, generator: torch.Generator):
        tok = self.tokenizer
        return mask_tokens(tokens, maskable, self.masking, tok.mask_id, len(SPECIAL_TOKENS), tok.vocab_size, generator)

    def collate(self, split: str, indices: list[int]) -> Batch:
        """Each block masked with its own fixed draw (seeded by the data seed, the split and the block),
        whatever the batching."""
        return self._masked_rows(split, indices, [_seed(self.cfg.data.seed, split, i) for i in indices])

    def collate_train(self, indices: list[int], seed: int, position: int) -> Batch:
        """A training batch, each example masked with a draw seeded by the training seed and its place in the
        training stream: new masks at every visit, the same for any number of processes and after a resume."""
        return self._masked_rows("train", indices, [_seed(seed, "train", position + r) for r in range(len(indices))])

    def _masked_rows(self, split: str, indices: list[int], seeds: list[int]) -> Batch:
        tokens, maskable = self._blocks(split, indices)
        rows = [self._mask(tokens[r : r + 1], maskable[r : r + 1], torch.Generator().manual_seed(seed))
                for r, seed in enumerate(seeds)]
        return self._batch(tokens, torch.cat([r[0] for r in rows]), torch.cat([r[1] for r in rows]))

    # ----------------------------------------------------------------------------------------- model
    def build_model(self, attention: Mapping[str, Any], model: Mapping[str, Any]) -> nn.Module:
        tok = self.tokenizer
        return MaskedLanguageModel(build_encoder(self, attention, model, tok.vocab_size, tok.pad_id, self.cfg.seq_len))

    # --------------------------------------------------------------------------------- loss, metrics
    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(outputs.float(), batch.targets, reduction="sum")

    def metrics(self) -> MetricCollection:
        return MetricCollection({"perplexity": Perplexity()})

    def metric_inputs(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return outputs.float()[None], batch.targets[None]

    def describe(self) -> dict[str, Any]:
        return {
            "data_folder": str(self.folder),
            "tokenizer": describe_tokenizer(self.tokenizer, self.cfg.tokenizer),
            "blocks": {split: len(p) for split, p in self.data.items()},
            "tokens": {split: len(p.stream) for split, p in self.data.items()},
        }
