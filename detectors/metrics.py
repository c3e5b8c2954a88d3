"""The metrics this field reports for synthetic-media detectors, with bootstrap intervals.

Scores are probabilities that an item is synthetic (label 1); real is label 0. Everything
is NumPy; the tests check each metric against scikit-learn where it has one.

- ``auc`` (ROC AUC, ties counted half), ``ap`` (average precision, sklearn's step rule),
  ``eer`` (equal error rate, interpolated on the ROC), ``tpr_at_fpr`` (best TPR with FPR at
  most the target), accuracy / real accuracy / synthetic accuracy at a threshold,
  ``ece`` (expected calibration error over equal-width bins) and ``brier``;
- :func:`bootstrap_ci`: percentile intervals over resampled items (resamples with one class
  are redrawn), :func:`calibrate_threshold`: the threshold that keeps FPR at a target on
  validation data — stored in a detector's config so a scan uses it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "MetricReport",
    "accuracy",
    "ap",
    "auc",
    "binary_report",
    "bootstrap_ci",
    "brier",
    "calibrate_threshold",
    "ece",
    "eer",
    "roc_curve",
    "tpr_at_fpr",
]


def _check(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (synthetic)")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinity")
    return y, s


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.size) and 0 < int(y.sum()) < y.size


def auc(labels: Any, scores: Any) -> float:
    """ROC AUC via ranks (Mann-Whitney U), ties counted half; NaN with one class."""
    y, s = _check(labels, scores)
    if not _both_classes(y):
        return math.nan
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), thresholds decreasing, starting at +inf (nothing flagged)."""
    y, s = _check(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s_sorted))[0], y.size - 1]
    tps = np.cumsum(y_sorted)[distinct]
    fps = (distinct + 1) - tps
    n_pos, n_neg = max(int(y.sum()), 1), max(int(y.size - y.sum()), 1)
    tpr = np.r_[0.0, tps / n_pos]
    fpr = np.r_[0.0, fps / n_neg]
    thr = np.r_[np.inf, s_sorted[distinct]]
    return fpr, tpr, thr


def ap(labels: Any, scores: Any) -> float:
    """Average precision: Σ (R_n − R_{n−1}) P_n over thresholds (no interpolation)."""
    y, s = _check(labels, scores)
    if not y.sum():
        return math.nan
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s_sorted))[0], y.size - 1]
    tps = np.cumsum(y_sorted)[distinct]
    precision = tps / (distinct + 1)
    recall = tps / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def eer(labels: Any, scores: Any) -> float:
    """Equal error rate: where FPR equals FNR on the ROC, linearly interpolated."""
    y, s = _check(labels, scores)
    if not _both_classes(y):
        return math.nan
    fpr, tpr, _ = roc_curve(y, s)
    fnr = 1.0 - tpr
    diff = fpr - fnr  # increases from -1 to +1 along the curve
    i = int(np.searchsorted(diff, 0.0))
    if i == 0:
        return float(fpr[0])
    if i >= diff.size:
        return float(fpr[-1])
    d0, d1 = diff[i - 1], diff[i]
    w = 0.0 if d1 == d0 else -d0 / (d1 - d0)
    return float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]))


def tpr_at_fpr(labels: Any, scores: Any, target: float) -> float:
    """The highest TPR reachable with FPR ≤ ``target`` (no interpolation: a real threshold)."""
    y, s = _check(labels, scores)
    if not _both_classes(y):
        return math.nan
    fpr, tpr, _ = roc_curve(y, s)
    ok = fpr <= target + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def accuracy(labels: Any, scores: Any, threshold: float = 0.5) -> dict[str, float]:
    """Overall, real (specificity) and synthetic (recall) accuracy at ``score >= threshold``."""
    y, s = _check(labels, scores)
    pred = (s >= threshold).astype(np.int64)
    real, synth = y == 0, y == 1
    return {
        "accuracy": float((pred == y).mean()) if y.size else math.nan,
        "real_accuracy": float((pred[real] == 0).mean()) if real.any() else math.nan,
        "synthetic_accuracy": float((pred[synth] == 1).mean()) if synth.any() else math.nan,
    }


