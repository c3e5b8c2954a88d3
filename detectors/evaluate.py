"""Evaluation grids: overall, per generator, robustness, format shortcut, cross-generator.

:func:`evaluate_detector` scores a trained detector on a manifest's items under the
protocol of :mod:`deepaudit.detectors.protocol` (both classes re-encoded identically; a
resize audit; one pass over the decoded files for every variant) and writes:

- ``metrics.json``: overall metrics with 95% bootstrap intervals; per generator (each
  generator's items against all real items); a robustness sweep (JPEG 95/75/50, resize
  0.5/0.75/1.5, blur σ 1/2, noise σ 5, applied to every item before the centre crop);
  ``shortcuts``: the protocol's report (re-encoding, the classes' formats and sizes, the
  resize audit, the format-shortcut check: files as they are vs both classes re-encoded
  alike; a large AUC drop means the detector leaned on file format, not content), with
  ``format_shortcut`` also at the top level; ``generalisation`` when the detector's
  training generators are known (seen vs held-out generators);
- ``predictions.jsonl``: one line per item — id, path, label, score, generator, source,
  split, attributes — what the fairness audit reads;
- ``roc.png``, ``scores.png``, ``robustness.png``.

:func:`cross_generator` trains one detector per generator (same settings) and tests each
on every generator: the generalisation matrix of this field.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.detectors.data import ItemSet
from deepaudit.detectors.generalisation import generalisation_report
from deepaudit.detectors.inference import score_items
from deepaudit.detectors.metrics import auc, binary_report, roc_curve
from deepaudit.detectors.protocol import (
    DEFAULT_ENCODE,
    EncodePolicy,
    protocol_variants,
    score_variants,
    shortcut_report,
)
from deepaudit.errors import DeepauditError

__all__ = ["DEFAULT_ROBUSTNESS", "cross_generator", "evaluate_detector"]

logger = logging.getLogger(__name__)

DEFAULT_ROBUSTNESS: tuple[str, ...] = (
    "jpeg:95",
    "jpeg:75",
    "jpeg:50",
    "resize:0.5",
    "resize:0.75",
    "resize:1.5",
    "blur:1",
    "blur:2",
    "noise:5",
)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def evaluate_detector(
    det: Any,
    items: ItemSet,
    out_dir: str | os.PathLike[str],
    *,
    robustness: Sequence[str] = DEFAULT_ROBUSTNESS,
    format_check: bool = True,
    encode: EncodePolicy | None = DEFAULT_ENCODE,
    resize_audit: bool = True,
    trained_on: Collection[str] | None = None,
    bootstrap: int = 1000,
    tracker: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Score ``items`` (all of them: pass a split with ``items.split("test")``) and report.

    ``encode=None`` scores the files as they are (``--as-is``); ``trained_on`` names the
    generators the detector was trained on, to report seen and held-out ones apart.
    """
    from deepaudit.perturb import parse_perturbation

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    one_class = _one_class_note(items)
    perturbations = [parse_perturbation(s) for s in robustness]
    variants = protocol_variants(
        encode=encode,
        robustness=perturbations,
        resize_audit=resize_audit,
        format_check=format_check,
    )
    scored = score_variants(det, items, variants, encode=encode, progress=progress)
    scores = scored.scores["main"]
    ok = ~np.isnan(scores)
    y = items.labels
    # the scores are calibrated when the detector has a calibration: judge them at its threshold
    thr = det.operating_threshold
    result: dict[str, Any] = {
        "detector": det.name,
        "threshold": thr,
        "items": len(items),
        "unreadable": int((~ok).sum()),
        "overall": binary_report(y[ok], scores[ok], threshold=thr, bootstrap=bootstrap).to_json(),
        "per_generator": {},
    }
    if getattr(det, "calibration", None) is not None:
        result["threshold_raw"] = det.threshold  # on the detector's own scores, for reference
    if one_class:
        result["note"] = one_class
    real = (y == 0) & ok
    gens = sorted({i.generator for i in items if i.label == 1 and i.generator})
    for g in gens:
        sel = real | (np.array([i.generator == g for i in items]) & ok)
        result["per_generator"][g] = binary_report(
            y[sel], scores[sel], threshold=thr, bootstrap=bootstrap
        ).to_json()
    with (out / "predictions.jsonl").open("w", encoding="utf-8") as fh:
        for item, s in zip(items, scores, strict=True):
            fh.write(
                json.dumps(
                    {
                        "id": item.id,
                        "path": str(item.path),
                        "label": item.label,
                        "score": None if math.isnan(s) else float(s),
                        "generator": item.generator,
                        "source": item.source,
                        "split": item.split,
                        "attributes": item.attributes,
                    }
                )
                + "\n"
            )
    rob: dict[str, Any] = {}
    for p in perturbations:
        s = scored.scores[p.spec]
        m = ~np.isnan(s)
        rep = binary_report(y[m], s[m], threshold=thr, bootstrap=0).to_json()
        rob[p.spec] = {
            k: rep[k]
            for k in ("auc", "ap", "accuracy", "real_accuracy", "synthetic_accuracy", "fpr", "fnr")
        }
    result["robustness"] = rob
    result["shortcuts"] = shortcut_report(
        items, scored, encode=encode, main_auc=result["overall"]["auc"]
    )
    if "format_shortcut" in result["shortcuts"]:
        result["format_shortcut"] = result["shortcuts"]["format_shortcut"]
    if trained_on:
        result["generalisation"] = generalisation_report(result["per_generator"], trained_on, items)
    if hasattr(det, "predict_map") and any(i.mask is not None for i in items if i.label == 1):
        from deepaudit.detectors.localize import localization_report

        # a map-making detector: pixel AUC, F1 and IoU where the manifest has masks
        result["localization"] = localization_report(det, items, bootstrap=min(bootstrap, 200))
    left_out = _plots(out, y[ok], scores[ok], items, scores, gens, rob, thr)
    if left_out:
        result["plots_left_out"] = left_out
    (out / "metrics.json").write_text(json.dumps(result, indent=2, default=_clean) + "\n")
    if tracker is not None:
        with tracker.start_run("evaluate-detector", tags={"detector": det.name}) as run:
            flat = {k: v for k, v in result["overall"].items() if isinstance(v, (int, float))}
            run.log_metrics({k: float(v) for k, v in flat.items() if v is not None})
            run.log_artifact(out, "evaluation")
            result["mlflow_run_id"] = run.run_id
    return result


