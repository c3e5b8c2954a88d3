"""Video detection: an image detector on sampled frames + temporal aggregation.

``video-frames`` wraps any trained image detector folder (``base=DIR``): a clip is scored
on ``frames`` evenly spaced frames (optionally face crops from OpenCV's Haar cascade) and
the frame scores are aggregated (``mean``, ``max`` or ``topk`` mean). ``fit`` learns
nothing new in the image detector; it calibrates the threshold on the training videos.
Inputs, batching and aggregation go through :mod:`deepaudit.detectors.inference` like
every other detector; this class only says which image detector, which frames and how.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.detectors._registry import load_detector, register_detector
from deepaudit.detectors.base import Detector
from deepaudit.detectors.data import ItemSet
from deepaudit.detectors.inference import Aggregation, InputSpec, aggregate, score_prepared
from deepaudit.errors import DeepauditError, DependencyError

__all__ = ["FrameAggregateDetector"]


@register_detector("video-frames")
class FrameAggregateDetector(Detector):
    """Score K frames with an image detector, aggregate per video."""

    kind = "video"

    def __init__(
        self,
        *,
        base: str | None = None,
        frames: int = 8,
        aggregation: Aggregation = "mean",
        k: int = 3,
        faces: bool = False,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        if base is None:
            raise DependencyError(
                "detector 'video-frames' needs base=DIR: a trained image detector"
            )
        aggregate(np.zeros(1), aggregation)  # validates the name
        self.base = str(base)
        self.frames, self.k, self.faces = int(frames), int(k), bool(faces)
        self.aggregation = self.video_aggregation = aggregation
        self.video_topk = self.k
        self.image_detector = load_detector(base)
        self.input_size = self.image_detector.input_size

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "base": self.base,
            "frames": self.frames,
            "aggregation": self.aggregation,
            "k": self.k,
            "faces": self.faces,
        }

    def input_spec(self) -> InputSpec:
        return dataclasses.replace(self.image_detector.input_spec(), faces=self.faces)

    def score_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Each frame's score as its image detector gives it (calibrated when that is)."""
        p = self.image_detector.score_inputs(inputs)
        cal = self.image_detector.calibration
        return cal.apply(p) if cal is not None else p

    def predict_proba(self, videos: Sequence[Any]) -> np.ndarray:
        """Each element: a (T, H, W, 3) array of frames, or a single image (one frame)."""
        spec = self.input_spec()
        arrays = [np.asarray(v) for v in videos]
        scores = score_prepared(
            self, [spec.prepare(a) for a in arrays], video=[a.ndim == 4 for a in arrays]
        )
        return np.asarray([s.score for s in scores], dtype=np.float64)

    def fit(self, train: ItemSet, val: ItemSet | None = None, **_: Any) -> Detector:
        return self  # the image detector is trained; the threshold is calibrated by the caller

    def _save_weights(self, root: Path) -> None:
        return None  # the image detector folder is referenced by path

    def _load_weights(self, root: Path) -> None:
        if not Path(self.base).is_dir():
            raise DeepauditError(f"{root}: base image detector {self.base} is missing")
