"""The tokenised cache of every official LRA format is keyed on the content of the files it was read from: a
file replaced in place (same name, size and modification time) is read again, never served from the cache."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import tasks
from tests.tasks.lra import fixtures
from tests.tasks.rewrite import rewrite_in_place


def _listops(root: Path) -> tuple[Path, bytes, bytes]:
    rows = {"train": [("( ( [MAX 2 ) 9 ] )", "9")] * 4, "valid": [("( [MIN 2 9 ] )", "2")] * 2}
    folder = fixtures.listops_release(root, rows)
    return folder / "basic_train.tsv", b"\t9\n", b"\t3\n"


def _text(root: Path) -> tuple[Path, bytes, bytes]:
    reviews = {"pos": {"0_9.txt": b"a great film", "1_8.txt": b"fine"}, "neg": {"2_1.txt": b"bad", "3_2.txt": b"dull"}}
    folder = fixtures.imdb(root, {"train": reviews, "test": reviews})
    return folder / "train" / "pos" / "0_9.txt", b"great", b"grate"


def _retrieval(root: Path) -> tuple[Path, bytes, bytes]:
    folder = fixtures.aan_release(root, ["1\tP1\tP2\tone paper\tanother", "0\tP3\tP4\tthird\tfourth"] * 2)
    return folder / "new_aan_pairs.train.tsv", b"1\tP1", b"0\tP1"


def _image(root: Path) -> tuple[Path, bytes, bytes]:
    rng = np.random.default_rng(0)
    records = [fixtures.cifar_record(i % 10, rng.integers(0, 256, (3, 32, 32))) for i in range(12)]
    folder = fixtures.cifar(root, records[:10], records[10:])
    return folder / "test_batch.bin", records[10][:1], bytes([(records[10][0] + 1) % 10])


def _pathfinder(side: int) -> Callable[[Path], tuple[Path, bytes, bytes]]:
    def make(root: Path) -> tuple[Path, bytes, bytes]:
        images = {0: [(np.full((side, side), 10 * i), i % 2) for i in range(10)]}
        folder = fixtures.pathfinder_release(root, images, side=side)
        return folder / "metadata" / "0.npy", b"sample_0.png 0 0", b"sample_0.png 0 1"
    return make


# name -> (writes the files and says which bytes to change, task settings)
FORMATS = {
    "listops": (_listops, {"seq_len": 32}),
    "text": (_text, {"seq_len": 32, "valid_fraction": 0.25}),
    "retrieval": (_retrieval, {"seq_len": 32}),
    "image": (_image, {"seq_len": 64, "pool": 4}),
    "pathfinder": (_pathfinder(32), {"seq_len": 64, "pool": 4}),
    "pathx": (_pathfinder(128), {"seq_len": 256, "side": 128, "pool": 8}),
}


def prepared(name: str, root: Path, cache: Path, **settings) -> dict[str, dict[str, torch.Tensor]]:
    task = tasks.build({"name": f"lra/{name}", **settings,
                        "data": {"source": "files", "path": str(root), "cache_dir": str(cache)}})
    task.prepare()
    return task.tensors


def same(a: dict[str, dict[str, torch.Tensor]], b: dict[str, dict[str, torch.Tensor]]) -> bool:
    return a.keys() == b.keys() and all(
        a[s].keys() == b[s].keys() and all(torch.equal(a[s][k], b[s][k]) for k in a[s]) for s in a
    )


@pytest.mark.parametrize("name", FORMATS)
def test_a_file_replaced_in_place_is_read_again(tmp_path, name):
    make, settings = FORMATS[name]
    path, old, new = make(tmp_path / "data")
    first = prepared(name, tmp_path / "data", tmp_path / "cache", **settings)
    tensor_folders = sorted((tmp_path / "cache").glob(f"lra-{name}-*"))
    assert same(first, prepared(name, tmp_path / "data", tmp_path / "cache", **settings))
    assert sorted((tmp_path / "cache").glob(f"lra-{name}-*")) == tensor_folders  # a cache hit: no new folder
    rewrite_in_place(path, old, new)
    again = prepared(name, tmp_path / "data", tmp_path / "cache", **settings)
    fresh = prepared(name, tmp_path / "data", tmp_path / "fresh-cache", **settings)
    assert same(again, fresh), "the cache served tensors of the file's previous content"
    assert not same(again, first)


def test_a_moved_copy_reuses_the_cache(tmp_path):
    path, _, _ = _listops(tmp_path / "data")
    first = prepared("listops", tmp_path / "data", tmp_path / "cache", seq_len=32)
    (tmp_path / "data").rename(tmp_path / "moved")
    folders = set((tmp_path / "cache").iterdir())
    assert same(first, prepared("listops", tmp_path / "moved", tmp_path / "cache", seq_len=32))
    assert set((tmp_path / "cache").iterdir()) == folders  # same content, same key: nothing new was cached


def test_unchanged_files_are_not_read_again_for_their_digest(tmp_path, monkeypatch):
    """Pathfinder's 200K images: their digests are remembered (keyed on inode, size, mtime and ctime)."""
    from tasks.data import cache

    path, old, new = _listops(tmp_path / "data")
    prepared("listops", tmp_path / "data", tmp_path / "cache", seq_len=32)
    reads = []
    real = cache.file_digest
    monkeypatch.setattr(cache, "file_digest", lambda p: reads.append(p) or real(p))
    prepared("listops", tmp_path / "data", tmp_path / "cache", seq_len=32)
    assert reads == []
    rewrite_in_place(path, old, new)  # same size and mtime: the ctime tells
    prepared("listops", tmp_path / "data", tmp_path / "cache", seq_len=32)
    assert [Path(p).name for p in reads] == [path.name]
