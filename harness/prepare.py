"""``python -m harness.prepare [overrides]``: prepare a run's data (generate or read it, tokenise, cache) without
training, so that a run's processes only read the cache.

The data of a run under several processes is prepared before they join their process group (whose timeout
would otherwise run while one rank generates paper-scale data alone): every process takes the cache folder's
lock in turn, the first prepares, the others find the cache. ``./reproduce.sh --launcher slurm`` runs this once
per task of a sweep on the submitting node, before submitting it, so the jobs only read; the cache folder
(``task.data.cache_dir``, relative paths against the working directory) must then be on storage the nodes share.
"""
from __future__ import annotations

import contextlib
import fcntl
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import tasks
from harness.compose import compose
from harness.config import ConfigError, RunConfig, validate

LOCK_FILE = ".prepare.lock"


@contextlib.contextmanager
def cache_lock(cache_dir: str | Path) -> Iterator[None]:
    """The cache folder's lock (flock: released by the kernel if the holder dies)."""
    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare(cfg: RunConfig) -> tasks.Task:
    """The run's task with its data prepared, one process at a time per cache folder."""
    task = tasks.build(cfg.task)
    with cache_lock(cfg.task.data.cache_dir):
        task.prepare()
    return task


def main(argv: Sequence[str] | None = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = validate(compose(overrides))
    except ConfigError as err:
        print(f"invalid configuration: {err}", file=sys.stderr)
        return 2
    task = prepare(cfg)
    print(f"prepared: task={cfg.task.name} in {Path(cfg.task.data.cache_dir).resolve()} "
          f"({task.num_examples('train'):,} training examples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