def ece(labels: Any, scores: Any, bins: int = 15) -> float:
    """Expected calibration error of P(synthetic) over ``bins`` equal-width bins."""
    y, s = _check(labels, scores)
    if not y.size:
        return math.nan
    idx = np.minimum((s * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() / y.size * abs(y[m].mean() - s[m].mean())
    return float(total)


def brier(labels: Any, scores: Any) -> float:
    y, s = _check(labels, scores)
    return float(np.mean((s - y) ** 2)) if y.size else math.nan


def calibrate_threshold(labels: Any, scores: Any, *, target_fpr: float = 0.05) -> float:
    """The lowest threshold whose FPR on these (validation) items is at most ``target_fpr``."""
    if not 0.0 <= target_fpr <= 1.0:
        raise ValueError(f"target_fpr must be in [0, 1], got {target_fpr}")
    y, s = _check(labels, scores)
    real = np.sort(s[y == 0])
    if not real.size:
        raise ValueError("calibration needs real items")
    allowed = math.floor(target_fpr * real.size + 1e-9)  # real items allowed above threshold
    if allowed >= real.size:
        return float(real[0])
    # flag strictly above the (allowed+1)-th highest real score
    cut = real[real.size - allowed - 1]
    return float(np.nextafter(cut, np.inf))


_POINT_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "auc": auc,
    "ap": ap,
    "eer": eer,
    "tpr_at_fpr_1": lambda y, s: tpr_at_fpr(y, s, 0.01),
    "tpr_at_fpr_5": lambda y, s: tpr_at_fpr(y, s, 0.05),
    "ece": ece,
    "brier": brier,
}


def bootstrap_ci(
    labels: Any,
    scores: Any,
    metric: Callable[[np.ndarray, np.ndarray], float],
    *,
    n: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of ``metric`` over ``n`` resamples of the items (with replacement)."""
    y, s = _check(labels, scores)
    if y.size < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        idx = rng.integers(0, y.size, y.size)
        v = metric(y[idx], s[idx])
        if not math.isnan(v):
            values.append(v)
    if len(values) < max(10, n // 10):
        return (math.nan, math.nan)
    lo, hi = np.percentile(values, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return (float(lo), float(hi))


@dataclass(frozen=True)
class MetricReport:
    n: int
    n_real: int
    n_synthetic: int
    threshold: float
    values: Mapping[str, float]
    ci: Mapping[str, tuple[float, float]]

    def to_json(self) -> dict[str, Any]:
        def clean(v: float) -> float | None:
            return None if isinstance(v, float) and math.isnan(v) else round(v, 6)

        return {
            "n": self.n,
            "n_real": self.n_real,
            "n_synthetic": self.n_synthetic,
            "threshold": self.threshold,
            **{k: clean(v) for k, v in self.values.items()},
            "ci95": {k: [clean(lo), clean(hi)] for k, (lo, hi) in self.ci.items()},
        }


def binary_report(
    labels: Any,
    scores: Any,
    *,
    threshold: float = 0.5,
    bootstrap: int = 1000,
    seed: int = 0,
) -> MetricReport:
    """Every metric above at once, with 95% bootstrap intervals for AUC, AP, EER, TPRs and the
    error rates (FPR, FNR). A set with one class gets the rate it has; the rest are NaN."""
    y, s = _check(labels, scores)
    values = {k: f(y, s) for k, f in _POINT_METRICS.items()}
    values.update(accuracy(y, s, threshold))
    # the error rates at the threshold: on a set with one class only, the one that exists
    values["fpr"] = 1.0 - values["real_accuracy"]
    values["fnr"] = 1.0 - values["synthetic_accuracy"]
    ci: dict[str, tuple[float, float]] = {}
    if bootstrap:
        for k in ("auc", "ap", "eer", "tpr_at_fpr_5"):
            ci[k] = bootstrap_ci(y, s, _POINT_METRICS[k], n=bootstrap, seed=seed)
        ci["accuracy"] = bootstrap_ci(
            y, s, lambda a, b: accuracy(a, b, threshold)["accuracy"], n=bootstrap, seed=seed
        )
        for k, acc in (("fpr", "real_accuracy"), ("fnr", "synthetic_accuracy")):
            ci[k] = bootstrap_ci(
                y,
                s,
                lambda a, b, acc=acc: 1.0 - accuracy(a, b, threshold)[acc],
                n=bootstrap,
                seed=seed,
            )
    return MetricReport(
        n=int(y.size),
        n_real=int((y == 0).sum()),
        n_synthetic=int(y.sum()),
        threshold=float(threshold),
        values=values,
        ci=ci,
    )
