"""Deterministic train/valid/test splits, and the file that records them beside the tokenised cache.

Sources with their own split files (ListOps, Retrieval) keep them. Where the release has no validation
split (Text, Image) a seeded share of the training examples becomes validation; Pathfinder has one pool,
split by a seeded permutation (LRA: 80/10/10). ``splits.json`` lists the example ids of every split; when
it exists it is followed, so a split once made stays the same whatever changes in the code.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tasks.lra.data.examples import Examples
from zoo_io.atomic import write_json

SPLITS = ("train", "valid", "test")


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"task.{name}={value} must be in [0, 1)")


def carve(examples: Examples, fraction: float, seed: int) -> tuple[Examples, Examples]:
    """(rest, carved): ``round(fraction * n)`` examples drawn by a seeded permutation; both keep file order."""
    _check_fraction("valid_fraction", fraction)
    n = len(examples)
    chosen = np.sort(np.random.default_rng(seed).permutation(n)[: round(fraction * n)])
    rest = np.setdiff1d(np.arange(n), chosen)
    return examples.subset(rest.tolist()), examples.subset(chosen.tolist())


def make_splits(
    natural: dict[str, Examples], valid_fraction: float, test_fraction: float, seed: int
) -> dict[str, Examples]:
    """train/valid/test from what the source provides (``train``+``valid``+``test``, ``train``+``test``, ``all``)."""
    if set(natural) == set(SPLITS):
        return dict(natural)
    if set(natural) == {"train", "test"}:
        if valid_fraction == 0.0:  # the authors' code validates on the test set (S4's IMDB, val_split=0)
            return {"train": natural["train"], "valid": natural["test"], "test": natural["test"]}
        train, valid = carve(natural["train"], valid_fraction, seed)
        return {"train": train, "valid": valid, "test": natural["test"]}
    if set(natural) == {"all"}:
        _check_fraction("test_fraction", test_fraction)
        rest, test = carve(natural["all"], test_fraction, seed)
        train, valid = carve(rest, valid_fraction / (1.0 - test_fraction), seed + 1)
        return {"train": train, "valid": valid, "test": test}
    raise ValueError(f"a source must provide train/valid/test, train/test or all; this one gives {sorted(natural)}")


def apply_recorded(natural: dict[str, Examples], recorded: dict[str, list[str]], path: Path) -> dict[str, Examples]:
    """The splits listed in ``splits.json``, taken from the examples the source provides."""
    pool = Examples.concat([natural[k] for k in sorted(natural)])
    position = {example_id: i for i, example_id in enumerate(pool.ids)}
    out = {}
    for split in SPLITS:
        missing = [i for i in recorded[split] if i not in position]
        if missing:
            raise ValueError(
                f"{path}: split {split!r} lists {len(missing)} example(s) the data does not have (first: "
                f"{missing[0]!r}); delete {path.parent} to split the data afresh"
            )
        out[split] = pool.subset([position[i] for i in recorded[split]])
    return out


def load_or_make_splits(
    natural: dict[str, Examples], path: Path, valid_fraction: float, test_fraction: float, seed: int
) -> dict[str, Examples]:
    """Follow ``path`` (splits.json) if it exists, else make the splits and record them there."""
    if path.is_file():
        recorded = json.loads(path.read_text(encoding="utf-8"))
        if set(SPLITS) <= set(recorded):
            return apply_recorded(natural, recorded, path)
    splits = make_splits(natural, valid_fraction, test_fraction, seed)
    write_json(path, {split: splits[split].ids for split in SPLITS})
    return splits
