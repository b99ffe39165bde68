"""Small files in the official LRA formats, written the way the release (or IMDB, CIFAR-10) lays them out."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def listops_release(root: Path, rows: dict[str, list[tuple[str, str]]], nested: bool = True) -> Path:
    """``lra_release/lra_release/listops-1000/basic_*.tsv`` (or flattened ``listops-1000/``)."""
    folder = root / "lra_release" / "lra_release" / "listops-1000" if nested else root / "listops-1000"
    names = {"train": "basic_train.tsv", "valid": "basic_val.tsv", "test": "basic_test.tsv"}
    for split, name in names.items():
        lines = ["Source\tTarget", *(f"{s}\t{t}" for s, t in rows.get(split, rows["train"]))]
        write(folder / name, "\n".join(lines) + "\n")
    return folder


def aan_release(root: Path, rows: list[str], nested: bool = False) -> Path:
    folder = root / "lra_release" / ("lra_release" if nested else "") / "tsv_data"
    for name in ("new_aan_pairs.train.tsv", "new_aan_pairs.eval.tsv", "new_aan_pairs.test.tsv"):
        write(folder / name, "\n".join(rows) + "\n")
    return folder


def imdb(root: Path, reviews: dict[str, dict[str, dict[str, bytes]]]) -> Path:
    """``aclImdb/<split>/<pos|neg>/<name>`` -> bytes."""
    for split, polarities in reviews.items():
        for polarity, files in polarities.items():
            for name, text in files.items():
                write(root / "aclImdb" / split / polarity / name, text)
    return root / "aclImdb"


def cifar_record(label: int, rgb: np.ndarray) -> bytes:
    """One CIFAR-10 binary record: the label byte, then the R, G, B planes of a ``[3, 32, 32]`` uint8 image."""
    return bytes([label]) + rgb.astype(np.uint8).tobytes()


def cifar(root: Path, train: list[bytes], test: list[bytes]) -> Path:
    folder = root / "cifar-10-batches-bin"
    per_file = len(train) // 5
    for i in range(5):
        write(folder / f"data_batch_{i + 1}.bin", b"".join(train[i * per_file : (i + 1) * per_file]))
    write(folder / "test_batch.bin", b"".join(test))
    return folder


def png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def pathfinder_release(root: Path, images: dict[int, list[tuple[np.ndarray | None, int]]], side: int = 32,
                       difficulty: str = "curv_contour_length_14") -> Path:
    """``lra_release/lra_release/pathfinder<side>/<difficulty>/{imgs/<k>/sample_<i>.png, metadata/<k>.npy}``;
    an image given as None is written as an empty (zero-byte) file, like the release's broken one."""
    folder = root / "lra_release" / "lra_release" / f"pathfinder{side}" / difficulty
    for k, entries in images.items():
        lines = []
        for i, (pixels, label) in enumerate(entries):
            path = folder / "imgs" / str(k) / f"sample_{i}.png"
            if pixels is None:
                write(path, b"")
            else:
                png(path, pixels)
            lines.append(f"imgs/{k} sample_{i}.png {i} {label} 14 2 12")
        write(folder / "metadata" / f"{k}.npy", "\n".join(lines) + "\n")
    return folder
