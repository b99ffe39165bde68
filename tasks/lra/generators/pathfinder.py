"""Pathfinder generator: two dashed curved contours, distractor dashes and two end markers, as PNGs.

The contour-and-distractor procedure of Pathfinder (Linsley et al. 2018), seeded. On a ``side``x``side``
canvas (32 for Pathfinder, 128 for Path-X) it draws, white on black:
1. two contours of ``contour_length`` paddles each (14 for ``curv_contour_length_14``, 9 and 6 for the
   easier ``curv_contour_length_9`` and ``curv_baseline``): a paddle is a short straight dash of
   ``paddle_length`` pixels, the next one starts ``paddle_gap`` pixels further on and turns by at most
   ``max_turn`` degrees, so contours are smooth dashed curves. A paddle may not come within ``clearance``
   pixels of anything drawn before (its own earlier paddles included), nor leave the canvas; a contour
   that cannot continue is drawn again, an image that cannot be finished is started again;
2. the four contour ends are reserved, then ``n_distractors`` distractor snippets of one or two paddles
   are scattered wherever they fit (the same rules), so the clutter does not depend on the label;
3. two round markers (radius ``marker_radius``): label 1 puts them at both ends of the first contour,
   label 0 at one end of each contour. Both labels thus show the same parts; only connectivity differs.
Lines are drawn at ``supersample`` times the resolution and box-filtered down, giving grey anti-aliased
strokes as in the release. Lengths scale with ``side / 32`` unless given. Files follow the release:
``pathfinder<side>/<difficulty>/imgs/<k>/sample_<i>.png`` (``images_per_folder`` per folder) and
``metadata/<k>.npy``, a TEXT file with one line per image
``imgs/<k> sample_<i>.png <i> <label> <contour_length> <paddle_length> <n_distractors>``.
Each folder draws from its own seeded stream, half its images positive, so runs split over processes
(``workers``) write the same files. Default count 200,000 (LRA's 160k/20k/20k).
"""
from __future__ import annotations

import io
import math
import random
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image, ImageDraw

from tasks.lra.data.pathfinder import release_folder
from tasks.lra.generators import write_file

CONTOUR_LENGTHS = {"curv_baseline": 6, "curv_contour_length_9": 9, "curv_contour_length_14": 14}
LRA_TOTAL = 200_000
Point = tuple[float, float]
Segment = tuple[Point, Point]


@dataclass(frozen=True)
class Geometry:
    side: int = 32
    contour_length: int = 14
    paddle_length: float = 2.0
    paddle_gap: float = 1.0
    paddle_width: float = 1.0
    max_turn: float = 45.0
    n_distractors: int = 12
    marker_radius: float = 1.3
    clearance: float = 1.0
    supersample: int = 4

    @classmethod
    def for_side(cls, side: int, difficulty: str, **overrides) -> Geometry:
        """Release-like geometry: lengths scaled by ``side / 32``, contour length from ``difficulty``."""
        if difficulty not in CONTOUR_LENGTHS:
            raise ValueError(f"unknown Pathfinder difficulty {difficulty!r}; valid choices: {list(CONTOUR_LENGTHS)}")
        s = side / 32
        scaled = cls(
            side=side, contour_length=CONTOUR_LENGTHS[difficulty], paddle_length=2.0 * s, paddle_gap=1.0 * s,
            paddle_width=max(1.0, math.sqrt(s)), n_distractors=round(12 * s), marker_radius=1.3 * s,
            clearance=max(1.0, math.sqrt(s)), supersample=max(1, round(4 / s)),
        )
        return replace(scaled, **overrides)


