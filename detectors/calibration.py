"""Calibration on the user's own data: a map from a detector's P(synthetic) to a calibrated one.

A published detector's probabilities mean little on data unlike its training set, and a
threshold from a paper does not keep the false-positive rate a user needs. ``deepaudit
detectors calibrate DIR --data MANIFEST`` fits, on a labelled set of the user's media:

- a **map**: Platt scaling (a logistic regression on the logit of the detector's score,
  against Platt's smoothed targets, so a perfectly separated set still gives a finite
  slope) or isotonic regression (monotone, piecewise linear between fitted points);
- a **threshold** on the calibrated score that keeps the false-positive rate at a target;

and stores them in ``calibration.json`` beside the detector's ``config.json``, which is never
touched: deleting ``calibration.json`` (or ``calibrate --reset``) gives the original back.
Loading a folder applies the map to every score (``Detector.reduce``).

The reported "after" figures are cross-fitted (each fold's scores mapped by a map fitted on
the other folds), so they are not flattered by fitting and measuring on the same items; the
map stored is fitted on all items. Intervals are percentile bootstrap intervals.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from deepaudit.detectors.metrics import bootstrap_ci, calibrate_threshold, ece
from deepaudit.errors import DeepauditError

__all__ = [
    "CALIBRATION_NAME",
    "Calibration",
    "fit_calibration",
    "read_calibration",
    "remove_calibration",
    "write_calibration",
]

CALIBRATION_NAME = "calibration.json"
FORMAT = "deepaudit-calibration/1"
Method = Literal["platt", "isotonic"]
_EPS = 1e-12


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class Calibration:
    """A fitted map and threshold (plain numbers: no pickle)."""

    method: Method
    params: dict[str, Any]  # platt: a, b; isotonic: x, y (increasing x)
    threshold: float  # on the calibrated score
    target_fpr: float
    fitted_on: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)

    def apply(self, p: Any) -> np.ndarray:
        """Calibrated P(synthetic) for raw scores ``p`` (any shape)."""
        p = np.asarray(p, np.float64)
        if self.method == "platt":
            z = self.params["a"] * _logit(p) + self.params["b"]
            return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
        return np.interp(p, self.params["x"], self.params["y"])

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "method": self.method,
            "params": self.params,
            "threshold": self.threshold,
            "target_fpr": self.target_fpr,
            "fitted_on": self.fitted_on,
            "report": self.report,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], source: Path | str = "calibration") -> Calibration:
        try:
            if d.get("format") != FORMAT:
                raise ValueError(f"format {d.get('format')!r}")
            method = d["method"]
            params = d["params"]
            if method == "platt":
                params = {"a": float(params["a"]), "b": float(params["b"])}
                ok = all(math.isfinite(v) for v in params.values())
            elif method == "isotonic":
                params = {
                    "x": [float(v) for v in params["x"]],
                    "y": [float(v) for v in params["y"]],
                }
                x = np.asarray(params["x"])
                ok = len(x) == len(params["y"]) >= 1 and bool(np.all(np.diff(x) >= 0))
            else:
                raise ValueError(f"method {method!r}")
            if not ok:
                raise ValueError("parameters are not finite or not increasing")
            return cls(
                method=method,
                params=params,
                threshold=float(d["threshold"]),
                target_fpr=float(d["target_fpr"]),
                fitted_on=dict(d.get("fitted_on") or {}),
                report=dict(d.get("report") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DeepauditError(f"{source}: not a valid calibration ({exc})") from None


def _fit_map(p: np.ndarray, y: np.ndarray, method: Method) -> dict[str, Any]:
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        # Platt (1999): maximum likelihood against smoothed targets (N+ + 1)/(N+ + 2) and
        # 1/(N- + 2), so a detector that separates the set perfectly still gets a finite
        # slope; soft targets as each item twice, weighted t and 1 - t
        n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
        t = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
        z = _logit(p)[:, None]
        lr = LogisticRegression(C=1e6, max_iter=5000)
        lr.fit(
            np.concatenate([z, z]),
            np.r_[np.ones(len(z)), np.zeros(len(z))],
            sample_weight=np.r_[t, 1 - t],
        )
        return {"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    raise DeepauditError(f"calibration method must be platt or isotonic, got {method!r}")


def _map(p: np.ndarray, method: Method, params: dict[str, Any]) -> np.ndarray:
    return Calibration(method, params, 0.5, 0.0).apply(p)


def _fpr_tpr(y: np.ndarray, s: np.ndarray, thr: float) -> tuple[float, float]:
    real, synth = s[y == 0], s[y == 1]
    return float((real >= thr).mean()), float((synth >= thr).mean())


def fit_calibration(
    scores: Any,
    labels: Any,
    *,
    method: Method = "platt",
    target_fpr: float = 0.01,
    threshold_before: float = 0.5,
    folds: int = 5,
    seed: int = 0,
    bootstrap: int = 1000,
    fitted_on: dict[str, Any] | None = None,
) -> Calibration:
    """Fit a map and a threshold on raw scores with labels (1 = synthetic), with the report:
    ECE and the threshold's FPR/TPR before and after (cross-fitted), with 95% intervals."""
    p = np.asarray(scores, np.float64)
    y = np.asarray(labels, np.int64)
    keep = np.isfinite(p)
    p, y = p[keep], y[keep]
    n_real, n_synth = int((y == 0).sum()), int((y == 1).sum())
    if min(n_real, n_synth) < max(2, folds):
        raise DeepauditError(
            f"calibration needs at least {max(2, folds)} real and {max(2, folds)} synthetic "
            f"scored items; got {n_real} real and {n_synth} synthetic"
        )
    if not 0.0 < target_fpr < 1.0:
        raise DeepauditError(f"--target-fpr must be between 0 and 1, got {target_fpr}")
    # cross-fitted calibrated scores, stratified folds
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), np.int64)
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        fold[rng.permutation(idx)] = np.arange(len(idx)) % folds
    cross = np.empty(len(y))
    for f in range(folds):
        test = fold == f
        cross[test] = _map(p[test], method, _fit_map(p[~test], y[~test], method))
    params = _fit_map(p, y, method)
    calibrated = _map(p, method, params)
    thr = calibrate_threshold(y, calibrated, target_fpr=target_fpr)

    def thr_at(yy: np.ndarray, ss: np.ndarray) -> float:
        return calibrate_threshold(yy, ss, target_fpr=target_fpr)

    fpr_b, tpr_b = _fpr_tpr(y, p, threshold_before)
    fpr_a, tpr_a = _fpr_tpr(y, cross, thr_at(y, cross))
    ci = {"n": bootstrap, "seed": seed}

    def ci95(metric: Any, s: np.ndarray) -> list[float]:
        return [round(v, 6) for v in bootstrap_ci(y, s, metric, n=bootstrap, seed=seed)]

    report = {
        "items": {"real": n_real, "synthetic": n_synth},
        "before": {
            "ece": round(ece(y, p), 6),
            "ece_ci95": ci95(ece, p),
            "threshold": threshold_before,
            "fpr": round(fpr_b, 6),
            "fpr_ci95": ci95(lambda yy, ss: _fpr_tpr(yy, ss, threshold_before)[0], p),
            "tpr": round(tpr_b, 6),
            "tpr_ci95": ci95(lambda yy, ss: _fpr_tpr(yy, ss, threshold_before)[1], p),
        },
        "after": {
            "ece": round(ece(y, cross), 6),
            "ece_ci95": ci95(ece, cross),
            "threshold": thr,
            "threshold_ci95": ci95(thr_at, calibrated),
            "fpr": round(fpr_a, 6),
            "tpr": round(tpr_a, 6),
            "tpr_ci95": ci95(lambda yy, ss: _fpr_tpr(yy, ss, thr_at(yy, ss))[1], cross),
            "cross_fitted_folds": folds,
        },
        "bootstrap": ci,
    }
    return Calibration(
        method=method,
        params=params,
        threshold=float(thr),
        target_fpr=float(target_fpr),
        fitted_on={
            **(fitted_on or {}),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "skipped_unscored": int((~keep).sum()),
        },
        report=report,
    )


def read_calibration(root: str | os.PathLike[str]) -> Calibration | None:
    """The calibration stored in a detector folder, or None when it has none."""
    path = Path(root) / CALIBRATION_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DeepauditError(f"{path}: unreadable calibration ({exc})") from None
    return Calibration.from_json(data, path)


def write_calibration(root: str | os.PathLike[str], cal: Calibration) -> Path:
    path = Path(root) / CALIBRATION_NAME
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(cal.to_json(), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def remove_calibration(root: str | os.PathLike[str]) -> bool:
    """Back to the detector as imported or trained; True if there was a calibration."""
    path = Path(root) / CALIBRATION_NAME
    if path.is_file():
        path.unlink()
        return True
    return False
