"""Run a diagnostic over a source's batches and return its tables (pandas), ready to write or plot."""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from harness.analyze.capture import visiting_attention
from harness.analyze.locality import DEFAULT_RATIOS, LocalityCurves
from harness.analyze.proposition import HISTOGRAM_COLUMNS, SUMMARY_COLUMNS, JacobianCollector
from harness.analyze.sources import AnalysisSource


def _run(source: AnalysisSource, visitor) -> None:
    with visiting_attention(source.model, visitor):
        for forward in source.forwards():
            forward()


def locality_table(source: AnalysisSource, ratios: Sequence[float] = DEFAULT_RATIOS) -> pd.DataFrame:
    """Columns ``label, backend, seed, layer, mixer, ratio, score`` (layer ``all``: the mean over layers)."""
    curves = LocalityCurves(ratios)
    _run(source, curves)
    frame = pd.DataFrame(curves.rows()).assign(label=source.label, backend=source.backend, seed=source.seed)
    return frame[["label", "backend", "seed", "layer", "mixer", "ratio", "score"]]


def proposition_tables(
    source: AnalysisSource, rows_per_map: int = 64, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary per attention family, histogram per family), both with a ``label`` column first."""
    collector = JacobianCollector(rows_per_map=rows_per_map, seed=seed)
    _run(source, collector)
    summary = pd.DataFrame(collector.summary_rows(), columns=SUMMARY_COLUMNS)
    histogram = pd.DataFrame(collector.histogram_rows(), columns=HISTOGRAM_COLUMNS)
    for table in (summary, histogram):
        table.insert(0, "label", source.label)
    return summary, histogram
