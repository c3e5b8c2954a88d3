"""A calibrated detector is judged at its calibrated threshold, everywhere.

Loading a folder with ``calibration.json`` makes every score a calibrated one; the threshold
in ``config.json`` is on the detector's own (raw) scores. Comparing one with the other gives
a false-positive rate that is neither the one calibrated for nor the detector's.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from deepaudit.audit.fairness import calibrated_threshold
from deepaudit.cli import app
from deepaudit.detectors import load_detector
from deepaudit.detectors.data import load_items
from deepaudit.media import read_image

runner = CliRunner()


def _cli(*args: str) -> dict:
    done = runner.invoke(app, [*args, "--json"])
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def test_evaluate_reports_the_calibrated_fpr_at_the_calibrated_threshold(
    detector_data, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    det = tmp_path / "det"
    _cli("detectors", "train", "--data", str(detector_data), "--detector", "spectral",
         "--out", str(det), "--no-track")  # fmt: skip
    # calibrate on every item for FPR 0.25: 16 of the 64 real items above the threshold
    cal = _cli("detectors", "calibrate", str(det), "--data", str(detector_data),
               "--split", "all", "--target-fpr", "0.25")  # fmt: skip
    raw_threshold = json.loads((det / "config.json").read_text())["threshold"]
    assert cal["threshold"] != pytest.approx(raw_threshold)  # two scales, two thresholds
    # the same items, scored as calibrate scored them (files as they are)
    ev = _cli("detectors", "evaluate", "--detector", str(det), "--data", str(detector_data),
              "--split", "all", "--as-is", "--no-robustness", "--no-resize-audit",
              "--out", str(tmp_path / "ev"), "--no-track")  # fmt: skip
    assert ev["threshold"] == pytest.approx(cal["threshold"])
    assert ev["threshold_raw"] == pytest.approx(raw_threshold)
    n_real = sum(1 for i in load_items(detector_data) if i.label == 0)
    assert ev["overall"]["fpr"] == pytest.approx(0.25, abs=1.5 / n_real)
    # the fairness audit's default threshold is the one evaluate judged at
    assert calibrated_threshold(tmp_path / "ev" / "predictions.jsonl") == pytest.approx(
        cal["threshold"]
    )
    # and a loaded detector's decisions are at it too
    loaded = load_detector(det)
    real = [read_image(i.path) for i in load_items(detector_data) if i.label == 0]
    assert loaded.operating_threshold == pytest.approx(cal["threshold"])
    assert np.mean(loaded.predict(real)) == pytest.approx(0.25, abs=1.5 / n_real)
