"""Generalisation to unseen generators: the report of one evaluation, and the fold matrix.

:func:`generalisation_report` splits an evaluation's per-generator AUCs into generators the
detector was trained on and generators it never saw (ordered by release date where the
manifest records one). :func:`fold_matrix` runs a whole protocol: one detector trained per
fold (leave-one-generator-out, or older→newer by release date; folds come from
:mod:`deepaudit.generator_folds`), each scored on its fold's test split under the
no-shortcut protocol, giving a matrix of held-out sets × test generators.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from deepaudit.detectors.data import ItemSet, items_from_manifest
from deepaudit.detectors.protocol import (
    DEFAULT_ENCODE,
    EncodePolicy,
    Variant,
    per_generator_auc,
    score_variants,
)
from deepaudit.generator_folds import RELEASE_DATE
from deepaudit.manifest import Manifest

__all__ = ["fold_matrix", "generalisation_report"]


def _mean(values: Collection[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return round(statistics.fmean(got), 6) if got else None


def _release_dates(items: ItemSet) -> dict[str, str]:
    dates: dict[str, str] = {}
    for i in items:
        if i.label == 1 and i.generator and i.attributes.get(RELEASE_DATE) is not None:
            dates.setdefault(i.generator, str(i.attributes[RELEASE_DATE]))
    return dates


def generalisation_report(
    per_generator: Mapping[str, Mapping[str, Any]],
    trained_on: Collection[str],
    items: ItemSet,
) -> dict[str, Any]:
    """Seen vs held-out generators of one evaluation (``per_generator``: name → report)."""
    seen_set = set(trained_on)
    dates = _release_dates(items)
    order = sorted(per_generator, key=lambda g: (dates.get(g, "9999"), g))
    rows = [
        {
            "generator": g,
            "auc": per_generator[g].get("auc"),
            "seen_in_training": g in seen_set,
            "release_date": dates.get(g),
        }
        for g in order
    ]
    seen = [r["auc"] for r in rows if r["seen_in_training"]]
    held = [r["auc"] for r in rows if not r["seen_in_training"]]
    mean_seen, mean_held = _mean(seen), _mean(held)
    return {
        "trained_on": sorted(seen_set),
        "generators": rows,
        "mean_auc_seen": mean_seen,
        "mean_auc_held_out": mean_held,
        "gap": None if mean_seen is None or mean_held is None else round(mean_seen - mean_held, 6),
    }


def fold_matrix(
    detector_name: str,
    params: Mapping[str, Any],
    folds: Mapping[str, Manifest],
    out_dir: str | os.PathLike[str],
    *,
    encode: EncodePolicy | None = DEFAULT_ENCODE,
    kinds: Collection[str] = ("image",),
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Train one detector per fold (its train split; val for early stopping when present)
    and score its test split: rows are folds (the held-out set), columns test generators."""
    from deepaudit.detectors._registry import create_detector

    matrix: dict[str, dict[str, float | None]] = {}
    held_out: dict[str, list[str]] = {}
    held_aucs: list[float | None] = []
    seen_aucs: list[float | None] = []
    for k, (name, fold) in enumerate(folds.items()):
        items = items_from_manifest(fold, kinds=tuple(kinds))
        train, val, test = items.split("train"), items.split("val"), items.split("test")
        train.require_both_classes(f"training set of fold {name!r}")
        test.require_both_classes(f"test set of fold {name!r}")
        det = create_detector(detector_name, **dict(params))
        det.fit(train, val if len(val) and len(set(val.labels)) == 2 else None)
        scored = score_variants(det, test, [Variant("main")], encode=encode)
        row = per_generator_auc(test, test.labels, scored.scores["main"])
        seen = {i.generator for i in train if i.label == 1}
        held_out[name] = sorted(g for g in row if g not in seen)
        held_aucs += [row[g] for g in held_out[name]]
        seen_aucs += [v for g, v in row.items() if g in seen]
        matrix[name] = row
        if progress is not None:
            progress(k + 1, len(folds))
    result = {
        "detector": detector_name,
        "metric": "auc",
        "reencoded": encode.to_json() if encode is not None else None,
        "rows_are": "folds (the generators each holds out of training)",
        "held_out": held_out,
        "matrix": matrix,
        "mean_auc_held_out": _mean(held_aucs),
        "mean_auc_seen": _mean(seen_aucs),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fold_matrix.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
