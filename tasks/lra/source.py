"""Where a task's files come from (built-in generator or ``data.path``) and the tokenised cache.

Built-in data is generated once per set of generator arguments into
``<cache_dir>/lra-builtin-<task>-<hash>`` (written to a staging folder, then renamed, so a folder that
exists is complete). Tokenised tensors go to ``<cache_dir>/lra-<task>-<hash>/tensors.pt`` beside the
``splits.json`` that records the split (``tasks.lra.splits``); the hash covers the contents of every file the
reader parses (``LraSpec.files``; never the folder's path or the files' times, so a file replaced in place is a
new key and a moved copy reuses its cache) and every option that changes the tensors. Every split must hold at
least one example: an empty one fails naming where it came from.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tasks.data.cache import DigestMemo, files_digest, load_cached, save_cached
from tasks.data.textfile import DataFormatError
from tasks.lra.data.examples import BYTE_OFFSET, Examples
from tasks.lra.generators.pathfinder import Geometry
from tasks.lra.specs import LraSpec
from tasks.lra.splits import SPLITS, load_or_make_splits
from zoo_io.atomic import write_json

FORMAT_VERSION = 2  # bump when a generator, reader or the tensor layout changes what lands in the cache
COMPLETE = "generated.json"
DIGEST_MEMO = "lra-file-digests.json"  # beside the caches: Pathfinder's 200K images are hashed once, not per run


def _digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def generator_arguments(spec: LraSpec, cfg: Any) -> dict[str, Any]:
    """The generator's keyword arguments: ``task.builtin`` checked against its signature, plus the image side
    and difficulty of the Pathfinder tasks."""
    params = inspect.signature(spec.generate).parameters
    valid = {name for name, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD} - {"out", "seed"}
    if spec.name in ("pathfinder", "pathx"):
        valid |= {f.name for f in fields(Geometry)} - {"side"}
    arguments = dict(cfg.builtin)
    unknown = sorted(set(arguments) - valid)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} under task.builtin for {cfg.name}; valid keys: {sorted(valid)}")
    if spec.name in ("pathfinder", "pathx"):
        arguments |= {"side": cfg.side, "difficulty": cfg.difficulty}
    return arguments


def builtin_root(spec: LraSpec, cfg: Any) -> Path:
    """Generate the built-in files once (atomically) and return their folder."""
    arguments = generator_arguments(spec, cfg)
    same_files = {k: v for k, v in arguments.items() if k != "workers"}  # workers change speed, not the files
    key = {"version": FORMAT_VERSION, "task": spec.name, "seed": cfg.data.seed, "arguments": same_files}
    cache = Path(cfg.data.cache_dir).expanduser()
    root = cache / f"lra-builtin-{spec.name}-{_digest(key)}"
    if (root / COMPLETE).is_file():
        return root
    staging = cache / f".{root.name}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    spec.generate(staging, seed=cfg.data.seed, **arguments)
    write_json(staging / COMPLETE, key)
    try:
        os.replace(staging, root)
    except OSError:  # another process finished first (or a stale partial folder is in the way)
        if not (root / COMPLETE).is_file():
            shutil.rmtree(root, ignore_errors=True)
            os.replace(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def data_root(spec: LraSpec, cfg: Any) -> Path:
    if cfg.data.source == "files":
        root = Path(cfg.data.path).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"task.data.path={str(root)!r} is not a folder; expected a copy of the LRA data")
        return root.resolve()
    return builtin_root(spec, cfg)


def downsample(examples: Examples, side: int, factor: int) -> Examples:
    """Average-pool ``side x side`` grey images by ``factor`` (``task.pool``), rounding to grey levels."""
    if factor == 1:
        return examples
    if side % factor:
        raise ValueError(f"task.pool={factor} must divide the image side {side}")
    small = side // factor
    pooled = []
    for tokens in examples.inputs[0]:
        grey = (tokens.astype(np.float32) - BYTE_OFFSET).reshape(small, factor, small, factor).mean(axis=(1, 3))
        pooled.append(np.rint(grey).astype(np.int16).reshape(-1) + BYTE_OFFSET)
    return Examples((pooled,), examples.labels, examples.ids)


def pack(examples: Examples) -> dict[str, torch.Tensor]:
    """Ragged sequences as flat int16 tokens + int64 offsets per input, and the labels."""
    out = {"labels": torch.from_numpy(examples.labels.astype(np.int64))}
    for k, sequences in enumerate(examples.inputs):
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        out[f"offsets{k}"] = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]))
        flat = np.concatenate(sequences) if sequences else np.zeros(0, dtype=np.int16)
        out[f"tokens{k}"] = torch.from_numpy(flat.astype(np.int16))
    return out


def check_not_empty(splits: dict[str, Examples], natural: dict[str, Examples], root: Path, cfg: Any) -> None:
    """Every split holds an example; else say which split, where it came from and what would fill it."""
    for split in SPLITS:
        if len(splits[split]):
            continue
        if split in natural:  # a split file of its own: the readers reject an empty file, so this is defensive
            raise DataFormatError(f"{root}: the {split} split has no examples; expected at least one")
        source = "all" if "all" in natural else "train"
        fraction = "test_fraction" if split == "test" else "valid_fraction"
        value = getattr(cfg, fraction)
        raise DataFormatError(
            f"{root}: the {split} split is empty: task.{fraction}={value} of the {len(natural[source])} examples "
            f"of the {source!r} data rounds to none; expected a task.{fraction} that leaves at least one example "
            f"(or more data)"
        )


def load_tensors(spec: LraSpec, cfg: Any) -> tuple[dict[str, dict[str, torch.Tensor]], Path, Path]:
    """``{split: packed tensors}``, the data folder and the cache folder; reads and tokenises on a miss."""
    root = data_root(spec, cfg)
    cache = Path(cfg.data.cache_dir).expanduser()
    image_side = cfg.side if spec.name in ("pathfinder", "pathx") else 32
    key = {
        "version": FORMAT_VERSION, "task": spec.name,
        "files": files_digest(spec.files(root, cfg), root, DigestMemo(cache / DIGEST_MEMO)),
        "seq_len": cfg.seq_len, "valid_fraction": cfg.valid_fraction, "test_fraction": cfg.test_fraction,
        "split_seed": cfg.data.seed, "side": image_side if spec.image else None,
        "pool": cfg.pool if spec.image else None,
        "difficulty": cfg.difficulty if spec.name in ("pathfinder", "pathx") else None,
    }
    folder = Path(cfg.data.cache_dir).expanduser() / f"lra-{spec.name}-{_digest(key)}"
    tensors = load_cached(folder / "tensors.pt")
    if tensors is not None:
        return tensors, root, folder
    natural = spec.read(root, cfg)
    if spec.image:
        natural = {split: downsample(examples, image_side, cfg.pool) for split, examples in natural.items()}
    splits = load_or_make_splits(natural, folder / "splits.json", cfg.valid_fraction, cfg.test_fraction, cfg.data.seed)
    check_not_empty(splits, natural, root, cfg)
    tensors = {split: pack(splits[split]) for split in SPLITS}
    save_cached(folder / "tensors.pt", tensors)
    write_json(folder / "key.json", {**key, "root": str(root)})  # the root only says where it was last read
    return tensors, root, folder
