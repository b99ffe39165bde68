"""Byte-level BPE (GPT-2 / RoBERTa style) with Hugging Face ``tokenizers``: train, load, save, encode.

Special tokens come first in RoBERTa's order (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3) plus
``<mask>``; a sentence encodes as ``<s> A </s>`` and a pair as ``<s> A </s></s> B </s>`` (RoBERTa's
separator). At paper scale the vocabulary has 50,265 entries like RoBERTa's (GPT-2's 50,257 + specials).
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

BOS, PAD, EOS, UNK, MASK = "<s>", "<pad>", "</s>", "<unk>", "<mask>"
SPECIAL_TOKENS = (BOS, PAD, EOS, UNK, MASK)
TOKENIZER_FILE, VOCAB_FILE, MERGES_FILE = "tokenizer.json", "vocab.json", "merges.txt"


@dataclass
class TokenizerConfig:
    """Train byte-level BPE on the training texts (``vocab_size`` entries, merges seen ``min_frequency``
    times), or load GPT-2 style ``vocab`` + ``merges`` files when both are given."""

    vocab_size: int = 8192
    min_frequency: int = 2
    vocab: str | None = None
    merges: str | None = None


class BpeTokenizer:
    """A byte-level BPE tokenizer with RoBERTa's special tokens and sentence/pair templates."""

    def __init__(self, tokenizer: Tokenizer):
        missing = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
        if missing:
            raise ValueError(f"tokenizer lacks the special token(s) {missing}; it needs all of {list(SPECIAL_TOKENS)}")
        tokenizer.add_special_tokens(list(SPECIAL_TOKENS))  # never split or merged (ids unchanged)
        self.tokenizer = tokenizer
        self.bos_id, self.pad_id, self.eos_id, self.unk_id, self.mask_id = (
            tokenizer.token_to_id(t) for t in SPECIAL_TOKENS
        )
        tokenizer.post_processor = processors.RobertaProcessing((EOS, self.eos_id), (BOS, self.bos_id))

    # ---------------------------------------------------------------------------------- construction
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> BpeTokenizer:
        """Learn merges on ``texts`` (the training split) until the vocabulary holds ``vocab_size`` entries."""
        if vocab_size < 256 + len(SPECIAL_TOKENS):
            raise ValueError(f"vocab_size={vocab_size} is too small: byte-level BPE needs at least "
                             f"{256 + len(SPECIAL_TOKENS)} (256 bytes + {len(SPECIAL_TOKENS)} special tokens)")
        tokenizer = _empty(models.BPE(unk_token=UNK))
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer)
        return cls(tokenizer)

    @classmethod
    def from_vocab_merges(cls, vocab: str | Path, merges: str | Path) -> BpeTokenizer:
        """GPT-2 / RoBERTa style ``vocab.json`` + ``merges.txt`` files."""
        for path in (vocab, merges):
            if not Path(path).is_file():
                raise FileNotFoundError(f"tokenizer file {path} does not exist (need vocab.json and merges.txt)")
        return cls(_empty(models.BPE.from_file(str(vocab), str(merges), unk_token=UNK)))

    @classmethod
    def load(cls, directory: str | Path) -> BpeTokenizer:
        """The tokenizer saved by :meth:`save` in ``directory``."""
        path = Path(directory) / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no saved tokenizer: {path} does not exist")
        return cls(Tokenizer.from_file(str(path)))

    def save(self, directory: str | Path) -> None:
        """Write ``tokenizer.json`` (what :meth:`load` reads) and ``vocab.json`` + ``merges.txt``, atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _write_atomic(directory / TOKENIZER_FILE, self.tokenizer.to_str())
        model = json.loads(self.tokenizer.to_str())["model"]
        _write_atomic(directory / VOCAB_FILE, json.dumps(model["vocab"], ensure_ascii=False))
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
        _write_atomic(directory / MERGES_FILE, "#version: 0.2\n" + "".join(m + "\n" for m in merges))

    # -------------------------------------------------------------------------------------- encoding
    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, no special tokens (for packing a pretraining stream)."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def encode_examples(
        self, text_a: Sequence[str], text_b: Sequence[str] | None, max_len: int
    ) -> list[list[int]]:
        """``<s> A </s>`` or ``<s> A </s></s> B </s>`` per example, the longer text cut first to ``max_len``."""
        self.tokenizer.enable_truncation(max_len, strategy="longest_first")
        try:
            inputs = list(text_a) if text_b is None else list(zip(text_a, text_b))
            return [e.ids for e in self.tokenizer.encode_batch(inputs)]
        finally:
            self.tokenizer.no_truncation()

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))


def tokenizer_from_config(
    cfg: TokenizerConfig, texts: Callable[[], Iterable[str]], key: str, cache_dir: str | Path
) -> BpeTokenizer:
    """Load ``cfg.vocab`` + ``cfg.merges``, or train on ``texts()`` once: the result is cached in
    ``cache_dir/bpe-<key>`` (``key`` must identify the texts; the settings are added to it here)."""
    if (cfg.vocab is None) != (cfg.merges is None):
        raise ValueError("task.tokenizer.vocab and task.tokenizer.merges go together: give both or neither")
    if cfg.vocab is not None:
        return BpeTokenizer.from_vocab_merges(Path(cfg.vocab).expanduser(), Path(cfg.merges).expanduser())
    folder = Path(cache_dir) / f"bpe-{key}-{cfg.vocab_size}-{cfg.min_frequency}"
    if (folder / TOKENIZER_FILE).is_file():
        return BpeTokenizer.load(folder)
    tokenizer = BpeTokenizer.train(texts(), cfg.vocab_size, cfg.min_frequency)
    tokenizer.save(folder)
    return tokenizer


def _empty(model: models.Model) -> Tokenizer:
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