class Canvas:
    """Occupancy at pixel resolution, as a set of flat pixel indices near something already placed."""

    def __init__(self, geometry: Geometry):
        self.g, self.taken = geometry, set()
        r = math.ceil(geometry.clearance)
        self.offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= r * r]

    def footprint(self, segment: Segment) -> set[int]:
        """Flat indices of the pixels a segment touches."""
        (x0, y0), (x1, y1) = segment
        steps, side = max(1, math.ceil(4 * math.hypot(x1 - x0, y1 - y0))), self.g.side
        return {int(y0 + (y1 - y0) * i / steps) * side + int(x0 + (x1 - x0) * i / steps) for i in range(steps + 1)}

    def inside(self, point: Point, margin: float) -> bool:
        return margin <= point[0] <= self.g.side - 1 - margin and margin <= point[1] <= self.g.side - 1 - margin

    def dilate(self, pixels: set[int]) -> set[int]:
        side, out = self.g.side, set()
        for pixel in pixels:
            row, col = divmod(pixel, side)
            for dy, dx in self.offsets:
                if 0 <= row + dy < side and 0 <= col + dx < side:
                    out.add((row + dy) * side + col + dx)
        return out

    def free(self, pixels: set[int], own: set[int] = frozenset()) -> bool:
        return self.taken.isdisjoint(pixels) and own.isdisjoint(pixels)


