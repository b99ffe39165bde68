"""GLUE's official metrics (torchmetrics), the metric each task is ranked by, and Table 5's average.

CoLA: Matthews correlation; MRPC and QQP: F1 of the positive class and accuracy; STS-B: Pearson and
Spearman correlation; the rest: accuracy. Values are fractions (0.8835), reports print them x100.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryF1Score, BinaryMatthewsCorrCoef, MulticlassAccuracy
from torchmetrics.regression import PearsonCorrCoef, SpearmanCorrCoef

from tasks.glue.formats import get_format

# The metric a task is selected and reported by (Table 5's convention: CoLA MCC, MRPC F1, QQP accuracy).
PRIMARY_METRIC = {"cola": "mcc", "mrpc": "f1", "stsb": "pearson"}

# Table 5's columns, in the paper's order; AVG is their plain mean with a missing value counted as 0
# (the paper's 1+elu row has no CoLA score and its AVG 70.00 is the sum of the other six over 7).
TABLE5_COLUMNS = ("mnli_m", "mnli_mm", "qnli", "qqp", "sst2", "mrpc", "cola")


class _NoNan:
    """A correlation that is 0 instead of NaN when a side is constant (an untrained regressor predicts one
    value): selecting the best checkpoint must be able to compare it."""

    def compute(self):
        return torch.nan_to_num(super().compute(), nan=0.0)


class Matthews(BinaryMatthewsCorrCoef):
    """Matthews correlation as GLUE scores it (scikit-learn): 0 when either side is constant. torchmetrics
    returns an epsilon-regularised limit there instead (+0.13 for always predicting the majority of a 2:1 set),
    which would credit a classifier that has collapsed to one class."""

    def compute(self) -> torch.Tensor:
        tn, fp, fn, tp = self.confmat.reshape(-1).double()
        denominator = ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)).sqrt()
        if denominator == 0:
            return torch.zeros((), device=self.confmat.device)
        return ((tp * tn - fp * fn) / denominator).float()


class Pearson(_NoNan, PearsonCorrCoef):
    pass


class Spearman(_NoNan, SpearmanCorrCoef):
    pass


def primary_metric(task: str) -> str:
    get_format(task)
    return PRIMARY_METRIC.get(task, "accuracy")


def glue_metrics(task: str) -> MetricCollection:
    """Fresh metrics for ``task``: ``update(preds, target)`` with class indices (scores for STS-B)."""
    fmt = get_format(task)
    if fmt.is_regression:
        with warnings.catch_warnings():  # "will save all targets and predictions": dev sets are small
            warnings.filterwarnings("ignore", message=".*save all targets and predictions", category=UserWarning)
            return MetricCollection({"pearson": Pearson(), "spearman": Spearman()})
    if fmt.num_classes == 2:
        metrics = {"accuracy": BinaryAccuracy()}
        if task == "cola":
            metrics["mcc"] = Matthews()
        if task in ("mrpc", "qqp"):
            metrics["f1"] = BinaryF1Score()
        return MetricCollection(metrics)
    return MetricCollection({"accuracy": MulticlassAccuracy(num_classes=fmt.num_classes, average="micro")})


def table5_average(scores: Mapping[str, float | None]) -> float:
    """Table 5's AVG: the mean over its seven columns, a missing or non-finite score counting as 0."""
    unknown = sorted(set(scores) - set(TABLE5_COLUMNS))
    if unknown:
        raise ValueError(f"unknown Table 5 column(s) {unknown}; valid columns: {list(TABLE5_COLUMNS)}")
    values = [scores.get(c) for c in TABLE5_COLUMNS]
    return sum(v for v in values if v is not None and math.isfinite(v)) / len(TABLE5_COLUMNS)
