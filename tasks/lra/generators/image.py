"""Image generator: real handwritten digits (scikit-learn's bundled 8x8 scans) as CIFAR-10 binary records.

scikit-learn ships 1,797 handwritten digits (UCI optical recognition set, 8x8, 17 grey levels). The
1,797 scans are split once, by ``seed``, into a training pool and a test pool (``test_pool`` of them),
so test images come from scans never seen in training. Each record takes the next scan of its pool (a
seeded cycle over it, so classes stay as balanced as the scans are), scales it to a random size
(``min_size``..``max_size`` pixels, bilinear), rotates it by up to ``max_rotation`` degrees, pastes it
at a random place of a 32x32 canvas, paints it with a random foreground colour on a random background
colour (their luminance differs by at least ``min_contrast``, so the digit survives the grey conversion)
and adds Gaussian pixel noise (``noise`` standard deviation). Records are CIFAR-10's: the label byte
then the red, green and blue 32x32 planes; files ``cifar-10-batches-bin/data_batch_{1..5}.bin`` (the
training records in five equal parts) and ``test_batch.bin``. Defaults: CIFAR-10's 50,000 / 10,000.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from tasks.lra.data.cifar import GRAY_WEIGHTS, RELEASE_FOLDER, SIDE, TEST_FILES, TRAIN_FILES
from tasks.lra.generators import write_file

LRA_SIZES = {"train": 50_000, "test": 10_000}
MAX_CONTRAST = 160.0


class DigitPainter:
    def __init__(self, rng: np.random.Generator, min_size: int = 16, max_size: int = 28, max_rotation: float = 15.0,
                 min_contrast: float = 80.0, noise: float = 8.0):
        if not 4 <= min_size <= max_size <= SIDE:
            raise ValueError(f"need 4 <= min_size <= max_size <= {SIDE}, got {min_size} and {max_size}")
        if not 0 <= min_contrast <= MAX_CONTRAST:  # colour pairs are drawn by rejection: keep it likely
            raise ValueError(f"min_contrast must be in [0, {MAX_CONTRAST}], got {min_contrast}")
        self.rng, self.sizes, self.max_rotation = rng, (min_size, max_size), max_rotation
        self.min_contrast, self.noise = min_contrast, noise

    def colours(self) -> tuple[np.ndarray, np.ndarray]:
        while True:
            fg, bg = self.rng.integers(0, 256, size=(2, 3))
            if abs(float((fg - bg) @ GRAY_WEIGHTS)) >= self.min_contrast:
                return fg.astype(np.float32), bg.astype(np.float32)

    def paint(self, scan: np.ndarray) -> np.ndarray:
        """``scan[8, 8]`` in 0..16 -> ``[3, 32, 32]`` uint8."""
        rng, size = self.rng, int(self.rng.integers(self.sizes[0], self.sizes[1] + 1))
        glyph = Image.fromarray((scan * (255 / 16)).astype(np.uint8)).resize((size, size), Image.BILINEAR)
        glyph = glyph.rotate(float(rng.uniform(-self.max_rotation, self.max_rotation)), Image.BILINEAR)
        canvas = np.zeros((SIDE, SIDE), dtype=np.float32)
        top, left = rng.integers(0, SIDE - size + 1, size=2)
        canvas[top : top + size, left : left + size] = np.asarray(glyph, dtype=np.float32) / 255.0
        fg, bg = self.colours()
        rgb = bg[:, None, None] + (fg - bg)[:, None, None] * canvas[None]
        rgb += rng.normal(0.0, self.noise, size=rgb.shape)
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def records(painter: DigitPainter, rng: np.random.Generator, scans: np.ndarray, labels: np.ndarray, n: int) -> bytes:
    """``n`` CIFAR records cycling through ``scans`` in seeded orders."""
    order = np.concatenate([rng.permutation(len(scans)) for _ in range(-(-n // len(scans)))])[:n]
    out = np.empty((n, 1 + 3 * SIDE * SIDE), dtype=np.uint8)
    for row, index in enumerate(order):
        out[row, 0] = labels[index]
        out[row, 1:] = painter.paint(scans[index]).reshape(-1)
    return out.tobytes()


def write_image(
    out: str | Path,
    seed: int = 0,
    sizes: dict[str, int] | None = None,
    test_pool: int = 360,
    min_size: int = 16,
    max_size: int = 28,
    max_rotation: float = 15.0,
    min_contrast: float = 80.0,
    noise: float = 8.0,
) -> Path:
    """Write ``<out>/cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin``; returns that folder."""
    sizes = LRA_SIZES if sizes is None else sizes
    if sizes["train"] % len(TRAIN_FILES):
        raise ValueError(f"sizes.train={sizes['train']} must split into {len(TRAIN_FILES)} equal data batches")
    digits = load_digits()
    rng = np.random.default_rng(seed)
    painter = DigitPainter(rng, min_size, max_size, max_rotation, min_contrast, noise)
    permutation = rng.permutation(len(digits.target))
    if not 0 < test_pool < len(permutation):
        raise ValueError(f"test_pool must be in 1..{len(permutation) - 1}, got {test_pool}")
    test_idx, train_idx = permutation[:test_pool], permutation[test_pool:]
    folder = Path(out) / RELEASE_FOLDER
    per_file = sizes["train"] // len(TRAIN_FILES)
    for name in TRAIN_FILES:
        write_file(folder / name, records(painter, rng, digits.images[train_idx], digits.target[train_idx], per_file))
    write_file(
        folder / TEST_FILES[0], records(painter, rng, digits.images[test_idx], digits.target[test_idx], sizes["test"])
    )
    return folder
