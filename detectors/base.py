"""The detector contract: ``fit``, ``predict_proba``, ``save_pretrained`` / ``from_pretrained``.

A trained detector is a folder: ``config.json`` (registry name, parameters, input size,
threshold, normalisation, training data summary, metrics) and weights in safetensors or
JSON — nothing that needs unpickling, so a detector folder from someone else is safe to load.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.detectors._registry import CONFIG_NAME
from deepaudit.detectors.inference import (
    Aggregation,
    FileScore,
    InputSpec,
    aggregate,
    score_prepared,
)

__all__ = ["Detector", "LinearHead", "load_module_weights", "save_module_weights"]


class Detector:
    """Base class. Subclasses set ``name`` (via the registry) and implement the hooks.

    Inference goes through :mod:`deepaudit.detectors.inference`: ``input_spec`` says how to
    prepare pixels, ``score_inputs`` scores prepared inputs, ``reduce`` makes a file's score.
    """

    name: str = ""
    kind: str = "image"
    frames: int | None = None  # frames sampled per clip (None: the caller's default)
    video_aggregation: Aggregation = "mean"  # frame scores -> clip score
    video_topk: int = 3
    inference_threads: int | None = None  # engine threads (None: the cores); set by the scan
    supports_sample_weights: bool = False  # fit(..., sample_weights=) is honoured

    def __init__(self, *, input_size: int = 32, threshold: float = 0.5, seed: int = 0) -> None:
        self.input_size = int(input_size)
        self.threshold = float(threshold)
        self.seed = int(seed)
        self.training_summary: dict[str, Any] = {}
        self.metrics: dict[str, Any] = {}
        # a fitted map from this detector's scores to calibrated ones (calibration.json)
        self.calibration: Any = None

    # -- what subclasses provide ---------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this detector (saved in config.json)."""
        return {"input_size": self.input_size, "seed": self.seed}

    def fit(self, train: Any, val: Any = None, **kwargs: Any) -> Detector:
        raise NotImplementedError

    def score_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """P(synthetic) per prepared input: ``(N, S, S, 3)`` uint8 from ``input_spec()``."""
        raise NotImplementedError

    def _save_weights(self, root: Path) -> None:
        raise NotImplementedError

    def _load_weights(self, root: Path) -> None:
        raise NotImplementedError

    def _restore(self, root: Path, config: dict[str, Any]) -> None:
        """Anything beyond parameters that the folder's config holds, set before the weights
        load (imported detectors: their provenance record, whose hash the load checks)."""

    # -- shared ----------------------------------------------------------------------------
    @property
    def media_kinds(self) -> tuple[str, ...]:
        """Manifest kinds it scores (for ``load_items``), so callers need not branch on
        ``kind``: a video detector scores clips and stills alike, an image detector images."""
        return ("image", "video") if self.kind == "video" else ("image",)

    def input_spec(self) -> InputSpec:
        """How this detector wants its pixels (a centre crop of ``input_size`` by default)."""
        return InputSpec(self.input_size)

    def reduce(self, per_input: np.ndarray, *, video: bool) -> FileScore:
        """A file's score from its inputs' scores: an image's one, or a clip's aggregate.
        With a calibration, the score (and each frame's) is the calibrated one, the
        threshold the calibrated threshold, and ``raw`` the detector's own score."""
        if not video:
            raw = FileScore(float(per_input[0]), self.threshold)
        else:
            raw = FileScore(
                aggregate(per_input, self.video_aggregation, self.video_topk),
                self.threshold,
                tuple(float(s) for s in per_input),
                self.video_aggregation,
            )
        cal = self.calibration
        if cal is None:
            return raw
        frames = raw.frame_scores
        return FileScore(
            float(cal.apply(raw.score)),
            cal.threshold,
            tuple(float(v) for v in cal.apply(frames)) if frames is not None else None,
            raw.aggregation,
            raw=raw.score,
        )

    def predict_proba(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """P(synthetic) per image (RGB uint8 arrays of any size)."""
        spec = self.input_spec()
        scores = score_prepared(
            self, [spec.prepare(im) for im in images], video=[False] * len(images)
        )
        return np.asarray([s.score for s in scores], dtype=np.float64)

    @property
    def operating_threshold(self) -> float:
        """The threshold on the scores this detector returns. With a calibration every score
        is a calibrated one, so the calibration's threshold; ``threshold`` is on the raw
        scores, and comparing a calibrated score with it gives an FPR that is neither the one
        calibrated for nor the detector's own."""
        cal = self.calibration
        return float(cal.threshold if cal is not None else self.threshold)

    def predict(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return (self.predict_proba(images) >= self.operating_threshold).astype(np.int64)

    def identity(self) -> dict[str, Any]:
        """Who made this detector and on what: licence, source, paper, training domain, the
        hashes of what it was made from, and its calibration — shown by ``detectors info``,
        ``detectors list``, model cards and the scan report."""
        train = (self.training_summary or {}).get("train") or {}
        sources = ", ".join(sorted((train.get("sources") or {}).keys()))
        out: dict[str, Any] = {
            "detector": self.name,
            "kind": self.kind,
            "licence": "weights trained with deepaudit on your data (code Apache-2.0)",
            "non_commercial": False,
            "source": "trained with deepaudit",
            "paper": None,
            "training_domain": f"deepaudit manifest: {sources}" if sources else "unknown",
            "inputs": [],
            "warnings": [],
            "threshold": self.threshold,
            "probabilistic": True,  # its score is a probability (a sigmoid of a trained logit)
        }
        out.update(self._identity_extra())
        cal = self.calibration
        out["calibration"] = (
            {
                "method": cal.method,
                "threshold": cal.threshold,
                "target_fpr": cal.target_fpr,
                "fitted_on": cal.fitted_on,
                "ece_before": (cal.report.get("before") or {}).get("ece"),
                "ece_after": (cal.report.get("after") or {}).get("ece"),
            }
            if cal is not None
            else None
        )
        return out

    def _identity_extra(self) -> dict[str, Any]:
        return {}

    def config(self) -> dict[str, Any]:
        return {
            "format": "deepaudit-detector/1",
            "detector": self.name,
            "kind": self.kind,
            "params": self.params(),
            "input_size": self.input_size,
            "threshold": self.threshold,
            "training": self.training_summary,
            "metrics": self.metrics,
        }

    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        self._save_weights(root)
        tmp = root / (CONFIG_NAME + ".part")
        tmp.write_text(json.dumps(self.config(), indent=2, default=_json_default) + "\n")
        os.replace(tmp, root / CONFIG_NAME)
        return root

    @classmethod
    def from_pretrained(cls, root: Path, config: dict[str, Any], **overrides: Any) -> Detector:
        from deepaudit.errors import DeepauditError

        params = {**config.get("params", {}), **overrides}
        try:
            det = cls(**params)
        except TypeError as exc:
            raise DeepauditError(
                f"{root}: config does not fit detector {cls.name!r}: {exc}"
            ) from None
        det.threshold = float(config.get("threshold", 0.5))
        det.training_summary = config.get("training", {})
        det.metrics = config.get("metrics", {})
        det._restore(root, config)
        try:
            det._load_weights(root)
        except DeepauditError:
            raise  # already one line naming the file and the reason
        except Exception as exc:  # safetensors, torch and JSON each raise their own types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise DeepauditError(f"{root}: weights do not load into {cls.name!r}: {first}") from exc
        return det


def save_module_weights(module: Any, root: Path) -> Path:
    """A torch module's weights as ``root/model.safetensors`` (no pickle)."""
    from safetensors.torch import save_file

    path = root / "model.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, path)
    return path


def load_module_weights(module: Any, root: Path) -> Path:
    """Load ``root/model.safetensors`` into ``module`` (eval mode); a one-line error when the
    file is missing."""
    from safetensors.torch import load_file

    from deepaudit.errors import DeepauditError

    path = root / "model.safetensors"
    if not path.is_file():
        raise DeepauditError(f"{root}: model.safetensors missing")
    module.load_state_dict(load_file(path))
    module.eval()
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class LinearHead:
    """Standardise + logistic regression, stored as plain numbers (no pickle)."""

    def __init__(self, c: float = 1.0) -> None:
        self.c = c
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.coef_: np.ndarray | None = None
        self.intercept_: float = 0.0

    def fit(self, x: np.ndarray, y: np.ndarray, seed: int = 0) -> LinearHead:
        from sklearn.linear_model import LogisticRegression

        x = np.asarray(x, dtype=np.float64)
        self.mean_ = x.mean(axis=0)
        self.scale_ = x.std(axis=0)
        self.scale_[self.scale_ < 1e-12] = 1.0
        lr = LogisticRegression(C=self.c, max_iter=2000, random_state=seed)
        lr.fit((x - self.mean_) / self.scale_, y)
        self.coef_ = lr.coef_.ravel().astype(np.float64)
        self.intercept_ = float(lr.intercept_[0])
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = ((np.asarray(x, np.float64) - self.mean_) / self.scale_) @ self.coef_ + self.intercept_
        return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))

    def to_json(self) -> dict[str, Any]:
        return {
            "c": self.c,
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LinearHead:
        h = cls(float(d["c"]))
        h.mean_ = np.asarray(d["mean"], np.float64)
        h.scale_ = np.asarray(d["scale"], np.float64)
        h.coef_ = np.asarray(d["coef"], np.float64)
        h.intercept_ = float(d["intercept"])
        if not (h.mean_.shape == h.scale_.shape == h.coef_.shape) or not math.isfinite(
            h.intercept_
        ):
            raise ValueError("linear head arrays disagree in shape")
        return h
