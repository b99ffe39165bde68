"""The splits of a recall task: generated from seeded streams, evaluation splits kept apart from training, cached.

Each split comes from its own stream, ``numpy.random.default_rng([seed, split number])``, so an evaluation split
does not change when the training split's size does (unless it drew a sequence that training now holds).
Validation and test hold no example whose inputs equal a training example's (or each other's, or another of
their own): draws that repeat one are dropped and more are drawn; a task whose space of sequences is too small
to fill them fails, naming the keys. The tensors are cached in ``<cache_dir>/recall-<task>-<key>/tensors.pt``;
the key covers everything that decides their contents (the format version, the task, its knobs, the sizes and
the seed), so a changed knob is a new folder.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tasks.data.cache import load_cached, save_cached
from tasks.recall.specs import RecallSpec
from zoo_io.atomic import write_json

FORMAT_VERSION = 1  # bump when a generator or the tensor layout changes what lands in the cache
SPLITS = ("train", "valid", "test")
MAX_ROUNDS = 50  # draws of an evaluation split before its space is declared too small


def cache_key(spec: RecallSpec, params: Any, sizes: dict[str, int], seed: int) -> dict[str, Any]:
    return {"version": FORMAT_VERSION, "task": spec.name, "params": asdict(params), "sizes": sizes, "seed": seed}


def cache_folder(cache_dir: str | Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir).expanduser() / f"recall-{key['task']}-{digest}"


def load_splits(spec: RecallSpec, params: Any, sizes: dict[str, int], seed: int,
                cache_dir: str | Path) -> tuple[dict[str, dict[str, torch.Tensor]], Path]:
    """``{split: {"inputs", "targets"}}`` and the cache folder; generated and cached on a miss."""
    key = cache_key(spec, params, sizes, seed)
    folder = cache_folder(cache_dir, key)
    tensors = load_cached(folder / "tensors.pt")
    if tensors is None:
        tensors = generate_splits(spec, params, sizes, seed)
        save_cached(folder / "tensors.pt", tensors)
        write_json(folder / "key.json", key)
    return tensors, folder


def generate_splits(spec: RecallSpec, params: Any, sizes: dict[str, int], seed: int) -> dict[str, dict[str, Any]]:
    dtype = torch.int16 if params.vocab_size <= torch.iinfo(torch.int16).max else torch.int32
    seen: set[bytes] = set()
    out = {}
    for number, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, number])
        if split == "train":  # repeats within training are part of the distribution, as in Zoology and MAD
            inputs, targets = spec.generate(params, sizes[split], rng)
            seen.update(row.tobytes() for row in inputs)
        else:
            inputs, targets = draw_unseen(spec, params, sizes[split], rng, seen, split)
        out[split] = {"inputs": torch.from_numpy(inputs).to(dtype), "targets": torch.from_numpy(targets).to(dtype)}
    return out


def draw_unseen(spec: RecallSpec, params: Any, n: int, rng: np.random.Generator, seen: set[bytes],
                split: str) -> tuple[np.ndarray, np.ndarray]:
    """``n`` examples whose inputs are not in ``seen`` nor repeated (``seen`` gains them)."""
    inputs, targets = np.empty((0, params.input_len), np.int64), np.empty((0, params.input_len), np.int64)
    for _ in range(MAX_ROUNDS):
        more_inputs, more_targets = spec.generate(params, n - len(inputs), rng)
        fresh = []
        for i, row in enumerate(more_inputs):
            if (row_key := row.tobytes()) not in seen:
                seen.add(row_key)
                fresh.append(i)
        inputs = np.concatenate([inputs, more_inputs[fresh]])
        targets = np.concatenate([targets, more_targets[fresh]])
        if len(inputs) == n:
            return inputs, targets
    knobs = ", ".join(f"task.{k}={v}" for k, v in asdict(params).items())
    raise ValueError(f"recall/{spec.name}: only {len(inputs)} of task.{split}_examples={n} {split} examples differ "
                     f"from the training examples and each other after {MAX_ROUNDS} draws; the task's space is too "
                     f"small for these sizes ({knobs}): lower task.train_examples or task.{split}_examples, or "
                     "raise task.vocab_size or task.seq_len")
