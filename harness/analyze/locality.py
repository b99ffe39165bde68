"""Locally accumulated attention score (the paper's Figure 2, "attention dilution").

For a row-stochastic attention p over N tokens and a neighbourhood ratio r in [0, 1], the neighbourhood of
query i holds m = round(r N) tokens:
- causal: the m most recent tokens up to and including i, j in (i - m, i] (clipped at the start, so early
  tokens simply see fewer; they cannot see more than i + 1 keys anyway);
- bidirectional: a window of exactly m consecutive tokens as centred on i as the sequence allows,
  [s, s + m) with s = clamp(i - floor((m - 1) / 2), 0, N - m) (shifted, not clipped, at the edges so that
  every query's neighbourhood holds the same number of tokens).
l(i, r) = sum of p_ij over that neighbourhood. It is non-decreasing in r, 0 at r = 0 and 1 at r = 1. The
curve of a layer is l(i, r) averaged over every query i, head and sequence; the model's curve averages its
layers with equal weight.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

DEFAULT_RATIOS = tuple(round(0.05 * i, 2) for i in range(21))


def neighbourhood_size(ratio: float, n: int) -> int:
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"neighbourhood ratio must lie in [0, 1], got {ratio}")
    return int(ratio * n + 0.5)


def neighbourhood(n: int, size: int, causal: bool, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(start, end)`` ``[N]`` long: query i's neighbourhood of ``size`` tokens is [start_i, end_i)."""
    i = torch.arange(n, device=device)
    if causal:
        return (i - size + 1).clamp_min(0).clamp_max(i + 1), i + 1
    start = (i - (size - 1) // 2).clamp(0, n - size) if size > 0 else i
    return start, start + size


def locally_accumulated(probs: torch.Tensor, ratios: Sequence[float], causal: bool) -> torch.Tensor:
    """``[R]``: l(i, r) for each ratio, averaged over the queries and every leading dimension of
    ``probs[..., N, N]`` (rows must be the attention of real tokens: pass unpadded sequences)."""
    n = probs.shape[-1]
    prefix = torch.nn.functional.pad(probs.double().cumsum(-1), (1, 0))  # [..., N, N + 1]
    curve = []
    for ratio in ratios:
        start, end = neighbourhood(n, neighbourhood_size(ratio, n), causal, probs.device)
        index = lambda t: t.view(n, 1).expand(*prefix.shape[:-1], 1)  # noqa: E731
        mass = prefix.gather(-1, index(end)) - prefix.gather(-1, index(start))
        curve.append(mass.mean())
    return torch.stack(curve).float()


def uniform_curve(n: int, ratios: Sequence[float], causal: bool) -> torch.Tensor:
    """``[R]``: l(r) of uniform attention over the visible keys (the reference of no locality at all)."""
    i = torch.arange(n, dtype=torch.float64)
    visible = i + 1 if causal else torch.full_like(i, n)
    curve = []
    for ratio in ratios:
        start, end = neighbourhood(n, neighbourhood_size(ratio, n), causal)
        curve.append(((end - start) / visible).mean())
    return torch.stack(curve).float()


def real_prefix_length(real: torch.Tensor) -> int:
    """The number of real tokens of one sequence whose padding (if any) is at the end."""
    n = int(real.sum())
    if not bool(real[:n].all()):
        raise ValueError("locality needs right-padded sequences (real tokens first, padding after)")
    return n


class LocalityCurves:
    """Accumulates l(i, r) over the maps of a model's layers (a ``visiting_attention`` visitor)."""

    def __init__(self, ratios: Sequence[float] = DEFAULT_RATIOS):
        self.ratios = [float(r) for r in ratios]
        for ratio in self.ratios:
            neighbourhood_size(ratio, 1)  # validates the range
        self.sums: dict[tuple[int, str], torch.Tensor] = {}
        self.counts: dict[tuple[int, str], int] = {}
        self.reference_sum, self.reference_count = torch.zeros(len(self.ratios)), 0

    def __call__(self, site, amap, real: torch.Tensor) -> None:
        key = (site.layer, site.mixer)
        for b in range(real.shape[0]):
            n = real_prefix_length(real[b])
            if n == 0:
                continue
            probs = amap.probs[b, :, :n, :n]
            rows = probs.shape[0] * n
            curve = locally_accumulated(probs, self.ratios, site.causal) * rows
            self.sums[key] = self.sums.get(key, 0) + curve
            self.counts[key] = self.counts.get(key, 0) + rows
            self.reference_sum += uniform_curve(n, self.ratios, site.causal) * rows
            self.reference_count += rows

    def rows(self) -> list[dict]:
        """``layer`` (an integer; ``all``: the equal-weight mean of the layers; ``uniform``: uniform attention
        over the same visible keys, the reference of no locality), ``mixer``, ``ratio``, ``score``."""
        if not self.sums:
            raise ValueError("no attention was visited: run the model inside visiting_attention first")
        per_layer = {key: self.sums[key] / self.counts[key] for key in sorted(self.sums)}
        out = [
            {"layer": layer, "mixer": mixer, "ratio": ratio, "score": float(score)}
            for (layer, mixer), curve in per_layer.items()
            for ratio, score in zip(self.ratios, curve)
        ]
        mean = torch.stack(list(per_layer.values())).mean(0)
        mixers = "+".join(sorted({mixer for _, mixer in per_layer}))
        out += [{"layer": "all", "mixer": mixers, "ratio": r, "score": float(s)} for r, s in zip(self.ratios, mean)]
        reference = self.reference_sum / self.reference_count
        out += [
            {"layer": "uniform", "mixer": "-", "ratio": r, "score": float(s)} for r, s in zip(self.ratios, reference)
        ]
        return out
