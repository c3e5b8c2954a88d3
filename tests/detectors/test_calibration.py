"""Calibration on the user's data: the map, the threshold, the report, and its use at load."""

import json

import numpy as np
import pytest

from deepaudit.detectors.calibration import (
    Calibration,
    fit_calibration,
    read_calibration,
    remove_calibration,
    write_calibration,
)
from deepaudit.detectors.metrics import ece
from deepaudit.errors import DeepauditError


def _overconfident(n=600, seed=0):
    """Labels drawn from sigmoid(z); the detector reports sigmoid(3 z): overconfident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return 1 / (1 + np.exp(-3 * z)), y


def test_platt_undoes_overconfidence_and_keeps_the_target_fpr():
    p, y = _overconfident()
    cal = fit_calibration(p, y, method="platt", target_fpr=0.05, bootstrap=200)
    assert cal.params["a"] == pytest.approx(1 / 3, abs=0.08)  # the true map is z -> z
    rep = cal.report
    assert rep["after"]["ece"] < rep["before"]["ece"] / 2
    lo, hi = rep["after"]["ece_ci95"]
    assert lo <= rep["after"]["ece"] <= hi
    # the stored threshold keeps FPR at most the target on the data it was fitted on
    q = cal.apply(p)
    assert (q[y == 0] >= cal.threshold).mean() <= 0.05
    assert rep["after"]["threshold"] == cal.threshold
    assert rep["items"] == {"real": int((y == 0).sum()), "synthetic": int((y == 1).sum())}


def test_isotonic_is_monotone_and_better_calibrated():
    p, y = _overconfident(seed=1)
    cal = fit_calibration(p, y, method="isotonic", target_fpr=0.1, bootstrap=100)
    grid = np.linspace(0, 1, 101)
    assert np.all(np.diff(cal.apply(grid)) >= 0)
    assert ece(y, cal.apply(p)) < ece(y, p)


def test_calibration_round_trips_and_refuses_bad_files(tmp_path):
    p, y = _overconfident(200)
    cal = fit_calibration(p, y, bootstrap=50, fitted_on={"data": "m"})
    write_calibration(tmp_path, cal)
    back = read_calibration(tmp_path)
    assert np.allclose(back.apply(p), cal.apply(p)) and back.fitted_on["data"] == "m"
    bad = cal.to_json() | {"params": {"a": float("nan"), "b": 0}}
    (tmp_path / "calibration.json").write_text(json.dumps(bad))
    with pytest.raises(DeepauditError, match=r"calibration\.json: not a valid calibration"):
        read_calibration(tmp_path)
    assert remove_calibration(tmp_path) and read_calibration(tmp_path) is None


def test_too_few_items_of_a_class_is_a_clear_error():
    with pytest.raises(DeepauditError, match="at least 5 real and 5 synthetic"):
        fit_calibration([0.1, 0.2, 0.9, 0.8, 0.7, 0.6], [0, 0, 1, 1, 1, 1])


def test_a_loaded_detector_reports_calibrated_scores_and_keeps_the_raw(tmp_path, photo):
    from deepaudit.detectors import create_detector, load_detector

    det = create_detector("spectral", input_size=32)
    rng = np.random.default_rng(0)
    h, w = photo.shape[:2]
    real = [
        photo[y : y + 40, x : x + 40]
        for y, x in zip(rng.integers(0, h - 40, 20), rng.integers(0, w - 40, 20), strict=True)
    ]
    fake = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(20)]
    from deepaudit.detectors.base import LinearHead

    spec = det.input_spec()
    x = det.features(np.concatenate([spec.prepare(im) for im in real + fake]))
    det.head = LinearHead().fit(x, np.r_[np.zeros(20), np.ones(20)])
    det.save_pretrained(tmp_path / "d")
    raw = load_detector(tmp_path / "d").predict_proba(real + fake)
    cal = Calibration("platt", {"a": 0.5, "b": -1.0}, threshold=0.3, target_fpr=0.01)
    write_calibration(tmp_path / "d", cal)
    loaded = load_detector(tmp_path / "d")
    assert np.allclose(loaded.predict_proba(real + fake), cal.apply(raw))
    fs = loaded.reduce(np.array([raw[0]]), video=False)
    assert fs.threshold == 0.3 and fs.raw == pytest.approx(raw[0])
    assert fs.to_json()["raw"] == pytest.approx(raw[0])
    assert loaded.identity()["calibration"]["method"] == "platt"
    assert np.allclose(
        load_detector(tmp_path / "d", calibrated=False).predict_proba(real), raw[:20]
    )
