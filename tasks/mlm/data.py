"""Masked-LM data: the text of each split, a byte-level BPE tokenizer, and sequences packed to a length.

Sources (the same as the causal LM's): the built-in generated corpus, or a WikiText folder, raw
(``wiki.{train,valid,test}.raw``, preferred when present: what RoBERTa's BPE expects) or tokenised
(``wiki.*.tokens``). Each non-empty line is one text, encoded and followed by ``</s>``. Packing follows
fairseq's ``--sample-break-mode complete``: a block takes whole lines while they fit in ``seq_len - 1``
tokens (a line longer than that is cut into pieces), then ``<s>`` is put in front; blocks are contiguous
ranges of the split's token stream.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from tasks.data.cache import load_cached, save_cached
from tasks.data.wikitext import SPLIT_FILES, cache_key, read_words, split_paths
from tasks.tokenizers import BpeTokenizer, TokenizerConfig, tokenizer_from_config

RAW_FILES = {split: name.replace(".tokens", ".raw") for split, name in SPLIT_FILES.items()}
ENCODE_CHUNK = 10_000  # lines encoded per call (bounded memory on WikiText-103)


@dataclass
class PackedSplit:
    """A split's token stream and its blocks (``starts``, ``lengths`` into the stream, without ``<s>``)."""

    stream: torch.Tensor  # int32 [T]
    starts: torch.Tensor  # int64 [S]
    lengths: torch.Tensor  # int64 [S]

    def __len__(self) -> int:
        return len(self.starts)


def text_files(folder: str | Path) -> dict[str, Path]:
    """The raw files of a WikiText folder when all three exist, else the tokenised ones (which must)."""
    folder = Path(folder)
    raw = {split: folder / name for split, name in RAW_FILES.items()}
    return raw if all(p.is_file() for p in raw.values()) else split_paths(folder)


def read_lines(path: Path) -> Iterator[str]:
    """The non-empty lines of ``path``, whitespace normalised; bad text fails naming file and line."""
    for words in read_words(path):
        if len(words) > 1:
            yield " ".join(words[:-1])


def load_tokenizer(cfg: TokenizerConfig, train_file: Path, cache_dir: str | Path) -> BpeTokenizer:
    """From ``cfg.vocab`` + ``cfg.merges``, or trained on the lines of ``train_file`` (cached)."""
    return tokenizer_from_config(cfg, lambda: read_lines(train_file), cache_key([train_file], kind="bpe"), cache_dir)


def tokenizer_digest(tokenizer: BpeTokenizer) -> str:
    return hashlib.sha256(tokenizer.tokenizer.to_str().encode()).hexdigest()[:20]


def pack_file(path: Path, tokenizer: BpeTokenizer, seq_len: int, cache_dir: str | Path) -> PackedSplit:
    """The packed blocks of one text file (cached by file, tokenizer and ``seq_len``)."""
    if seq_len < 2:
        raise ValueError(f"task.seq_len={seq_len} must be at least 2 (<s> and one token)")
    key = cache_key([path], kind="mlm-packed", tokenizer=tokenizer_digest(tokenizer), seq_len=seq_len)
    cache_file = Path(cache_dir) / f"mlm-{key}.pt"
    cached = load_cached(cache_file)
    if cached is not None:
        return PackedSplit(**cached)
    pieces, line_lengths = [], []
    lines = read_lines(path)
    while chunk := [line for _, line in zip(range(ENCODE_CHUNK), lines)]:
        for ids in tokenizer.encode(chunk):
            ids.append(tokenizer.eos_id)
            pieces.append(torch.tensor(ids, dtype=torch.int32))
            line_lengths.append(len(ids))
    if not pieces:
        raise ValueError(f"{path} holds no text")
    starts, lengths = pack_complete(line_lengths, seq_len - 1)
    packed = PackedSplit(torch.cat(pieces), torch.tensor(starts), torch.tensor(lengths))
    save_cached(cache_file, asdict(packed))
    return packed


def pack_complete(line_lengths: list[int], capacity: int) -> tuple[list[int], list[int]]:
    """Blocks of consecutive whole lines holding at most ``capacity`` tokens; longer lines cut into pieces."""
    starts, lengths = [], []
    start = filled = offset = 0
    for n in line_lengths:
        if filled and filled + n > capacity:
            starts.append(start)
            lengths.append(filled)
            start, filled = offset, 0
        while n > capacity:  # only when the block is empty
            starts.append(offset)
            lengths.append(capacity)
            offset, n, start = offset + capacity, n - capacity, offset + capacity
        filled += n
        offset += n
    if filled:
        starts.append(start)
        lengths.append(filled)
    return starts, lengths


def describe_tokenizer(tokenizer: BpeTokenizer, cfg: TokenizerConfig) -> dict:
    return {"vocab_size": tokenizer.vocab_size, "digest": tokenizer_digest(tokenizer), "config": asdict(cfg)}

