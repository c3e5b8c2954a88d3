"""Fairness of a detector across groups: per group, per intersection, gaps, with intervals.

Input: per-item scores (``predictions.jsonl`` from ``deepaudit detectors evaluate``, or a
scan's ``results.jsonl``) matched by id or path to a manifest that holds labels and attributes.

Per group (each value of each attribute) and per intersection of the attributes: n,
n_real, n_synthetic, AUC, AP, EER, and at the threshold FPR (real called synthetic), FNR
(synthetic missed), TPR, accuracy, selection rate — with 95% bootstrap intervals. A metric
a group cannot have (one class only, fewer than ``min_n`` items) is reported as ``None``
with the counts and the reason, never as a silent NaN, and the group is never dropped.

Gaps, over the intersectional groups: fairlearn's equalized-odds and demographic-parity
differences; FPR and FNR max − min and max ÷ min; worst-group AUC; and the metrics of
Lin et al. (CVPR 2024) / Ju et al. (WACV 2024), written out here so nobody has to guess:

- ``F_FPR`` = Σ_g |FPR_g − FPR|  (FPR over all items)
- ``F_EO``  = Σ_g Σ_{y∈{0,1}} |P(ŷ=1 | g, y) − P(ŷ=1 | y)|  (FPR and TPR deviations)
- ``F_MEO`` = max_{y∈{0,1}} (max_g − min_g) P(ŷ≠y | g, Y=y)  (largest error-rate gap)
- ``F_DP``  = max_g P(ŷ=1 | g) − min_g P(ŷ=1 | g)
- ``F_OAE`` = max_g Acc_g − min_g Acc_g

The FPR and FNR gaps also come as the signed difference between the worst and the best
group with a bootstrap interval (``fpr_gap``, ``fnr_gap``): an interval that includes 0
says the gap may be noise from small groups. Because those two groups are picked after
looking, with many groups the interval excludes 0 more often than it should; each gap also
carries ``chance``, the max − min gap groups of these sizes show at one equal rate from
sampling alone (mean, 95th percentile), and ``beyond_chance``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.detectors.metrics import ap, auc, bootstrap_ci, eer
from deepaudit.errors import DeepauditError

__all__ = [
    "FairnessReport",
    "GroupResult",
    "calibrated_threshold",
    "fairness_audit",
    "gap_interval",
    "gap_metrics",
    "load_predictions",
]

logger = logging.getLogger(__name__)


class FairnessError(DeepauditError):
    """Predictions, manifest or options that cannot be audited; the message says why."""


@dataclass
class Scored:
    labels: np.ndarray  # 1 synthetic, 0 real
    scores: np.ndarray
    attributes: list[dict[str, Any]]
    ids: list[str]
    unmatched: list[str] = field(default_factory=list)


def load_predictions(
    predictions: str | os.PathLike[str],
    manifest: str | os.PathLike[str] | None = None,
    *,
    detector: str | None = None,
) -> Scored:
    """Scores from predictions.jsonl (or a scan's results.jsonl), labels/attributes from the
    manifest (by id, else by path); predictions already carrying them need no manifest."""
    pred_path = Path(predictions)
    if not pred_path.is_file():
        raise FairnessError(f"{pred_path}: predictions file not found")
    rows = []
    with pred_path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise FairnessError(f"{pred_path}:{n}: not JSON ({exc.msg})") from None
    if not rows:
        raise FairnessError(f"{pred_path}: no predictions")
    by_id: dict[str, Any] = {}
    by_path: dict[str, Any] = {}
    if manifest is not None:
        from deepaudit.manifest import read_manifest

        m = read_manifest(manifest)
        for it in m.items:
            by_id[it.id] = it
            by_path[str(m.resolve(it).resolve())] = it
    labels, scores, attrs, ids, unmatched = [], [], [], [], []
    for r in rows:
        score = _score_of(r, detector, pred_path)
        item = by_id.get(str(r.get("id"))) if r.get("id") is not None else None
        if item is None and r.get("path"):
            item = by_path.get(str(Path(r["path"]).resolve()))
        if item is not None:
            label = 1 if item.label == "synthetic" else 0
            a = dict(item.attributes)
            iid = item.id
        elif manifest is None and "label" in r:
            label = (
                int(r["label"])
                if not isinstance(r["label"], str)
                else int(r["label"] == "synthetic")
            )
            a = dict(r.get("attributes") or {})
            iid = str(r.get("id", r.get("path")))
        else:
            unmatched.append(str(r.get("id") or r.get("path")))
            continue
        if score is None:
            continue  # unreadable file: no score
        labels.append(label)
        scores.append(score)
        attrs.append(a)
        ids.append(iid)
    if not labels:
        shown = ", ".join(unmatched[:5])
        raise FairnessError(
            f"{pred_path}: none of {len(rows)} predictions matched the manifest by id or path "
            f"(e.g. {shown})"
        )
    return Scored(np.asarray(labels), np.asarray(scores, dtype=np.float64), attrs, ids, unmatched)


def calibrated_threshold(
    predictions: str | os.PathLike[str], *, detector: str | None = None, default: float = 0.5
) -> float:
    """The threshold the detector was calibrated to, as recorded beside ``predictions``:
    evaluate's ``metrics.json`` or a scan's ``summary.json`` (``detector`` picks one of a
    scan's detectors; default its first). Audits at that threshold judge the detector as it
    is deployed; ``default`` when nothing is recorded."""
    folder = Path(predictions).parent
    for name in ("metrics.json", "summary.json"):
        p = folder / name
        if not p.is_file():
            continue
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            reason = f"not JSON ({exc.msg}); give the threshold explicitly"
            raise FairnessError(f"{p}: {reason}") from None
        if "threshold" in data:
            return float(data["threshold"])
        dets = data.get("detectors") or {}
        if dets:
            key = detector or next(iter(dets))
            if key in dets and "threshold" in dets[key]:
                return float(dets[key]["threshold"])
    return default


def _score_of(r: Mapping[str, Any], detector: str | None, where: Path) -> float | None:
    if "score" in r:
        return None if r["score"] is None else float(r["score"])
    scores = r.get("scores") or {}
    if not scores:
        return None
    if detector is None:
        if len(scores) > 1:
            raise FairnessError(
                f"{where}: several detectors ({', '.join(scores)}); pass --detector"
            )
        detector = next(iter(scores))
    if detector not in scores:
        raise FairnessError(
            f"{where}: no scores for detector {detector!r}; present: {', '.join(scores)}"
        )
    return scores[detector].get("score")


@dataclass
class GroupResult:
    group: dict[str, str]
    n: int
    n_real: int
    n_synthetic: int
    metrics: dict[str, float | None]
    ci95: dict[str, tuple[float | None, float | None]]
    notes: list[str]

    @property
    def name(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.group.items()) or "all"

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "name": self.name,
            "n": self.n,
            "n_real": self.n_real,
            "n_synthetic": self.n_synthetic,
            **self.metrics,
            "ci95": {k: list(v) for k, v in self.ci95.items()},
            "notes": self.notes,
        }


def _rates(y: np.ndarray, pred: np.ndarray) -> dict[str, float | None]:
    real, synth = y == 0, y == 1
    fpr = float(pred[real].mean()) if real.any() else None
    tpr = float(pred[synth].mean()) if synth.any() else None
    return {
        "fpr": fpr,
        "fnr": None if tpr is None else 1.0 - tpr,
        "tpr": tpr,
        "accuracy": float((pred == y).mean()) if y.size else None,
        "selection_rate": float(pred.mean()) if y.size else None,
    }


def _group_result(
    group: dict[str, str],
    y: np.ndarray,
    s: np.ndarray,
    threshold: float,
    *,
    min_n: int,
    bootstrap: int,
    seed: int,
) -> GroupResult:
    pred = (s >= threshold).astype(np.int64)
    n_real, n_synth = int((y == 0).sum()), int((y == 1).sum())
    notes: list[str] = []
    metrics: dict[str, float | None] = dict(_rates(y, pred))
    both = n_real > 0 and n_synth > 0
    for k, f in (("auc", auc), ("ap", ap), ("eer", eer)):
        v = f(y, s) if both else math.nan
        metrics[k] = None if math.isnan(v) else v
    if not both:
        only = "real" if n_real else "synthetic"
        notes.append(
            f"only {only} items ({y.size}): AUC, AP, EER and the rates of the missing class are n/a"
        )
    if y.size < min_n:
        notes.append(f"only {y.size} items (< {min_n}): estimates are unreliable")
    ci: dict[str, tuple[float | None, float | None]] = {}
    if bootstrap and y.size >= 2:

        def rate(name):
            return lambda yy, ss: _nan(_rates(yy, (ss >= threshold).astype(np.int64))[name])

        fns = {"fpr": rate("fpr"), "fnr": rate("fnr"), "accuracy": rate("accuracy")}
        if both:
            fns["auc"] = auc
        for k, f in fns.items():
            if metrics.get(k) is None:
                ci[k] = (None, None)
                continue
            lo, hi = bootstrap_ci(y, s, f, n=bootstrap, seed=seed)
            ci[k] = (None if math.isnan(lo) else lo, None if math.isnan(hi) else hi)
    return GroupResult(group, int(y.size), n_real, n_synth, metrics, ci, notes)


def _nan(v: float | None) -> float:
    return math.nan if v is None else v


def gap_metrics(
    y: np.ndarray,
    s: np.ndarray,
    groups: Sequence[str],
    threshold: float,
    *,
    bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Gap metrics across groups (labels per item in ``groups``); see the module docstring.
    ``bootstrap`` > 0 adds a 95% interval to the FPR and FNR gaps (:func:`gap_interval`)."""
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    pred = (s >= threshold).astype(np.int64)
    g = np.asarray(groups)
    names = sorted(set(groups))
    overall = _rates(y, pred)
    per = {name: _rates(y[g == name], pred[g == name]) for name in names}
    per_auc = {name: _nan(auc(y[g == name], s[g == name])) for name in names}

    def spread(key: str) -> tuple[float | None, float | None]:
        vals = [v[key] for v in per.values() if v[key] is not None]
        if len(vals) < 2:
            return None, None
        hi, lo = max(vals), min(vals)
        return hi - lo, (hi / lo if lo > 0 else None)

    def deviation(key: str) -> float | None:
        if overall[key] is None:
            return None
        return float(sum(abs(v[key] - overall[key]) for v in per.values() if v[key] is not None))

    fpr_d, fpr_r = spread("fpr")
    fnr_d, fnr_r = spread("fnr")
    acc_d, _ = spread("accuracy")
    sel_d, _ = spread("selection_rate")
    f_fpr = deviation("fpr")
    f_tpr = deviation("tpr")
    meo = [d for d in (fpr_d, fnr_d) if d is not None]
    aucs = [v for v in per_auc.values() if not math.isnan(v)]
    out: dict[str, Any] = {
        "groups": len(names),
        "fpr_max_minus_min": fpr_d,
        "fpr_max_over_min": fpr_r,
        "fnr_max_minus_min": fnr_d,
        "fnr_max_over_min": fnr_r,
        "worst_group_auc": min(aucs) if aucs else None,
        "worst_group": min(per_auc, key=lambda k: _nan_last(per_auc[k])) if aucs else None,
        "F_FPR": f_fpr,
        "F_EO": None if f_fpr is None or f_tpr is None else f_fpr + f_tpr,
        "F_MEO": max(meo) if meo else None,
        "F_DP": sel_d,
        "F_OAE": acc_d,
    }
    try:
        out["equalized_odds_difference"] = float(
            equalized_odds_difference(y, pred, sensitive_features=g)
        )
        out["demographic_parity_difference"] = float(
            demographic_parity_difference(y, pred, sensitive_features=g)
        )
    except Exception as exc:  # fairlearn refuses groups with one class for some metrics
        out["equalized_odds_difference"] = None
        out["demographic_parity_difference"] = None
        out["fairlearn_note"] = str(exc).splitlines()[0]
    if bootstrap:
        for rate, cls in (("fpr", 0), ("fnr", 1)):
            out[f"{rate}_gap"] = gap_interval(y, pred, g, cls, n=bootstrap, seed=seed)
    for k, v in list(out.items()):
        if isinstance(v, float) and math.isnan(v):
            out[k] = None
    return out


def gap_interval(
    y: np.ndarray, pred: np.ndarray, groups: np.ndarray, cls: int, *, n: int = 1000, seed: int = 0
) -> dict[str, Any] | None:
    """The signed error-rate difference between the worst and the best group (FPR for
    ``cls`` 0, FNR for 1) with a 95% bootstrap interval, each group resampled on its own.

    max − min over groups is never below 0, so its interval cannot say whether a gap is
    real; the signed difference of the two groups found here can, and when its interval
    includes 0 the gap may be sampling noise (small groups overstate gaps)."""
    wrong = {}
    for name in sorted(set(groups.tolist())):
        sel = (groups == name) & (y == cls)
        if sel.any():
            # FPR: real items flagged; FNR: synthetic items missed
            wrong[name] = (pred[sel] != cls).astype(np.float64)
    if len(wrong) < 2:
        return None
    worst = max(wrong, key=lambda k: wrong[k].mean())
    best = min(wrong, key=lambda k: wrong[k].mean())
    rng = np.random.default_rng(seed)

    def resampled(v: np.ndarray) -> np.ndarray:
        return v[rng.integers(0, v.size, (n, v.size))].mean(axis=1)

    diffs = resampled(wrong[worst]) - resampled(wrong[best])
    lo, hi = (float(x) for x in np.percentile(diffs, [2.5, 97.5]))
    difference = float(wrong[worst].mean() - wrong[best].mean())
    sizes = np.array([v.size for v in wrong.values()])
    pooled = float(np.concatenate(list(wrong.values())).mean())
    chance = gap_if_equal(sizes, pooled, seed=seed)
    return {
        "worst": worst,
        "best": best,
        "difference": difference,
        "ci95": [lo, hi],
        "ci_includes_0": bool(lo <= 0.0 <= hi),
        "n_worst": int(wrong[worst].size),
        "n_best": int(wrong[best].size),
        # the worst and best groups are picked after looking, so with many groups the
        # interval above excludes 0 more often than it should: the gap a detector with the
        # same rate in every group shows here, from sampling alone, is the fairer yardstick
        "chance": chance,
        "beyond_chance": bool(chance is not None and difference > chance["p95"]),
    }


def gap_if_equal(
    sizes: np.ndarray, rate: float, *, draws: int = 4000, seed: int = 0
) -> dict[str, float] | None:
    """The max − min error-rate gap that groups of these ``sizes`` show when every group has
    the same ``rate``, from sampling alone: its mean and 95th percentile over ``draws``
    binomial draws. A measured gap under the 95th percentile is what equal rates give one
    time in twenty or more."""
    sizes = np.asarray(sizes)
    sizes = sizes[sizes > 0]
    if sizes.size < 2:
        return None
    rates = np.random.default_rng(seed).binomial(sizes, rate, (draws, sizes.size)) / sizes
    gaps = rates.max(1) - rates.min(1)
    return {"mean": float(gaps.mean()), "p95": float(np.percentile(gaps, 95))}


def _nan_last(v: float) -> float:
    return math.inf if math.isnan(v) else v


@dataclass
class FairnessReport:
    threshold: float
    attributes: list[str]
    overall: GroupResult
    groups: dict[str, list[GroupResult]]  # attribute (or "a×b") → results
    gaps: dict[str, dict[str, Any]]
    warnings: list[str]
    unmatched: int
    fairlearn_check: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "attributes": self.attributes,
            "overall": self.overall.to_json(),
            "groups": {k: [g.to_json() for g in v] for k, v in self.groups.items()},
            "gaps": self.gaps,
            "warnings": self.warnings,
            "unmatched_predictions": self.unmatched,
            "fairlearn_check": self.fairlearn_check,
        }


def fairness_audit(
    data: Scored,
    attributes: Sequence[str],
    *,
    threshold: float = 0.5,
    min_n: int = 30,
    bootstrap: int = 1000,
    seed: int = 0,
) -> FairnessReport:
    """Group and intersectional metrics plus gap metrics for ``attributes``."""
    if not 0.0 <= threshold <= 1.0 or math.isnan(threshold):
        raise FairnessError(f"threshold must be in [0, 1], got {threshold}")
    if not attributes:
        raise FairnessError("give at least one attribute")
    present = sorted({k for a in data.attributes for k in a})
    missing = [a for a in attributes if not any(a in x for x in data.attributes)]
    if missing:
        raise FairnessError(
            f"attribute(s) {', '.join(missing)} not in the manifest; "
            f"present: {', '.join(present) or 'none'}"
        )
    y, s = data.labels, data.scores
    warnings: list[str] = []
    if data.unmatched:
        warnings.append(
            f"{len(data.unmatched)} predictions did not match the manifest (e.g. "
            f"{', '.join(data.unmatched[:3])}) and were left out"
        )
    value = {a: np.array([str(x.get(a, "n/a")) for x in data.attributes]) for a in attributes}
    overall = _group_result({}, y, s, threshold, min_n=min_n, bootstrap=bootstrap, seed=seed)
    groups: dict[str, list[GroupResult]] = {}
    gaps: dict[str, dict[str, Any]] = {}
    combos: list[tuple[str, ...]] = [(a,) for a in attributes]
    if len(attributes) > 1:
        combos.append(tuple(attributes))
    for combo in combos:
        key = " × ".join(combo)
        labels = np.array(["|".join(value[a][i] for a in combo) for i in range(len(y))])
        results = []
        for lab in sorted(set(labels)):
            sel = labels == lab
            group = dict(zip(combo, lab.split("|"), strict=True))
            r = _group_result(
                group, y[sel], s[sel], threshold, min_n=min_n, bootstrap=bootstrap, seed=seed
            )
            if r.n < min_n:
                warnings.append(f"group {r.name} has {r.n} items (< {min_n})")
            results.append(r)
        groups[key] = results
        gaps[key] = gap_metrics(y, s, list(labels), threshold, bootstrap=bootstrap, seed=seed)
    check = _fairlearn_check(y, s, value[attributes[0]], threshold, groups[attributes[0]])
    return FairnessReport(
        threshold, list(attributes), overall, groups, gaps, warnings, len(data.unmatched), check
    )


def _fairlearn_check(y, s, sens, threshold, ours: list[GroupResult]) -> dict[str, Any]:
    """Our per-group FPR/FNR/accuracy against fairlearn's MetricFrame on the same data."""
    from fairlearn.metrics import MetricFrame, false_negative_rate, false_positive_rate
    from sklearn.metrics import accuracy_score

    pred = (s >= threshold).astype(np.int64)
    mf = MetricFrame(
        metrics={
            "fpr": false_positive_rate,
            "fnr": false_negative_rate,
            "accuracy": accuracy_score,
        },
        y_true=y,
        y_pred=pred,
        sensitive_features=sens,
    )
    worst = 0.0
    for r in ours:
        row = mf.by_group.loc[next(iter(r.group.values()))]
        for k in ("fpr", "fnr", "accuracy"):
            if r.metrics[k] is not None and not math.isnan(float(row[k])):
                worst = max(worst, abs(float(row[k]) - r.metrics[k]))
    return {"max_abs_difference": worst, "agrees": worst < 1e-9}
