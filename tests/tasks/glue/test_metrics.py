"""GLUE metrics agree with the reference implementations; Table 5's average follows the paper's convention."""
import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from tasks.glue.metrics import glue_metrics, primary_metric, table5_average


def computed(task, preds, target, chunks=3):
    metrics = glue_metrics(task)
    for p, t in zip(np.array_split(preds, chunks), np.array_split(target, chunks)):  # updates accumulate
        metrics.update(torch.as_tensor(p), torch.as_tensor(t))
    return {k: float(v) for k, v in metrics.compute().items()}


def test_classification_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 2, 200)
    preds = np.where(rng.random(200) < 0.7, target, 1 - target)
    cola = computed("cola", preds, target)
    assert cola["mcc"] == pytest.approx(matthews_corrcoef(target, preds), abs=1e-6)
    mrpc = computed("mrpc", preds, target)
    assert mrpc["f1"] == pytest.approx(f1_score(target, preds), abs=1e-6)
    assert mrpc["accuracy"] == pytest.approx(accuracy_score(target, preds), abs=1e-6)
    target3 = rng.integers(0, 3, 200)
    assert computed("mnli", np.roll(target3, 1), target3)["accuracy"] == pytest.approx(
        accuracy_score(target3, np.roll(target3, 1)), abs=1e-6)


def test_regression_metrics_match_scipy():
    rng = np.random.default_rng(1)
    target = rng.uniform(0, 5, 100).astype(np.float32)
    preds = (target + rng.normal(0, 1.5, 100)).astype(np.float32)
    stsb = computed("stsb", preds, target)
    assert stsb["pearson"] == pytest.approx(pearsonr(preds, target)[0], abs=1e-4)
    assert stsb["spearman"] == pytest.approx(spearmanr(preds, target)[0], abs=1e-4)


def test_primary_metrics():
    assert [primary_metric(t) for t in ("cola", "mrpc", "qqp", "stsb", "sst2", "mnli")] == [
        "mcc", "f1", "accuracy", "pearson", "accuracy", "accuracy"]
    with pytest.raises(ValueError, match="valid choices"):
        primary_metric("wnli")


@pytest.mark.parametrize(("row", "avg"), [
    ((79.37, 79.07, 87.79, 88.04, 90.25, 88.35, 38.63), 78.79),  # Vanilla
    ((79.06, 79.93, 87.00, 88.61, 91.17, 84.50, 45.38), 79.38),  # TransNormer T1
    ((74.87, 75.37, 82.59, 86.9, 87.27, 83.03, None), 70.00),  # 1+elu: no CoLA score, counted as 0
])
def test_table5_average_reproduces_the_papers(row, avg):
    columns = ("mnli_m", "mnli_mm", "qnli", "qqp", "sst2", "mrpc", "cola")
    assert table5_average(dict(zip(columns, row))) == pytest.approx(avg, abs=0.005)


def test_constant_predictions_score_zero_not_nan():
    with pytest.warns(UserWarning):  # torchmetrics warns about the zero variance
        stsb = computed("stsb", np.full(20, 2.5, dtype=np.float32), np.linspace(0, 5, 20, dtype=np.float32), chunks=1)
    assert stsb == {"pearson": 0.0, "spearman": 0.0}
    assert computed("cola", np.ones(20, dtype=int), np.arange(20) % 2, chunks=1)["mcc"] == 0.0


@pytest.mark.parametrize("constant", [0, 1])
def test_matthews_of_a_collapsed_classifier_is_zero_as_scikit_learn(constant):
    target = (np.arange(30) % 3 > 0).astype(int)  # 2:1, as CoLA's dev set
    preds = np.full(30, constant)
    assert matthews_corrcoef(target, preds) == 0.0
    assert computed("cola", preds, target)["mcc"] == 0.0
    almost = preds.copy()
    almost[:2] = 1 - constant  # one class predicted twice: a small correlation, the same as scikit-learn's
    assert computed("cola", almost, target)["mcc"] == pytest.approx(matthews_corrcoef(target, almost), abs=1e-6)
