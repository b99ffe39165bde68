"""Reports: the paper's tables and plots from run records, beside the paper's numbers.

``python -m harness.report [--results results] [--out results/report] [--scale cpu ...] [--tables table4 ...]``
reads every run record under ``<results>/runs``, the benchmark and diagnostics outputs under
``<results>/bench`` and ``<results>/analysis``, and the paper's numbers in ``results/paper``, and writes
Markdown, CSV and PNG under ``<out>`` with an index page per scale (see :mod:`harness.report.report`).
``./reproduce.sh`` runs the sweeps that feed them (:mod:`harness.reproduce`).
"""
from __future__ import annotations

from typing import Any

__all__ = ["build_report"]


def __getattr__(name: str) -> Any:
    # imported on first use: ./reproduce.sh --help should not wait for torch and matplotlib
    if name == "build_report":
        from harness.report.report import build_report

        return build_report
    raise AttributeError(f"module 'harness.report' has no attribute {name!r}")
