"""Fairness mitigation, measured: each method against the baseline on the same test split.

An audit that only measures leaves the unfairness where it was. Three ways to act on it,
each judged on the same held-out items as the detector it tries to improve:

- ``reweight``: group-balanced sampling in training. Each (intersectional group, class) cell
  is drawn equally often, tilted towards the cells the baseline gets most wrong on the
  validation split (weight ∝ (1 + e_cell / mean e) / n_cell, e = mean |label − score|).
  Error rates at the threshold tie too often on a few validation items to rank cells.
- ``synthetic-rebalance``: the class-conditional generator adds synthetic training faces for
  the groups with the worst validation error rates (the lecture's "synthetic faces per
  ethnicity" idea, applied to a detector). The generator comes in as a callback, because the
  audit layer does not import the generators.
- ``threshold``: fairlearn's ``ThresholdOptimizer`` with equalized odds, fitted on the
  baseline's validation scores. It needs **group membership at decision time**: every file
  must come with its group, and the decision for it is randomised between two thresholds.
  Its objective (balanced accuracy) also moves the operating point: on a detector that
  separates the classes it lowers every group's FPR, which narrows a max − min gap by itself
  (the group-blind control it is reported with shows how much).
- ``equal-fpr``: per-group thresholds for the same FPR at the target (predictive equality,
  Corbett-Davies et al. 2017), keeping the operating point. A group's few validation reals
  cannot place its own 95th percentile, so each group's real scores are centred on the
  common median (in logit space, per-group medians from validation) and one threshold at the
  target FPR is set on the centred scores: a location-shift model of the groups' real-score
  distributions. Also needs group membership at decision time; deterministic.

The table (:class:`MitigationTable`): AUC, FPR, FNR, intersectional FPR gap, F_FPR, F_EO
and F_OAE (definitions in :mod:`deepaudit.audit.fairness`) with 95% bootstrap intervals;
the bootstrap is paired (the same resampled items for every method), so the change against
the baseline (ΔAUC, gap ratio) has its own interval. Each row also gives the FPR gap that a
detector with the same FPR in every group would show on these group sizes, from sampling
alone (``fpr_gap_if_fair``): a max − min over many small groups is large even when nothing
is unfair, and a measured gap near it is not evidence of unfairness. The goal a method meets
or not: FPR gap ratio ≤ 0.5 with the upper end of its interval below 1, and ΔAUC ≥ −0.01.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.detectors.data import ItemSet, LabeledItem
from deepaudit.detectors.metrics import auc
from deepaudit.errors import DeepauditError

__all__ = [
    "METHODS",
    "MitigationError",
    "MitigationRun",
    "MitigationTable",
    "Outcome",
    "balanced_accuracy_threshold",
    "equal_fpr_thresholds",
    "fpr_gap_if_fair",
    "group_labels",
    "mitigation_markdown",
    "mitigation_table",
    "outcome_metrics",
    "rebalance_weights",
    "run_mitigation",
    "threshold_optimizer",
    "worst_groups",
]

logger = logging.getLogger(__name__)

METHODS = ("reweight", "synthetic-rebalance", "threshold", "equal-fpr")
TABLE_METRICS = ("auc", "fpr", "fnr", "fpr_gap", "F_FPR", "F_EO", "F_OAE")
AUC_COST = 0.01  # the most AUC a method may lose and still meet the goal

# (group values, seeds) → one RGB uint8 image per seed, of that group
Synthesize = Callable[[Mapping[str, str], Sequence[int]], Sequence[np.ndarray]]


class MitigationError(DeepauditError):
    """Data or options a mitigation cannot run on; the message says why."""


@dataclass(frozen=True)
class Outcome:
    """What one detector (baseline or mitigated) did on the test items: ``scores`` rank
    (for AUC), ``decisions`` are the 0/1 calls at its operating point."""

    method: str
    scores: np.ndarray
    decisions: np.ndarray
    uses_group_at_decision: bool = False
    notes: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)


def group_labels(items: ItemSet, attributes: Sequence[str]) -> np.ndarray:
    """Each item's intersectional group, e.g. ``male|white``; items lacking an attribute
    are refused (a mitigation needs every training and test item's group)."""
    if not attributes:
        raise MitigationError("give at least one attribute")
    out = []
    for it in items:
        missing = [a for a in attributes if a not in it.attributes]
        if missing:
            raise MitigationError(
                f"{it.path}: item {it.id} has no {', '.join(missing)} attribute in the manifest"
            )
        out.append("|".join(str(it.attributes[a]) for a in attributes))
    return np.asarray(out)


def outcome_metrics(
    y: np.ndarray, scores: np.ndarray, decisions: np.ndarray, groups: np.ndarray
) -> dict[str, float | None]:
    """The table's metrics for one outcome (``None`` where undefined). Group rates are over
    the groups that have items of that class, as in :func:`fairness.gap_metrics`."""
    names, codes = np.unique(groups, return_inverse=True)
    k = len(names)
    real, synth = y == 0, y == 1
    d = decisions.astype(bool)
    n_real = np.bincount(codes, weights=real, minlength=k)
    n_syn = np.bincount(codes, weights=synth, minlength=k)
    fp = np.bincount(codes, weights=real & d, minlength=k)
    tp = np.bincount(codes, weights=synth & d, minlength=k)
    correct = np.bincount(codes, weights=(d == synth), minlength=k)
    n = np.bincount(codes, minlength=k)
    fpr = float(d[real].mean()) if real.any() else None
    tpr = float(d[synth].mean()) if synth.any() else None
    has_r, has_s = n_real > 0, n_syn > 0
    fpr_g = fp[has_r] / n_real[has_r]
    tpr_g = tp[has_s] / n_syn[has_s]
    acc_g = correct[n > 0] / n[n > 0]
    f_fpr = None if fpr is None else float(np.abs(fpr_g - fpr).sum())
    f_tpr = None if tpr is None else float(np.abs(tpr_g - tpr).sum())
    a = auc(y, scores)
    return {
        "auc": None if math.isnan(a) else a,
        "fpr": fpr,
        "fnr": None if tpr is None else 1.0 - tpr,
        "fpr_gap": float(fpr_g.max() - fpr_g.min()) if fpr_g.size >= 2 else None,
        "F_FPR": f_fpr,
        "F_EO": None if f_fpr is None or f_tpr is None else f_fpr + f_tpr,
        "F_OAE": float(acc_g.max() - acc_g.min()) if acc_g.size >= 2 else None,
    }


@dataclass(frozen=True)
class MitigationTable:
    """Each method against the baseline on one test split, with paired-bootstrap CIs."""

    attributes: tuple[str, ...]
    n: int
    n_real: int
    n_synthetic: int
    groups: int
    bootstrap: int
    rows: tuple[dict[str, Any], ...]

    def row(self, method: str) -> dict[str, Any]:
        for r in self.rows:
            if r["method"] == method:
                return r
        raise KeyError(method)

    def to_json(self) -> dict[str, Any]:
        return {
            "attributes": list(self.attributes),
            "split": {
                "items": self.n,
                "real": self.n_real,
                "synthetic": self.n_synthetic,
                "intersectional_groups": self.groups,
            },
            "bootstrap": self.bootstrap,
            "goal": (
                f"intersectional FPR gap ratio ≤ 0.5 (upper 95% CI < 1) at ΔAUC ≥ −{AUC_COST}"
            ),
            "rows": list(self.rows),
        }


def _ci(values: np.ndarray) -> list[float | None]:
    v = values[~np.isnan(values)]
    if v.size < max(10, values.size // 10):
        return [None, None]
    lo, hi = np.percentile(v, [2.5, 97.5])
    return [float(lo), float(hi)]


def _nan(v: float | None) -> float:
    return math.nan if v is None else v


def mitigation_table(
    y: np.ndarray,
    groups: np.ndarray,
    outcomes: Sequence[Outcome],
    *,
    attributes: Sequence[str],
    bootstrap: int = 1000,
    seed: int = 0,
) -> MitigationTable:
    """Metrics of each outcome (the first is the baseline) with 95% intervals from one
    paired bootstrap over the test items, and each method's change against the baseline."""
    y = np.asarray(y)
    groups = np.asarray(groups)
    if not outcomes:
        raise MitigationError("no outcomes to compare")
    for o in outcomes:
        if o.scores.shape != y.shape or o.decisions.shape != y.shape:
            raise MitigationError(f"{o.method}: scores/decisions do not match the test items")
    point = [outcome_metrics(y, o.scores, o.decisions, groups) for o in outcomes]
    rng = np.random.default_rng(seed)
    draws = np.full((len(outcomes), len(TABLE_METRICS), bootstrap), np.nan)
    for b in range(bootstrap):
        idx = rng.integers(0, y.size, y.size)
        for j, o in enumerate(outcomes):
            m = outcome_metrics(y[idx], o.scores[idx], o.decisions[idx], groups[idx])
            draws[j, :, b] = [_nan(m[k]) for k in TABLE_METRICS]
    base = point[0]
    gap_i, auc_i = TABLE_METRICS.index("fpr_gap"), TABLE_METRICS.index("auc")
    rows = []
    for j, o in enumerate(outcomes):
        row: dict[str, Any] = {
            "method": o.method,
            **point[j],
            "ci95": {k: _ci(draws[j, i]) for i, k in enumerate(TABLE_METRICS)},
            "fpr_gap_if_fair": fpr_gap_if_fair(y, groups, point[j]["fpr"], seed=seed),
            "uses_group_at_decision": o.uses_group_at_decision,
            "notes": list(o.notes),
            "details": dict(o.details),
        }
        if j:
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = draws[j, gap_i] / draws[0, gap_i]
            ratio[~np.isfinite(ratio)] = np.nan
            d_auc = draws[j, auc_i] - draws[0, auc_i]
            g0, g1 = base["fpr_gap"], point[j]["fpr_gap"]
            r = None if g0 in (None, 0) or g1 is None else g1 / g0
            da = (
                None
                if base["auc"] is None or point[j]["auc"] is None
                else point[j]["auc"] - base["auc"]
            )
            r_ci, da_ci = _ci(ratio), _ci(d_auc)
            row["vs_baseline"] = {
                "fpr_gap_ratio": r,
                "fpr_gap_ratio_ci95": r_ci,
                "delta_auc": da,
                "delta_auc_ci95": da_ci,
                "halves_fpr_gap": r is not None and r <= 0.5,
                "gap_reduction_shown": r_ci[1] is not None and r_ci[1] < 1.0,
                "auc_cost_ok": da is not None and da >= -AUC_COST,
            }
            v = row["vs_baseline"]
            v["goal_met"] = v["halves_fpr_gap"] and v["gap_reduction_shown"] and v["auc_cost_ok"]
        rows.append(row)
    names = set(groups.tolist())
    return MitigationTable(
        tuple(attributes),
        int(y.size),
        int((y == 0).sum()),
        int((y == 1).sum()),
        len(names),
        bootstrap,
        tuple(rows),
    )


def fpr_gap_if_fair(
    y: np.ndarray, groups: np.ndarray, fpr: float | None, *, draws: int = 4000, seed: int = 0
) -> dict[str, float] | None:
    """The intersectional FPR gap (max − min) a detector with FPR ``fpr`` in every group
    would show on these groups' real items, from sampling alone (``fairness.gap_if_equal``)."""
    from deepaudit.audit.fairness import gap_if_equal

    if fpr is None:
        return None
    _, codes = np.unique(groups[y == 0], return_inverse=True)
    return gap_if_equal(np.bincount(codes), fpr, draws=draws, seed=seed)


# -- the methods -------------------------------------------------------------------------


def _cell_errors(
    y: np.ndarray, scores: np.ndarray, groups: np.ndarray
) -> dict[tuple[str, int], float]:
    """Mean |label − score| per (group, class): how wrong the detector is there, smoothly."""
    out = {}
    for g in sorted(set(groups.tolist())):
        for c in (0, 1):
            sel = (groups == g) & (y == c) & ~np.isnan(scores)
            if sel.any():
                out[(g, c)] = float(np.abs(scores[sel] - c).mean())
    return out


def rebalance_weights(
    train_groups: np.ndarray,
    train_labels: np.ndarray,
    val_groups: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    val_scores: np.ndarray | None = None,
) -> np.ndarray:
    """Sampling weight per training item: every (group, class) cell drawn equally often,
    times ``1 + e/mean(e)`` for the cell's validation error ``e`` when val scores are given
    (cells missing from val get the mean). Normalised to mean 1."""
    cells = list(zip(train_groups.tolist(), train_labels.tolist(), strict=True))
    counts: dict[tuple[str, int], int] = {}
    for c in cells:
        counts[c] = counts.get(c, 0) + 1
    tilt = {c: 1.0 for c in counts}
    if val_scores is not None and val_groups is not None and val_labels is not None:
        errs = _cell_errors(val_labels, val_scores, val_groups)
        mean = float(np.mean(list(errs.values()))) if errs else 0.0
        if mean > 0:
            tilt = {c: 1.0 + errs.get(c, mean) / mean for c in counts}
    w = np.asarray([tilt[c] / counts[c] for c in cells], dtype=np.float64)
    return w / w.mean()


def worst_groups(
    y: np.ndarray, scores: np.ndarray, groups: np.ndarray, threshold: float, k: int
) -> list[dict[str, Any]]:
    """The ``k`` groups with the highest balanced error rate (FPR + FNR) / 2 at the
    threshold; ties (frequent on a few items) broken by the mean |label − score|."""
    ranked = []
    for g in sorted(set(groups.tolist())):
        sel = (groups == g) & ~np.isnan(scores)
        yy, ss = y[sel], scores[sel]
        if not yy.size:
            continue
        pred = ss >= threshold
        rates = [float(pred[yy == 0].mean())] if (yy == 0).any() else []
        rates += [float(1 - pred[yy == 1].mean())] if (yy == 1).any() else []
        ber = float(np.mean(rates))
        soft = float(np.abs(ss - yy).mean())
        ranked.append({"group": g, "balanced_error": ber, "soft_error": soft, "n": int(yy.size)})
    ranked.sort(key=lambda r: (-r["balanced_error"], -r["soft_error"], r["group"]))
    return ranked[:k]


def _score_column() -> Any:
    """A fitted 'estimator' whose decision function is the detector's score (column 0), so
    fairlearn post-processes scores computed elsewhere (``prefit=True``)."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    class ScoreColumn(ClassifierMixin, BaseEstimator):
        def fit(self, x: Any, y: Any) -> ScoreColumn:
            self.classes_ = np.array([0, 1])
            return self

        def decision_function(self, x: Any) -> np.ndarray:
            return np.asarray(x, dtype=np.float64)[:, 0]

    return ScoreColumn().fit(None, None)


def threshold_optimizer(
    val_labels: np.ndarray,
    val_scores: np.ndarray,
    val_groups: np.ndarray,
    *,
    grid_size: int = 1000,
) -> Any:
    """fairlearn's ThresholdOptimizer (equalized odds, balanced accuracy) fitted on
    validation scores; every test group must occur in val (it picks thresholds per group)."""
    from fairlearn.postprocessing import ThresholdOptimizer

    ok = ~np.isnan(val_scores)
    to = ThresholdOptimizer(
        estimator=_score_column(),
        constraints="equalized_odds",
        objective="balanced_accuracy_score",
        prefit=True,
        predict_method="decision_function",
        grid_size=grid_size,
    )
    try:
        to.fit(val_scores[ok, None], val_labels[ok], sensitive_features=val_groups[ok])
    except ValueError as exc:
        raise MitigationError(
            f"threshold: fairlearn cannot fit on the validation split: {str(exc).splitlines()[0]}"
        ) from None
    return to


def _threshold_outcome(
    to: Any, scores: np.ndarray, groups: np.ndarray, val_groups: np.ndarray, seed: int
) -> Outcome:
    unseen = sorted(set(groups.tolist()) - set(val_groups.tolist()))
    if unseen:
        raise MitigationError(
            f"threshold: group(s) {', '.join(unseen)} of the test split are not in the "
            "validation split, so no threshold was fitted for them"
        )
    x = np.nan_to_num(scores, nan=0.0)[:, None]
    pmf = to._pmf_predict(x, sensitive_features=groups)[:, 1]
    decisions = to.predict(x, sensitive_features=groups, random_state=seed).astype(np.int64)
    per_group = {}
    for g, op in to.interpolated_thresholder_.interpolation_dict.items():
        per_group[str(g)] = {
            k: (float(v) if isinstance(v, (int, float, np.floating)) else str(v))
            for k, v in op.items()
        }
    return Outcome(
        "threshold",
        pmf,
        decisions,
        uses_group_at_decision=True,
        notes=(
            "uses group membership at decision time: each file's group must be known, and "
            "its decision is randomised between two group-specific thresholds",
            "AUC is that of P(ŷ=1) from the post-processed (randomised) classifier; the "
            "detector's own scores, and their AUC, are the baseline's",
        ),
        details={"per_group": per_group},
    )


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def equal_fpr_thresholds(
    val_labels: np.ndarray,
    val_scores: np.ndarray,
    val_groups: np.ndarray,
    *,
    target_fpr: float,
) -> dict[str, Any]:
    """Per-group thresholds (on the score, as used: ``score >= threshold[group]``) that give
    every group the same FPR, ``target_fpr``, on validation under a location-shift model:
    each group's real scores are centred on the common median (in logit space), and one
    threshold at the target FPR is placed on the centred scores. Returns the thresholds and
    each group's shift; a group without real validation items has no threshold."""
    from deepaudit.detectors.metrics import calibrate_threshold

    ok = ~np.isnan(val_scores)
    y, z, g = val_labels[ok], _logit(val_scores[ok]), val_groups[ok]
    real = y == 0
    if not real.any():
        raise MitigationError("equal-fpr: the validation split has no real items")
    centre = float(np.median(z[real]))
    shift = {
        str(k): float(np.median(z[real & (g == k)]) - centre) for k in sorted(set(g[real].tolist()))
    }
    centred = z - np.asarray([shift.get(str(k), 0.0) for k in g])
    t = calibrate_threshold(y, centred, target_fpr=target_fpr)
    thresholds = {k: float(1.0 / (1.0 + np.exp(-(t + d)))) for k, d in shift.items()}
    return {"thresholds": thresholds, "logit_shift": shift, "centred_threshold_logit": t}


def _equal_fpr_outcome(
    fitted: Mapping[str, Any], scores: np.ndarray, groups: np.ndarray, where: str
) -> Outcome:
    shift = fitted["logit_shift"]
    unseen = sorted(set(groups.tolist()) - set(shift))
    if unseen:
        raise MitigationError(
            f"equal-fpr: group(s) {', '.join(unseen)} of the test split have no real items "
            "in the validation split, so no threshold was fitted for them"
        )
    centred = _logit(np.nan_to_num(scores, nan=0.0)) - np.asarray([shift[str(k)] for k in groups])
    decisions = (centred >= fitted["centred_threshold_logit"]).astype(np.int64)
    return Outcome(
        "equal-fpr",
        centred,  # the score it decides on: AUC of the group-centred score
        decisions,
        uses_group_at_decision=True,
        notes=(
            "uses group membership at decision time: each file's group must be known; "
            "deterministic (no randomisation)",
            f"per-group thresholds for the same FPR at the target on the {where}: each "
            "group's real scores centred on the common median (logit), one threshold",
        ),
        details={k: v for k, v in fitted.items() if k != "centred_threshold_logit"},
    )


# -- the whole run -----------------------------------------------------------------------


@dataclass(frozen=True)
class MitigationRun:
    """Everything ``run_mitigation`` made: the table, the folders, and the baseline's test
    scores (for the fairness report)."""

    table: MitigationTable
    detectors: Mapping[str, Path]
    test: ItemSet
    baseline_scores: np.ndarray
    baseline_threshold: float
    outcomes: tuple[Outcome, ...] = ()  # on ``test``, baseline first (for pooling folds)
    groups: np.ndarray | None = None  # each test item's intersectional group


def _trained(
    make_detector: Callable[[], Any],
    items: ItemSet,
    folder: Path,
    *,
    target_fpr: float,
    progress: Callable[[str], None] | None,
    what: str,
    **fit: Any,
) -> Any:
    from deepaudit.detectors import load_detector
    from deepaudit.detectors.train import train_detector

    if (folder / "config.json").is_file():
        if progress is not None:
            progress(f"{what}: reusing {folder}")
        det = load_detector(folder)
        fresh = make_detector()
        same = json.dumps(det.params(), sort_keys=True, default=str) == json.dumps(
            fresh.params(), sort_keys=True, default=str
        )
        if det.name != fresh.name or not same:
            raise MitigationError(
                f"{folder}: holds a {det.name} detector with other settings; remove it or "
                "use another --out"
            )
        return det
    if progress is not None:
        progress(f"{what}: training into {folder}")
    det = make_detector()
    train_detector(det, items, folder, target_fpr=target_fpr, **fit)
    return det


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def run_mitigation(
    items: ItemSet,
    attributes: Sequence[str],
    make_detector: Callable[[], Any],
    out_dir: str | os.PathLike[str],
    *,
    methods: Sequence[str] = METHODS,
    synthesize: Synthesize | None = None,
    per_group: int = 50,
    worst: int = 3,
    target_fpr: float = 0.05,
    bootstrap: int = 1000,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> MitigationRun:
    """Train the baseline and each method's detector on ``items``' train split (resuming
    what a killed run left), score the same test split, and compare. ``synthesize`` is
    needed for ``synthetic-rebalance``; ``per_group`` faces for each of the ``worst`` groups.
    Folders: ``out_dir/baseline``, ``out_dir/<method>``; ``out_dir/mitigation.json``."""
    from deepaudit.detectors.inference import score_items
    from deepaudit.media import write_image

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise MitigationError(
            f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}"
        )
    if "synthetic-rebalance" in methods and synthesize is None:
        raise MitigationError("synthetic-rebalance needs a class-conditional generator")
    out = Path(out_dir)
    train, val, test = items.split("train"), items.split("val"), items.split("test")
    for name, part in (("train", train), ("validation", val), ("test", test)):
        if not len(part):
            raise MitigationError(f"{items.root}: the {name} split is empty; split the manifest")
        part.require_both_classes(name)
    g_train = group_labels(train, attributes)
    g_val, g_test = group_labels(val, attributes), group_labels(test, attributes)
    y_val, y_test = val.labels, test.labels
    folders = {"baseline": out / "baseline"}
    base = _trained(
        make_detector,
        items,
        folders["baseline"],
        target_fpr=target_fpr,
        progress=progress,
        what="baseline",
    )
    thr = base.operating_threshold
    s_val, s_test = score_items(base, val), score_items(base, test)
    keep = ~np.isnan(s_test)
    outcomes = [Outcome("baseline", s_test, (s_test >= thr).astype(np.int64))]
    for method in methods:
        if method == "threshold":
            fit_y, fit_s, fit_g, where = y_val, s_val, g_val, "validation split"
            thin = _one_class_groups(y_val, g_val)
            if thin:  # fairlearn needs both classes per group: add the train split's scores
                s_train = score_items(base, train)
                fit_y = np.concatenate([y_val, train.labels])
                fit_s = np.concatenate([s_val, s_train])
                fit_g = np.concatenate([g_val, g_train])
                where = (
                    f"validation + train splits (validation has one class only in "
                    f"{', '.join(thin)}; train scores are optimistic)"
                )
            to = threshold_optimizer(fit_y, fit_s, fit_g)
            o = _threshold_outcome(to, s_test, g_test, fit_g[~np.isnan(fit_s)], seed)
            o.details["fitted_on"] = f"{where} (baseline scores)"
            outcomes.append(o)
            # the control: one group-blind threshold chosen by the same objective on the same
            # data; what threshold gains beyond it is what group membership buys
            t = balanced_accuracy_threshold(fit_y, fit_s)
            outcomes.append(
                Outcome(
                    "global-threshold (control)",
                    s_test,
                    (s_test >= t).astype(np.int64),
                    notes=(
                        "control for threshold: one group-blind threshold maximising balanced "
                        f"accuracy on the {where.split(' (')[0]}",
                    ),
                    details={"threshold": t},
                )
            )
            continue
        if method == "equal-fpr":
            fitted = equal_fpr_thresholds(y_val, s_val, g_val, target_fpr=target_fpr)
            outcomes.append(
                _equal_fpr_outcome(fitted, s_test, g_test, "validation split (baseline scores)")
            )
            continue
        folder = folders[method] = out / method
        if method == "reweight":
            w = rebalance_weights(g_train, train.labels, g_val, y_val, s_val)
            det = _trained(
                make_detector,
                items,  # its train split, in this order, is what the weights are for
                folder,
                target_fpr=target_fpr,
                progress=progress,
                what=method,
                sample_weights=w.tolist(),
            )
            detail = {
                "weights": {
                    f"{g}, {'synthetic' if c else 'real'}": round(float(w[i]), 4)
                    for i, (g, c) in enumerate(zip(g_train, train.labels, strict=True))
                    if i == _first(g_train, train.labels, g, c)
                }
            }
            note = "group-balanced sampling, tilted to the cells the baseline errs on (val)"
        else:
            chosen = worst_groups(y_val, s_val, g_val, thr, worst)
            extra = _rebalance_items(
                chosen, attributes, per_group, folder / "faces", synthesize, write_image, seed
            )
            data = ItemSet([*items.items, *extra], items.root)
            det = _trained(
                make_detector, data, folder, target_fpr=target_fpr, progress=progress, what=method
            )
            detail = {"worst_groups_on_val": chosen, "synthetic_added_per_group": per_group}
            note = f"{len(extra)} synthetic training faces for {len(chosen)} worst groups (val)"
        s = score_items(det, test)
        keep &= ~np.isnan(s)
        outcomes.append(
            Outcome(
                method,
                s,
                (s >= det.operating_threshold).astype(np.int64),
                notes=(note, f"threshold recalibrated to FPR {target_fpr:g} on val"),
                details=detail,
            )
        )
    if not keep.all():
        logger.warning("%d unreadable test files left out", int((~keep).sum()))
    outcomes = [
        Outcome(
            o.method,
            o.scores[keep],
            o.decisions[keep],
            o.uses_group_at_decision,
            o.notes,
            o.details,
        )
        for o in outcomes
    ]
    table = mitigation_table(
        y_test[keep], g_test[keep], outcomes, attributes=attributes, bootstrap=bootstrap, seed=seed
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "mitigation.json").write_text(
        json.dumps(table.to_json(), indent=2, default=str) + "\n", encoding="utf-8"
    )
    kept = ItemSet([it for it, k in zip(test, keep, strict=True) if k], items.root)
    return MitigationRun(table, folders, kept, s_test[keep], thr, tuple(outcomes), g_test[keep])


def balanced_accuracy_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """The single threshold with the highest balanced accuracy on (y, scores); among equal
    ones the middle of the best run (a perfect separation: halfway between the classes)."""
    ok = ~np.isnan(scores)
    y, s = y[ok], scores[ok]
    u = np.unique(s)
    cands = np.concatenate([[u[0] - 1e-9], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-9]])
    pred = s[None, :] >= cands[:, None]
    tpr = pred[:, y == 1].mean(1) if (y == 1).any() else np.ones(len(cands))
    tnr = (~pred[:, y == 0]).mean(1) if (y == 0).any() else np.ones(len(cands))
    ba = (tpr + tnr) / 2
    best = np.flatnonzero(ba >= ba.max() - 1e-12)
    return float(cands[best[len(best) // 2]])


def _one_class_groups(y: np.ndarray, groups: np.ndarray) -> list[str]:
    return [g for g in sorted(set(groups.tolist())) if len(set(y[groups == g].tolist())) < 2]


def _first(groups: np.ndarray, labels: np.ndarray, g: str, c: int) -> int:
    return int(np.flatnonzero((groups == g) & (labels == c))[0])


def _rebalance_items(
    chosen: Sequence[Mapping[str, Any]],
    attributes: Sequence[str],
    per_group: int,
    folder: Path,
    synthesize: Synthesize | None,
    write_image: Callable[..., Path],
    seed: int,
) -> list[LabeledItem]:
    """Synthetic training items for each chosen group; files already written are reused,
    so a killed run resumes without generating them again."""
    assert synthesize is not None
    extra = []
    for k, r in enumerate(chosen):
        values = dict(zip(attributes, str(r["group"]).split("|"), strict=True))
        paths = [folder / f"{_slug(r['group'])}_{i:03d}.png" for i in range(per_group)]
        todo = [i for i, p in enumerate(paths) if not p.is_file()]
        if todo:
            seeds = [seed + 7_000_000 + 10_000 * k + i for i in todo]
            images = synthesize(values, seeds)
            if len(images) != len(todo):
                raise MitigationError(f"the generator returned {len(images)} of {len(todo)} faces")
            for i, img in zip(todo, images, strict=True):
                write_image(paths[i], img)
        for i, p in enumerate(paths):
            extra.append(
                LabeledItem(
                    id=f"rebalance/{r['group']}/{i}",
                    path=p,
                    label=1,
                    source="synthetic-rebalance",
                    generator="synthetic-rebalance",
                    split="train",
                    attributes=values,
                )
            )
    return extra


# -- rendering ----------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _cell(row: Mapping[str, Any], k: str) -> str:
    lo, hi = (row.get("ci95") or {}).get(k) or [None, None]
    if lo is None:
        return _fmt(row.get(k))
    return f"{_fmt(row.get(k))} [{_fmt(lo)}, {_fmt(hi)}]"


def _change(row: Mapping[str, Any]) -> tuple[str, str, str]:
    v = row.get("vs_baseline")
    if not v:
        return ("—", "—", "—")
    r_lo, r_hi = v["fpr_gap_ratio_ci95"]
    d_lo, d_hi = v["delta_auc_ci95"]
    goal = "yes" if v["goal_met"] else "no"
    return (
        f"{_fmt(v['fpr_gap_ratio'])} [{_fmt(r_lo)}, {_fmt(r_hi)}]",
        f"{_fmt(v['delta_auc'])} [{_fmt(d_lo)}, {_fmt(d_hi)}]",
        goal,
    )


_HEAD = (
    "method",
    "AUC",
    "FPR",
    "FNR",
    "FPR gap",
    "F_FPR",
    "F_EO",
    "F_OAE",
    "gap ratio",
    "ΔAUC",
    "goal",
)


def mitigation_markdown(js: Mapping[str, Any]) -> list[str]:
    """The table (from ``MitigationTable.to_json()``) as Markdown lines, for model cards
    and notes; every value with its 95% interval."""
    lines = ["| " + " | ".join(_HEAD) + " |", "|" + "---|" * len(_HEAD)]
    for row in js.get("rows", []):
        cells = [row["method"], *(_cell(row, k) for k in TABLE_METRICS), *_change(row)]
        lines.append("| " + " | ".join(cells) + " |")
    split = js.get("split") or {}
    lines += [
        "",
        f"Test split: {split.get('items')} items ({split.get('real')} real, "
        f"{split.get('synthetic')} synthetic) in {split.get('intersectional_groups')} "
        f"{' × '.join(js.get('attributes', []))} groups; {js.get('bootstrap')} paired "
        f"bootstrap resamples. Goal: {js.get('goal')}.",
    ]
    chance = _chance_text(js)
    if chance:
        lines.append(chance)
    for row in js.get("rows", []):
        if row.get("uses_group_at_decision"):
            randomised = any("randomised between" in n for n in row.get("notes") or [])
            lines.append(
                f"`{row['method']}` uses group membership at decision time: it can only be "
                "deployed where each file's group is known"
                + (", and its decisions are randomised." if randomised else ".")
            )
    return lines


def _chance_text(js: Mapping[str, Any]) -> str:
    """What FPR gap sampling alone gives on these group sizes, per row's FPR."""
    parts = [
        f"{r['method']} {_fmt(c['mean'])} (95th percentile {_fmt(c['p95'])})"
        for r in js.get("rows", [])
        if (c := r.get("fpr_gap_if_fair"))
    ]
    if not parts:
        return ""
    return (
        "FPR gap a detector with the same FPR in every group would show here, from sampling "
        "alone (at each row's FPR): " + "; ".join(parts) + "."
    )


def mitigation_html(js: Mapping[str, Any]) -> str:
    """The table as an HTML section for the fairness report."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _HEAD)
    body = []
    for row in js.get("rows", []):
        cells = [row["method"], *(_cell(row, k) for k in TABLE_METRICS), *_change(row)]
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    notes = "".join(
        f"<li><b>{html.escape(r['method'])}</b>: {html.escape('; '.join(r.get('notes') or []))}"
        "</li>"
        for r in js.get("rows", [])
        if r.get("notes")
    )
    split = js.get("split") or {}
    return (
        '<h2 id="mitigation">Mitigation: each method against the baseline</h2>'
        f"<p>Same test split for every method: {split.get('items')} items "
        f"({split.get('real')} real, {split.get('synthetic')} synthetic), "
        f"{split.get('intersectional_groups')} intersectional groups. Values with 95% "
        f"intervals from {js.get('bootstrap')} paired bootstrap resamples; FPR gap is over "
        f"the intersectional groups. Goal: {html.escape(str(js.get('goal')))}.</p>"
        f"<table><tr>{head}</tr>{''.join(body)}</table>"
        f"<p>{html.escape(_chance_text(js))}</p><ul>{notes}</ul>"
    )
