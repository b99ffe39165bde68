"""The paper's Proposition on real activations: the distribution of |dp_ij / ds_ik|.

Attention p_ij = f(s_ij) / sum_k f(s_ik) over the keys j, k query i may see.
- softmax (f = exp, s = the logit): dp_ij/ds_ik = p_ij (delta_jk - p_ik), so |.| <= 1/4 always;
- kernel (f = identity, s_ij = phi(q_i).phi(k_j) >= 0, S_i = sum_k s_ik): dp_ij/ds_ik = (delta_jk - p_ij) / S_i,
  unbounded as S_i -> 0 (the paper's bound 1 / (4 |s_ik|) follows from p_ij (1 - p_ij) <= 1/4).
For each attention map of the softmax or kernel family, a random sample of query rows is drawn (seeded) and
every entry (j, k) of each sampled row's Jacobian over its visible keys enters a log-spaced histogram;
exact zeros are counted apart. Quantiles are read off the histogram (to one bin, 1/20 of a decade).
"""
from __future__ import annotations

import math

import torch

FAMILIES = ("softmax", "kernel")
SOFTMAX_BOUND = 0.25
SUMMARY_COLUMNS = ["family", "entries", "max", "median", "p99", "p99.9", "fraction_above_1/4", "bound_1/4_holds"]
HISTOGRAM_COLUMNS = ["family", "bin_low", "bin_high", "count"]


def jacobian_magnitudes(
    probs: torch.Tensor, allowed: torch.Tensor, family: str, row_mass: torch.Tensor | None = None
) -> torch.Tensor:
    """|dp_ij / ds_ik| for rows ``probs [M, N]`` over the visible keys ``allowed [M, N]`` (flat, float64).

    ``row_mass [M]`` (kernel family only) is S_i = sum_k s_ik.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown attention family {family!r}; valid choices: {list(FAMILIES)}")
    p = probs.double()
    eye = torch.eye(p.shape[-1], dtype=p.dtype, device=p.device)
    if family == "softmax":
        jac = p[:, :, None] * (eye - p[:, None, :])  # [M, j, k]
    else:
        if row_mass is None:
            raise ValueError("the kernel family needs row_mass (S_i = sum_k s_ik)")
        jac = (eye - p[:, :, None]) / row_mass.double()[:, None, None]
    visible = allowed[:, :, None] & allowed[:, None, :]
    return jac.abs()[visible]


class LogHistogram:
    """Counts of positive values in log10-spaced bins (``per_decade`` per decade over [10^lo, 10^hi]),
    plus exact zeros, underflow and overflow, the exact maximum and exact counts above ``thresholds``."""

    def __init__(self, lo: int = -16, hi: int = 8, per_decade: int = 20, thresholds: tuple = (SOFTMAX_BOUND,)):
        self.edges = torch.logspace(lo, hi, (hi - lo) * per_decade + 1, dtype=torch.float64)
        self.counts = torch.zeros(len(self.edges) - 1, dtype=torch.long)
        self.zeros = self.underflow = self.overflow = self.total = 0
        self.max = 0.0
        self.above = dict.fromkeys(thresholds, 0)

    def add(self, values: torch.Tensor) -> None:
        values = values.double().cpu().flatten()
        self.total += values.numel()
        for threshold in self.above:
            self.above[threshold] += int((values > threshold).sum())
        if values.numel():
            self.max = max(self.max, float(values.max()))
        positive = values[values > 0]
        self.zeros += values.numel() - positive.numel()
        self.underflow += int((positive < self.edges[0]).sum())
        self.overflow += int((positive >= self.edges[-1]).sum())
        inside = positive[(positive >= self.edges[0]) & (positive < self.edges[-1])]
        index = torch.bucketize(inside, self.edges, right=True) - 1
        self.counts += torch.bincount(index, minlength=len(self.counts))

    def quantile(self, q: float) -> float:
        """The upper edge of the bin holding the q-quantile (0 when it falls among the exact zeros)."""
        rank = q * self.total
        cumulative = self.zeros + self.underflow
        if rank <= self.zeros:
            return 0.0
        if rank <= cumulative:
            return float(self.edges[0])
        for count, upper in zip(self.counts.tolist(), self.edges[1:].tolist()):
            cumulative += count
            if rank <= cumulative:
                return upper
        return self.max

    def fraction_above(self, threshold: float) -> float:
        """Exact fraction of all values above one of the tracked ``thresholds``."""
        return self.above[threshold] / max(self.total, 1)


class JacobianCollector:
    """A ``visiting_attention`` visitor: one histogram per attention family of the visited maps."""

    def __init__(self, rows_per_map: int = 64, seed: int = 0, chunk: int = 8):
        self.rows_per_map, self.chunk = rows_per_map, chunk
        self.generator = torch.Generator().manual_seed(seed)
        self.histograms: dict[str, LogHistogram] = {}

    def __call__(self, site, amap, real: torch.Tensor) -> None:
        if amap.family not in FAMILIES:
            return
        probs = amap.probs  # [B, H, N, N]
        B, H, N, _ = probs.shape
        allowed = (amap.allowed & real[:, None, None, :]).expand(B, H, N, N)
        rows = torch.nonzero(real[:, None, :].expand(B, H, N).cpu())  # (b, h, i) of real queries
        pick = torch.randperm(len(rows), generator=self.generator)[: self.rows_per_map]
        b, h, i = rows[pick].to(probs.device).unbind(-1)
        histogram = self.histograms.setdefault(amap.family, LogHistogram())
        for start in range(0, len(b), self.chunk):
            sel = slice(start, start + self.chunk)
            mass = None if amap.row_mass is None else amap.row_mass[b[sel], h[sel], i[sel]]
            p, a = probs[b[sel], h[sel], i[sel]], allowed[b[sel], h[sel], i[sel]]
            histogram.add(jacobian_magnitudes(p, a, amap.family, mass))

    def summary_rows(self) -> list[dict]:
        return [
            {
                "family": family,
                "entries": hist.total,
                "max": hist.max,
                "median": hist.quantile(0.5),
                "p99": hist.quantile(0.99),
                "p99.9": hist.quantile(0.999),
                "fraction_above_1/4": hist.fraction_above(SOFTMAX_BOUND),
                "bound_1/4_holds": hist.max <= SOFTMAX_BOUND + 1e-12,
            }
            for family, hist in sorted(self.histograms.items())
        ]

    def histogram_rows(self) -> list[dict]:
        out = []
        for family, hist in sorted(self.histograms.items()):
            out.append({"family": family, "bin_low": 0.0, "bin_high": 0.0, "count": hist.zeros})
            out.append({"family": family, "bin_low": 0.0, "bin_high": float(hist.edges[0]), "count": hist.underflow})
            lows, highs = hist.edges[:-1].tolist(), hist.edges[1:].tolist()
            out += [
                {"family": family, "bin_low": lo, "bin_high": hi, "count": c}
                for lo, hi, c in zip(lows, highs, hist.counts.tolist())
                if c
            ]
            top = float(hist.edges[-1])
            out.append({"family": family, "bin_low": top, "bin_high": math.inf, "count": hist.overflow})
        return out
