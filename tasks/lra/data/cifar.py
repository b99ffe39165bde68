"""Image: CIFAR-10 from its binary distribution (``cifar-10-batches-bin``), as 1024 grayscale tokens.

Each ``data_batch_{1..5}.bin`` / ``test_batch.bin`` file is a run of 3073-byte records: one label byte
(0-9) then 3072 pixel bytes (the 32x32 red plane, then green, then blue, rows top to bottom). Colour is
turned to grey as LRA's pipeline does (``tf.image.rgb_to_grayscale``: weights 0.2989, 0.5870, 0.1140, then
TensorFlow's float-to-uint8 conversion, floor(x * 255.5)); pixel value p becomes token p + 1.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.lra.data.examples import BYTE_OFFSET, Examples
from tasks.lra.data.layout import find_folder, require_file

RELEASE_FOLDER = "cifar-10-batches-bin"
SIDE = 32
RECORD_BYTES = 1 + 3 * SIDE * SIDE
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
N_CLASSES = 10
GRAY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)


def read_records(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(labels[n], rgb[n, 3, 32, 32] uint8)`` from one CIFAR-10 binary file."""
    path = require_file(Path(path), f"a CIFAR-10 binary batch of {RECORD_BYTES}-byte records")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise ValueError(
            f"{path}: size {raw.size} bytes is not a positive multiple of {RECORD_BYTES} "
            "(a CIFAR-10 record is 1 label byte + 3072 pixel bytes)"
        )
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    bad = np.flatnonzero(labels >= N_CLASSES)
    if bad.size:
        raise ValueError(f"{path}: record {bad[0]} has label byte {labels[bad[0]]}; expected 0-9")
    return labels, records[:, 1:].reshape(-1, 3, SIDE, SIDE)


def to_grayscale(rgb: np.ndarray) -> np.ndarray:
    """``rgb[n, 3, H, W]`` uint8 -> ``[n, H, W]`` uint8, as ``tf.image.rgb_to_grayscale`` on uint8 input."""
    grey = np.einsum("nchw,c->nhw", rgb.astype(np.float32) / 255.0, GRAY_WEIGHTS)
    return np.clip(np.floor(grey * 255.5), 0, 255).astype(np.uint8)


def read_cifar_files(folder: Path, names: tuple[str, ...]) -> Examples:
    sequences, labels, ids = [], [], []
    for name in names:
        file_labels, rgb = read_records(folder / name)
        tokens = to_grayscale(rgb).reshape(len(file_labels), -1).astype(np.int16) + BYTE_OFFSET
        sequences.extend(tokens)
        labels.append(file_labels)
        ids.extend(f"{name}:{i}" for i in range(len(file_labels)))
    return Examples((sequences,), np.concatenate(labels), ids)


def source_files(root: str | Path) -> list[Path]:
    """The files :func:`read_cifar` parses (what its cache is keyed on)."""
    folder = find_folder(root, RELEASE_FOLDER, TEST_FILES[0])
    return [require_file(folder / name, f"a CIFAR-10 binary batch of {RECORD_BYTES}-byte records")
            for name in TRAIN_FILES + TEST_FILES]


def read_cifar(root: str | Path) -> dict[str, Examples]:
    """``train`` (the five data batches, in order) and ``test``."""
    folder = find_folder(root, RELEASE_FOLDER, TEST_FILES[0])
    return {"train": read_cifar_files(folder, TRAIN_FILES), "test": read_cifar_files(folder, TEST_FILES)}
