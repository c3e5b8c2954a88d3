"""Detector metrics against scikit-learn and hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from deepaudit.detectors.metrics import (
    accuracy,
    ap,
    auc,
    binary_report,
    bootstrap_ci,
    brier,
    calibrate_threshold,
    ece,
    eer,
    roc_curve,
    tpr_at_fpr,
)


@pytest.fixture(params=[0, 1, 2])
def data(request):
    rng = np.random.default_rng(request.param)
    y = rng.integers(0, 2, 300)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    if request.param == 2:
        s = np.round(s, 1)  # many ties
    return y, s


def test_against_sklearn(data):
    y, s = data
    assert auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert ap(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    assert brier(y, s) == pytest.approx(skm.brier_score_loss(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s)
    sk_fpr, sk_tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    assert np.allclose(fpr, sk_fpr) and np.allclose(tpr, sk_tpr)
    assert accuracy(y, s, 0.5)["accuracy"] == pytest.approx(skm.accuracy_score(y, s >= 0.5))
    assert accuracy(y, s, 0.5)["synthetic_accuracy"] == pytest.approx(skm.recall_score(y, s >= 0.5))
    target = 0.05
    best = max(t for f, t in zip(sk_fpr, sk_tpr, strict=True) if f <= target)
    assert tpr_at_fpr(y, s, target) == pytest.approx(best)


def test_hand_computed_example():
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    s = [0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9]
    assert auc(y, s) == pytest.approx(15 / 16)  # one real above one synthetic
    assert eer(y, s) == pytest.approx(0.25)
    assert tpr_at_fpr(y, s, 0.0) == pytest.approx(0.75)
    assert accuracy(y, s, 0.5) == {
        "accuracy": 0.75,
        "real_accuracy": 0.75,
        "synthetic_accuracy": 0.75,
    }
    # ECE with 2 bins: [0,0.5): y mean 1/4, s mean 0.25 → 0; [0.5,1]: y 3/4, s 0.75 → 0
    assert ece(y, s, bins=2) == pytest.approx(0.0)
    assert ece([1, 0], [0.9, 0.9], bins=10) == pytest.approx(0.4)


def test_perfect_and_one_class():
    assert auc([0, 1], [0.2, 0.8]) == 1.0 and eer([0, 1], [0.2, 0.8]) == 0.0
    assert math.isnan(auc([1, 1], [0.2, 0.8])) and math.isnan(eer([0, 0], [0.1, 0.2]))
    with pytest.raises(ValueError, match="0 \\(real\\) or 1"):
        auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        auc([0, 1], [0.1, float("nan")])


def test_calibrated_threshold_keeps_fpr(data):
    y, s = data
    for target in (0.01, 0.05, 0.2):
        t = calibrate_threshold(y, s, target_fpr=target)
        fpr = ((s >= t) & (y == 0)).sum() / (y == 0).sum()
        assert fpr <= target
    with pytest.raises(ValueError, match="target_fpr"):
        calibrate_threshold(y, s, target_fpr=2)


def test_bootstrap_interval_covers_the_population_value():
    rng = np.random.default_rng(0)
    covered = 0
    trials = 40
    for k in range(trials):
        y = rng.integers(0, 2, 200)
        s = rng.normal(y * 1.0, 1.0)  # population AUC = Phi(1/sqrt(2)) ≈ 0.7602
        lo, hi = bootstrap_ci(y, s, auc, n=300, seed=k)
        covered += lo <= 0.7602 <= hi
    assert covered >= trials * 0.85


def test_report_json(data):
    y, s = data
    rep = binary_report(y, s, bootstrap=200).to_json()
    assert rep["n"] == 300 and rep["n_real"] + rep["n_synthetic"] == 300
    assert rep["ci95"]["auc"][0] <= rep["auc"] <= rep["ci95"]["auc"][1]
    for k in ("auc", "ap", "eer", "tpr_at_fpr_1", "tpr_at_fpr_5", "ece", "brier", "real_accuracy"):
        assert k in rep
