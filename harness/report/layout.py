"""Where the report's inputs and outputs live under one results folder."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """Where everything lives under one results folder (``results/`` by default)."""

    root: Path = Path("results")

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def report(self) -> Path:
        return self.root / "report"

    def bench_dir(self, scale: str) -> Path:
        return self.root / "bench" / scale / "table7"

    def analysis_dir(self, scale: str, experiment: str) -> Path:
        """Where the diagnostics of an experiment's runs go (``python -m harness.analyze ... --out``)."""
        return self.root / "analysis" / scale / experiment

    def fig2_dir(self, scale: str) -> Path:
        return self.analysis_dir(scale, "fig2")

    def table2_dir(self, scale: str) -> Path:
        return self.analysis_dir(scale, "table2")

    def bench_csv(self, scale: str) -> Path:
        return self.bench_dir(scale) / "table7.csv"

    def locality_csv(self, scale: str) -> Path:
        return self.fig2_dir(scale) / "locality.csv"

    def gradient_csv(self, scale: str) -> Path:
        return self.table2_dir(scale) / "table2.csv"

    def other_scales(self) -> set[str]:
        """Scales that have benchmark or diagnostics outputs."""
        found = set()
        for folder in (self.root / "bench", self.root / "analysis"):
            if folder.is_dir():
                found |= {p.name for p in folder.iterdir() if p.is_dir()}
        return found