def _one_class_note(items: ItemSet) -> str | None:
    """Why some metrics are n/a on a set with one class (auditing false alarms on real
    items only is a normal use); an empty set cannot be evaluated at all."""
    y = items.labels
    if not len(y):
        raise DeepauditError(f"{items.root}: the evaluation set is empty")
    if y.min() != y.max():
        return None
    if y[0] == 0:
        return (
            f"only real items ({len(y)}): FPR and real accuracy are reported; AUC, AP, EER, "
            "TPRs and FNR need synthetic items and are n/a"
        )
    return (
        f"only synthetic items ({len(y)}): FNR and synthetic accuracy are reported; AUC, AP, "
        "EER and FPR need real items and are n/a"
    )


def _plots(out: Path, y, s, items: ItemSet, all_scores, gens, rob, threshold) -> dict[str, str]:
    """Write the plots; return the ones left out, each with the reason."""
    import matplotlib

    matplotlib.use("Agg")
    left_out: dict[str, str] = {}
    clean_auc = auc(y, s)
    if math.isnan(clean_auc):
        # a ROC needs both classes: an empty curve would look like a result
        (out / "roc.png").unlink(missing_ok=True)
        left_out["roc.png"] = "AUC is n/a: a ROC curve needs both real and synthetic items"
    else:
        _roc_plot(out, y, s, items, all_scores, gens, clean_auc)
    _score_plots(out, y, s, rob, threshold, clean_auc)
    return left_out


def _roc_plot(out: Path, y, s, items: ItemSet, all_scores, gens, clean_auc: float) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    fpr, tpr, _ = roc_curve(y, s)
    ax.plot(fpr, tpr, label=f"all (AUC {clean_auc:.3f})", lw=2)
    labels = items.labels
    for g in gens[:8]:
        sel = np.array(
            [(lab == 0) or (i.generator == g) for i, lab in zip(items, labels, strict=True)]
        )
        sel &= ~np.isnan(all_scores)
        if sel.any():
            f, t, _ = roc_curve(labels[sel], all_scores[sel])
            ax.plot(f, t, label=f"{g} ({auc(labels[sel], all_scores[sel]):.3f})", lw=1)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=110)
    plt.close(fig)


def _score_plots(out: Path, y, s, rob, threshold, clean_auc: float) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(0, 1, 31)
    ax.hist(s[y == 0], bins=bins, alpha=0.6, label="real")
    ax.hist(s[y == 1], bins=bins, alpha=0.6, label="synthetic")
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.2f}")
    ax.set(xlabel="P(synthetic)", ylabel="items", title="score distribution")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "scores.png", dpi=110)
    plt.close(fig)
    if rob:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        names = list(rob)
        # one class: the error rate that exists, under each perturbation
        key = "auc" if not math.isnan(clean_auc) else ("fpr" if (y == 0).all() else "fnr")
        vals = [rob[n][key] if rob[n][key] is not None else np.nan for n in names]
        clean = clean_auc if key == "auc" else float(((s >= threshold) != y).mean())
        ax.bar(range(len(names)), vals, color="tab:blue")
        ax.axhline(clean, color="k", ls="--", lw=1, label="clean")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set(ylim=(0, 1.02), ylabel=key.upper(), title="robustness")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "robustness.png", dpi=110)
        plt.close(fig)


def cross_generator(
    detector_name: str,
    params: dict[str, Any],
    items: ItemSet,
    out_dir: str | os.PathLike[str],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Train on real + one generator (train split), test on real + each generator (test)."""
    from deepaudit.detectors._registry import create_detector

    out = Path(out_dir)
    gens = sorted({i.generator for i in items if i.label == 1 and i.generator})
    train_all, test_all = items.split("train"), items.split("test")
    matrix: dict[str, dict[str, float | None]] = {}
    for k, g_train in enumerate(gens):
        det = create_detector(detector_name, **params)
        train = ItemSet(
            [i for i in train_all if i.label == 0 or i.generator == g_train], items.root
        )
        det.fit(train, None)
        matrix[g_train] = {}
        for g_test in gens:
            test = ItemSet(
                [i for i in test_all if i.label == 0 or i.generator == g_test], items.root
            )
            s = score_items(det, test)
            m = ~np.isnan(s)
            matrix[g_train][g_test] = _clean(auc(test.labels[m], s[m]))
        if progress:
            progress(k + 1, len(gens))
    result = {"detector": detector_name, "metric": "auc", "train_on_rows_test_on_columns": matrix}
    out.mkdir(parents=True, exist_ok=True)
    (out / "cross_generator.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