class PathfinderPainter:
    def __init__(self, geometry: Geometry, rng: random.Random, tries: int = 20):
        self.g, self.rng, self.tries = geometry, rng, tries

    def contour(self, canvas: Canvas, n_paddles: int, starts: int) -> list[Segment] | None:
        """A dashed curve of ``n_paddles`` paddles that fits, or None after ``starts`` attempts.

        The curve grows from its first paddle at both ends (a random live end each step), so a curve that
        runs into the border or into something drawn can still be completed the other way.
        """
        for _ in range(starts):
            paddles = self._grow(canvas, n_paddles)
            if paddles is not None:
                return paddles
        return None

    def _grow(self, canvas: Canvas, n_paddles: int) -> list[Segment] | None:
        g, rng, margin = self.g, self.rng, self.g.marker_radius + 0.5
        start = (rng.uniform(margin, g.side - 1 - margin), rng.uniform(margin, g.side - 1 - margin))
        angle = rng.uniform(0, 2 * math.pi)
        # per end: where its next paddle starts, its heading, the footprint of its outermost paddle
        ends = [[start, angle, None], [start, angle + math.pi, None]]
        paddles: deque[Segment] = deque()
        own: set[int] = set()  # dilated footprints of every paddle but the two outermost
        live = [0, 1] if n_paddles > 1 else [0]
        while len(paddles) < n_paddles and live:
            side = rng.choice(live)
            point, heading, outer = ends[side]
            other = ends[1 - side][2]
            blocked = own if other is None or other is outer else own | canvas.dilate(other)
            for _ in range(self.tries):
                turn = heading + math.radians(rng.uniform(-g.max_turn, g.max_turn)) if paddles else heading
                end = (point[0] + g.paddle_length * math.cos(turn), point[1] + g.paddle_length * math.sin(turn))
                pixels = canvas.footprint((point, end))
                if canvas.inside(end, margin) and canvas.free(pixels, blocked):
                    break
            else:
                live.remove(side)
                continue
            if outer is not None and outer is not other:
                own |= canvas.dilate(outer)
            if side == 0:
                paddles.append((point, end))
            else:
                paddles.appendleft((end, point))
            gap = (g.paddle_gap * math.cos(turn), g.paddle_gap * math.sin(turn))
            ends[side] = [(end[0] + gap[0], end[1] + gap[1]), turn, pixels]
            if len(paddles) == 1:  # the first paddle is the outermost at both ends; the back end starts behind it
                back = (point[0] - gap[0], point[1] - gap[1])
                ends[1 - side] = [back, turn + math.pi, pixels]
        return list(paddles) if len(paddles) == n_paddles else None

    def commit(self, canvas: Canvas, paddles: list[Segment]) -> None:
        for paddle in paddles:
            canvas.taken |= canvas.dilate(canvas.footprint(paddle))

    def reserve(self, canvas: Canvas, point: Point) -> None:
        """Keep a marker's disc (and its clearance) free of distractors."""
        r, side = math.ceil(self.g.marker_radius + self.g.clearance), self.g.side
        row, col = int(point[1]), int(point[0])
        canvas.taken |= {
            (row + dy) * side + col + dx
            for dy in range(-r, r + 1)
            for dx in range(-r, r + 1)
            if 0 <= row + dy < side and 0 <= col + dx < side
        }

    def layout(self, label: int) -> tuple[list[Segment], list[Point]]:
        """Paddles and marker centres of one image."""
        while True:
            canvas, contours = Canvas(self.g), []
            for _ in range(2):
                paddles = self.contour(canvas, self.g.contour_length, starts=self.tries)
                if paddles is None:
                    break
                self.commit(canvas, paddles)
                contours.append(paddles)
            if len(contours) == 2:
                break
        ends = [(c[0][0], c[-1][1]) for c in contours]
        for pair in ends:
            for point in pair:
                self.reserve(canvas, point)
        distractors = []
        for _ in range(self.g.n_distractors):
            snippet = self.contour(canvas, self.rng.randint(1, 2), starts=3)
            if snippet is not None:
                self.commit(canvas, snippet)
                distractors += snippet
        if label:
            markers = list(ends[0])
        else:
            markers = [ends[0][self.rng.randrange(2)], ends[1][self.rng.randrange(2)]]
        return [p for c in contours for p in c] + distractors, markers

    def draw(self, label: int) -> Image.Image:
        g = self.g
        ss = g.supersample
        paddles, markers = self.layout(label)
        image = Image.new("L", (g.side * ss, g.side * ss), 0)
        pen = ImageDraw.Draw(image)
        width = max(1, round(g.paddle_width * ss))
        for (x0, y0), (x1, y1) in paddles:
            pen.line([((x0 + 0.5) * ss, (y0 + 0.5) * ss), ((x1 + 0.5) * ss, (y1 + 0.5) * ss)], fill=255, width=width)
        r = g.marker_radius * ss
        for x, y in markers:
            cx, cy = (x + 0.5) * ss, (y + 0.5) * ss
            pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        return image.resize((g.side, g.side), Image.BOX) if ss > 1 else image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_folder(folder: Path, k: int, seed: int, count: int, geometry: Geometry) -> None:
    """Images ``imgs/<k>/sample_{0..count-1}.png`` and ``metadata/<k>.npy``, from their own seeded stream."""
    rng = random.Random(f"pathfinder/{seed}/{k}")
    painter = PathfinderPainter(geometry, rng)
    labels = [i % 2 for i in range(count)]
    rng.shuffle(labels)
    g, lines = geometry, []
    for i, label in enumerate(labels):
        write_file(folder / "imgs" / str(k) / f"sample_{i}.png", png_bytes(painter.draw(label)))
        lines.append(f"imgs/{k} sample_{i}.png {i} {label} {g.contour_length} {g.paddle_length:g} {g.n_distractors}")
    write_file(folder / "metadata" / f"{k}.npy", "\n".join(lines) + "\n")


def write_pathfinder(
    out: str | Path,
    seed: int = 0,
    total: int = LRA_TOTAL,
    side: int = 32,
    difficulty: str = "curv_contour_length_14",
    images_per_folder: int = 1000,
    workers: int = 1,
    **geometry,
) -> Path:
    """Write ``<out>/pathfinder<side>/<difficulty>/{imgs,metadata}``; returns that folder.

    Each image folder has its own random stream (seeded by ``seed`` and its number) and an even number of
    images is half positive, so the files do not depend on ``workers``.
    """
    g = Geometry.for_side(side, difficulty, **geometry)
    folder = Path(out) / release_folder(side, difficulty)
    starts = range(0, total, images_per_folder)
    jobs = [(folder, k, seed, min(images_per_folder, total - start), g) for k, start in enumerate(starts)]
    if workers <= 1:
        for job in jobs:
            write_folder(*job)
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(write_folder, *zip(*jobs)))
    return folder
