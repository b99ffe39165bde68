"""Causal language modelling (the paper's Table 4): word-level WikiText or the built-in generated corpus.

Data: the token stream of a split (every line's words, then ``<eos>``) is cut into consecutive blocks of
``seq_len`` tokens, each predicting the block shifted by one (fairseq's ``--tokens-per-sample`` with
``--sample-break-mode none``); every token but the first is a target exactly once. Training uses the full
blocks; evaluation uses every block, the last one possibly shorter.

Model: embeddings scaled by sqrt(D), the backbone, a linear head tied to the embeddings (no bias).
Metric: perplexity (torchmetrics), exp of the mean negative log-likelihood per target token.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.text import Perplexity

from tasks.base import IGNORE_INDEX, Batch, Task, TaskConfig
from tasks.data.synthetic_lm import CorpusConfig, generate_corpus
from tasks.data.vocab import DEFAULT_SPECIALS
from tasks.data.wikitext import SPLIT_FILES, TokenCorpus, load_wikitext


@dataclass
class LMTaskConfig(TaskConfig):
    """``seq_len``: tokens per sample; ``corpus``: the built-in generator (``data.source=builtin``);
    ``vocab_pad_to``: pad the vocabulary to a multiple of this (fairseq's padding factor)."""

    name: str = "lm"
    seq_len: int = 512
    vocab_pad_to: int = 8
    corpus: CorpusConfig = field(default_factory=CorpusConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seq_len < 1:
            raise ValueError(f"task.seq_len must be positive, got {self.seq_len}")


class LanguageModel(nn.Module):
    """Token embeddings (scaled by sqrt(D)) -> backbone -> output projection tied to the embeddings."""

    def __init__(self, backbone: nn.Module, vocab_size: int, pad_index: int, scale_embeddings: bool = True):
        super().__init__()
        d_model = backbone.config.d_model
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=pad_index)
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)
        with torch.no_grad():
            self.embed.weight[pad_index].zero_()
        self.embed_scale = math.sqrt(d_model) if scale_embeddings else 1.0
        self.backbone = backbone
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``tokens[B, N]`` -> logits ``[B, N, V]``."""
        return self.head(self.backbone(self.embed(tokens) * self.embed_scale, padding_mask))

    def init_state(self, batch_size: int, *, device=None, dtype=None):
        """The backbone's decoding state (attention_zoo.decoding)."""
        return self.backbone.init_state(batch_size, device=device, dtype=dtype)

    def step(self, tokens: torch.Tensor, state, padding_mask: torch.Tensor | None = None):
        """Logits ``[B, T, V]`` of the next ``tokens[B, T]`` from the state (equal to ``forward`` over every
        token so far, at those positions), and the updated state."""
        hidden, state = self.backbone.step(self.embed(tokens) * self.embed_scale, state, padding_mask)
        return self.head(hidden), state


def builtin_corpus_folder(cache_dir: str | Path, corpus: CorpusConfig, seed: int) -> Path:
    """The generated corpus for these parameters, written once into the cache (safe under concurrency)."""
    key = hashlib.sha256(json.dumps({"corpus": asdict(corpus), "seed": seed}, sort_keys=True).encode())
    folder = Path(cache_dir) / f"lm-builtin-{key.hexdigest()[:16]}"
    if (folder / "corpus_stats.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        generate_corpus(corpus, seed, staging)
        os.replace(staging, folder)  # atomic; fails if another process got there first
    except OSError:
        if not (folder / "corpus_stats.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


class LanguageModelTask(Task):
    config_class = LMTaskConfig
    primary_metric = "perplexity"
    primary_mode = "min"
    causal = True

    cfg: LMTaskConfig
    corpus: TokenCorpus

    def __init__(self, cfg: LMTaskConfig):
        super().__init__(cfg)
        self.folder: Path | None = None

    # ------------------------------------------------------------------------------------------ data
    def prepare(self) -> None:
        data = self.cfg.data
        if data.source == "builtin":
            self.folder = builtin_corpus_folder(data.cache_dir, self.cfg.corpus, data.seed)
        else:
            self.folder = Path(data.path).expanduser()
        self.corpus = load_wikitext(self.folder, data.cache_dir, DEFAULT_SPECIALS, self.cfg.vocab_pad_to)
        for split in SPLIT_FILES:
            if len(self.corpus.splits[split]) < 2:
                raise ValueError(f"split {split!r} of {self.folder} has fewer than two tokens: nothing to predict")

    @property
    def vocab(self):
        return self.corpus.vocab

    def num_examples(self, split: str) -> int:
        predicted = len(self.corpus.splits[split]) - 1
        L = self.cfg.seq_len
        return predicted // L if split == "train" else math.ceil(predicted / L)

    def collate(self, split: str, indices: list[int]) -> Batch:
        stream, L = self.corpus.splits[split], self.cfg.seq_len
        blocks = [stream[i * L : i * L + L + 1].long() for i in indices]
        longest = max(len(b) for b in blocks) - 1
        tokens = torch.full((len(blocks), longest), self.vocab.pad, dtype=torch.long)
        targets = torch.full((len(blocks), longest), IGNORE_INDEX, dtype=torch.long)
        for row, block in enumerate(blocks):
            tokens[row, : len(block) - 1] = block[:-1]
            targets[row, : len(block) - 1] = block[1:]
        n_real = sum(len(b) - 1 for b in blocks)
        inputs = {"tokens": tokens}
        if n_real < tokens.numel():
            inputs["padding_mask"] = targets == IGNORE_INDEX
        return Batch(inputs, targets, n_targets=n_real, n_tokens=n_real)

    # ----------------------------------------------------------------------------------------- model
    def build_model(self, attention: Mapping[str, Any], model: Mapping[str, Any]) -> nn.Module:
        backbone = self.build_backbone(attention, model, max_len=self.cfg.seq_len)
        return LanguageModel(backbone, len(self.vocab), self.vocab.pad, model.get("scale_embeddings", True))

    # --------------------------------------------------------------------------------- loss, metrics
    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        logits = outputs.float().flatten(0, 1)
        return F.cross_entropy(logits, batch.targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")

    def metrics(self) -> MetricCollection:
        return MetricCollection({"perplexity": Perplexity(ignore_index=IGNORE_INDEX)})

    def metric_inputs(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return outputs.float(), batch.targets

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "data_folder": str(self.folder),
            "vocab_size": len(self.vocab),
            "tokens": {split: len(stream) for split, stream in self.corpus.splits.items()},
        }
        stats = self.folder / "corpus_stats.json" if self.folder else None
        if stats is not None and stats.is_file():  # the built-in corpus knows its best achievable perplexity
            facts["corpus"] = json.loads(stats.read_text())["splits"]
        return facts
