"""GLUE fine-tuning (``task=glue/<name>``): a masked-LM checkpoint of the same backend, a classification or
regression head, the task's official metrics on its dev set(s).

``init_from`` picks the pretrained weights and their tokenizer: a masked-LM run folder, a checkpoint inside
one (``<run>/checkpoints/*.pt``), ``auto`` (the newest completed masked-LM run under ``pretrain_root`` with the
same backend, knobs and model sizes), or null (no pretraining: random weights and a BPE trained on the task's
training texts). The backend, its knobs and the model sizes must equal the pretraining run's (dropout rates
may differ); anything else fails naming the differences.

Evaluation: GLUE's test labels are not public, so a model is selected and reported on dev, as the paper and
RoBERTa do: ``splits = (dev, dev)``; MNLI selects on dev_matched and reports dev_mismatched of the same
checkpoint. Built-in data (``data.source=builtin``) is generated in the official layout
(:mod:`tasks.glue.generate`) from the words of the pretraining run's built-in corpus when it had one.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection

from tasks.base import Batch, Task, TaskConfig
from tasks.data.synthetic_lm import CorpusConfig
from tasks.glue.formats import GLUE_FORMATS, get_format
from tasks.glue.generate import generate
from tasks.glue.metrics import glue_metrics, primary_metric
from tasks.glue.pretrained import Pretrained, find_auto, find_pretrained, load_encoder_weights
from tasks.glue.reader import GlueSplit, read_split
from tasks.glue.words import Words
from tasks.mlm.data import describe_tokenizer, tokenizer_digest
from tasks.mlm.model import SentenceClassifier
from tasks.mlm.task import TOKENIZER_DIR, build_encoder
from tasks.tokenizers import BpeTokenizer, TokenizerConfig, tokenizer_from_config

GENERATOR_VERSION = 1  # bump when the built-in generators change what they write


@dataclass
class GlueTaskConfig(TaskConfig):
    """``max_len``: tokens per example including ``<s>``/``</s>`` (longer pairs are cut, the longer text
    first); ``train_size``/``dev_size``: examples of the built-in data (``dev_size`` per dev split);
    ``pretrain_seed``: ``init_from=auto`` prefers a pretraining run of this seed (the run's own by default);
    ``tokenizer``: only without ``init_from``; ``corpus``/``corpus_seed``: the built-in corpus whose words
    the built-in data uses when the pretraining run does not say (it had real data, or there is none)."""

    name: str = "glue/sst2"
    max_len: int = 512
    init_from: str | None = "auto"
    pretrain_root: str = "results/runs"
    pretrain_seed: int | None = None
    train_size: int = 4000
    dev_size: int = 500
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    corpus_seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        family, _, sub = self.name.partition("/")
        if family != "glue" or sub not in GLUE_FORMATS:  # fails with the choices before a run folder exists
            raise ValueError(f"task.name={self.name!r} is not a GLUE task; valid choices: "
                             f"{[f'glue/{n}' for n in sorted(GLUE_FORMATS)]}")


class GlueTask(Task):
    config_class = GlueTaskConfig
    primary_mode = "max"
    causal = False

    cfg: GlueTaskConfig
    tokenizer: BpeTokenizer

    def __init__(self, cfg: GlueTaskConfig):
        super().__init__(cfg)
        glue_name = cfg.name.partition("/")[2]
        self.format = get_format(glue_name)
        self.glue_name = glue_name
        self.primary_metric = primary_metric(glue_name)
        evals = self.format.eval_splits
        self.splits = (evals[0], evals[-1])  # (select on, report) : (dev, dev) or MNLI's (matched, mismatched)
        if cfg.max_len < 4:
            raise ValueError(f"task.max_len={cfg.max_len} is too short for <s> A </s></s> B </s>")
        self.pretrained: Pretrained | None = None
        self.data: dict[str, GlueSplit] = {}
        self.encoded: dict[str, tuple[list[torch.Tensor], torch.Tensor]] = {}
        self.folder: Path | None = None

    # ------------------------------------------------------------------------------------------ data
    def prepare(self) -> None:
        """Read or generate the data and tokenise it. With ``init_from=auto`` the pretraining run (hence the
        tokenizer and the built-in words) depends on the model, so this waits for :meth:`build_model`."""
        if self.cfg.init_from == "auto":
            return
        if self.cfg.init_from is not None:
            self.pretrained = find_pretrained(self.cfg.init_from)
        self._prepare_data()

    def _prepare_data(self) -> None:
        self.folder = self._data_folder()
        self.data = {split: read_split(self.folder, self.glue_name, split) for split in self.format.splits}
        self.tokenizer = self._tokenizer()
        for split, examples in self.data.items():
            ids = self.tokenizer.encode_examples(examples.text_a, examples.text_b, self.max_len)
            dtype = torch.float32 if self.format.is_regression else torch.long
            self.encoded[split] = ([torch.tensor(x, dtype=torch.long) for x in ids],
                                   torch.tensor(examples.labels, dtype=dtype))

    @property
    def max_len(self) -> int:
        """Tokens per example: ``task.max_len``, or fewer if the pretrained encoder has fewer positions."""
        if self.pretrained is not None:
            return min(self.cfg.max_len, self.pretrained.max_len)
        return self.cfg.max_len

    def _data_folder(self) -> Path:
        cfg = self.cfg
        if cfg.data.source == "files":
            return Path(cfg.data.path).expanduser()
        corpus, corpus_seed = cfg.corpus, cfg.corpus_seed
        if self.pretrained is not None and self.pretrained.builtin_corpus is not None:
            corpus, corpus_seed = self.pretrained.builtin_corpus
        sizes = {s: cfg.train_size if s == "train" else cfg.dev_size for s in self.format.splits}
        key = json.dumps({"version": GENERATOR_VERSION, "task": self.glue_name, "sizes": sizes, "seed": cfg.data.seed,
                          "corpus": asdict(corpus), "corpus_seed": corpus_seed}, sort_keys=True)
        root = Path(cfg.data.cache_dir) / f"glue-builtin-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        if not all((root / self.format.directory / self.format.file_name(s)).is_file() for s in sizes):
            generate(self.glue_name, root, sizes, cfg.data.seed, Words.from_corpus(corpus, corpus_seed))
        return root

    def _tokenizer(self) -> BpeTokenizer:
        if self.pretrained is not None:
            return BpeTokenizer.load(self.pretrained.run_dir / TOKENIZER_DIR)
        train = self.data["train"]
        texts = train.text_a + (train.text_b or [])
        key = "glue-" + hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:16]
        return tokenizer_from_config(self.cfg.tokenizer, lambda: texts, key, self.cfg.data.cache_dir)

    def save_artifacts(self, run_dir: str | Path) -> None:
        self.tokenizer.save(Path(run_dir) / TOKENIZER_DIR)

    def num_examples(self, split: str) -> int:
        if not self.encoded:
            raise RuntimeError("the GLUE task is not prepared (with init_from=auto, build the model first)")
        return len(self.encoded[split][1])

    def collate(self, split: str, indices: list[int]) -> Batch:
        sequences, labels = self.encoded[split]
        rows = [sequences[i] for i in indices]
        lengths = [len(r) for r in rows]
        tokens = torch.full((len(rows), max(lengths)), self.tokenizer.pad_id, dtype=torch.long)
        for r, row in enumerate(rows):
            tokens[r, : len(row)] = row
        inputs = {"tokens": tokens}
        if min(lengths) < tokens.shape[1]:
            inputs["padding_mask"] = tokens == self.tokenizer.pad_id
        return Batch(inputs, labels[indices], n_targets=len(indices), n_tokens=sum(lengths))

    # ----------------------------------------------------------------------------------------- model
    def build_model(self, attention: Mapping[str, Any], model: Mapping[str, Any]) -> nn.Module:
        if self.cfg.init_from == "auto" and self.pretrained is None:
            self.pretrained = find_auto(self.cfg.pretrain_root, attention, model, self.cfg.pretrain_seed)
            self._prepare_data()
        max_len = self.cfg.max_len
        if self.pretrained is not None:
            self.pretrained.check_compatible(attention, model)
            max_len = self.pretrained.max_len  # the encoder gets exactly the pretrained positions
        encoder = build_encoder(self, attention, model, self.tokenizer.vocab_size, self.tokenizer.pad_id, max_len)
        classifier = SentenceClassifier(encoder, self.format.num_classes, model.get("dropout", 0.1))
        if self.pretrained is not None:
            load_encoder_weights(classifier.encoder, self.pretrained)
        return classifier

    # --------------------------------------------------------------------------------- loss, metrics
    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        if self.format.is_regression:
            return F.mse_loss(outputs.float().squeeze(-1), batch.targets, reduction="sum")
        return F.cross_entropy(outputs.float(), batch.targets, reduction="sum")

    def metrics(self) -> MetricCollection:
        return glue_metrics(self.glue_name)

    def metric_inputs(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.format.is_regression:
            return outputs.float().squeeze(-1), batch.targets
        return outputs.argmax(dim=-1), batch.targets

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "data_folder": str(self.folder),
            "examples": {split: len(d) for split, d in self.data.items()},
            "skipped_rows": {split: d.skipped for split, d in self.data.items() if d.skipped},
            "tokenizer": ({"vocab_size": self.tokenizer.vocab_size, "digest": tokenizer_digest(self.tokenizer),
                           "from": str(self.pretrained.run_dir / TOKENIZER_DIR)} if self.pretrained is not None
                          else describe_tokenizer(self.tokenizer, self.cfg.tokenizer)),
            "splits": {"select_on": self.splits[0], "report": self.splits[1]},
        }
        if self.pretrained is not None:
            facts["init_from"] = self.pretrained.describe()
        facts["majority_baseline"] = self.majority_baseline()
        return facts

    def majority_baseline(self) -> dict[str, float]:
        """The primary metric of a constant prediction on each evaluation split: the training split's
        commonest class (its mean score for STS-B, whose correlations are then 0). The floor a model must
        beat; a model that predicts one class scores exactly this."""
        train = self.encoded["train"][1]
        constant = train.mean() if self.format.is_regression else torch.bincount(train).argmax()
        floor = {}
        for split in self.format.eval_splits:
            labels = self.encoded[split][1]
            metrics = self.metrics()
            metrics.update(constant.expand_as(labels).to(labels.dtype), labels)
            with warnings.catch_warnings():  # "the variance of predictions is close to zero": by design here
                warnings.filterwarnings("ignore", message=".*variance of predictions", category=UserWarning)
                floor[split] = float(metrics.compute()[self.primary_metric])
        return floor
