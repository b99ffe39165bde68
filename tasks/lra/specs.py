"""The six LRA tasks: classes, vocabulary, how to read the official files, which generator makes them."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.lra.data import aan, cifar, imdb, listops, pathfinder
from tasks.lra.data.examples import BYTE_OFFSET, Examples
from tasks.lra.generators.image import write_image
from tasks.lra.generators.listops import write_listops
from tasks.lra.generators.pathfinder import write_pathfinder
from tasks.lra.generators.retrieval import write_retrieval
from tasks.lra.generators.text import write_text

BYTE_VOCAB = 256 + BYTE_OFFSET  # bytes and grey levels, plus padding


@dataclass(frozen=True)
class LraSpec:
    """``read(root, cfg)`` returns the source's own splits (train/valid/test, train/test or all);
    ``files(root, cfg)`` lists every file ``read`` parses (the tokenised cache is keyed on their contents);
    ``generate(out, seed=..., **builtin)`` writes the same files. ``image`` tasks have fixed-size grids."""

    name: str
    n_classes: int
    vocab_size: int
    n_inputs: int
    read: Callable[[Path, Any], dict[str, Examples]]
    files: Callable[[Path, Any], list[Path]]
    generate: Callable[..., Path]
    image: bool = False


def _pathfinder(root: Path, cfg: Any) -> dict[str, Examples]:
    return {"all": pathfinder.read_pathfinder(root, cfg.side, cfg.difficulty)}


def _pathfinder_files(root: Path, cfg: Any) -> list[Path]:
    return pathfinder.source_files(root, cfg.side, cfg.difficulty)


SPECS: dict[str, LraSpec] = {
    spec.name: spec
    for spec in (
        LraSpec("listops", listops.N_CLASSES, listops.VOCAB_SIZE, 1,
                lambda root, cfg: listops.read_listops(root, cfg.seq_len),
                lambda root, cfg: listops.source_files(root), write_listops),
        LraSpec("text", imdb.N_CLASSES, BYTE_VOCAB, 1, lambda root, cfg: imdb.read_imdb(root, cfg.seq_len),
                lambda root, cfg: imdb.source_files(root), write_text),
        LraSpec("retrieval", aan.N_CLASSES, BYTE_VOCAB, 2, lambda root, cfg: aan.read_aan(root, cfg.seq_len),
                lambda root, cfg: aan.source_files(root), write_retrieval),
        LraSpec("image", cifar.N_CLASSES, BYTE_VOCAB, 1, lambda root, cfg: cifar.read_cifar(root),
                lambda root, cfg: cifar.source_files(root), write_image, True),
        LraSpec("pathfinder", pathfinder.N_CLASSES, BYTE_VOCAB, 1, _pathfinder, _pathfinder_files, write_pathfinder,
                True),
        LraSpec("pathx", pathfinder.N_CLASSES, BYTE_VOCAB, 1, _pathfinder, _pathfinder_files, write_pathfinder, True),
    )
}


def get_spec(task_name: str) -> LraSpec:
    """The spec of ``lra/<name>``."""
    family, _, name = task_name.partition("/")
    if family != "lra" or name not in SPECS:
        raise ValueError(f"unknown LRA task {task_name!r}; valid choices: {[f'lra/{n}' for n in SPECS]}")
    return SPECS[name]
