"""Video detection: an image detector on sampled frames + temporal aggregation.

``video-frames`` wraps any trained image detector folder (``base=DIR``): a clip is scored
on ``frames`` evenly spaced frames (optionally face crops from OpenCV's Haar cascade) and
the frame scores are aggregated (``mean``, ``max`` or ``topk`` mean). ``fit`` learns
nothing new in the image detector; it calibrates the threshold on the training videos.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from deepaudit.errors import DeepauditError, DependencyError
from detectors._registry import register_detector
from detectors.base import Detector
from detectors.data import ItemSet

__all__ = ["FrameAggregateDetector", "aggregate", "face_crops"]

Aggregation = Literal["mean", "max", "topk"]


def aggregate(scores: np.ndarray, how: Aggregation = "mean", k: int = 3) -> float:
    if scores.size == 0:
        return float("nan")
    if how == "mean":
        return float(scores.mean())
    if how == "max":
        return float(scores.max())
    if how == "topk":
        return float(np.sort(scores)[-min(k, scores.size) :].mean())
    raise ValueError(f"aggregation must be mean, max or topk, got {how!r}")


def face_crops(frame: np.ndarray, *, min_size: int = 32) -> list[np.ndarray]:
    """Faces found by OpenCV's bundled frontal-face Haar cascade (largest first)."""
    import cv2

    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(str(path))
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    boxes = cascade.detectMultiScale(
        grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_size, min_size)
    )
    boxes = sorted(boxes, key=lambda b: -b[2] * b[3])
    out = []
    for x, y, w, h in boxes:
        m = int(0.2 * max(w, h))
        out.append(frame[max(0, y - m) : y + h + m, max(0, x - m) : x + w + m])
    return out


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
        from detectors._registry import load_detector

        aggregate(np.zeros(1), aggregation)  # validates the name
        self.base = str(base)
        self.frames, self.aggregation, self.k, self.faces = (
            int(frames),
            aggregation,
            int(k),
            bool(faces),
        )
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

    def score_frames(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        if self.faces:
            crops = [c for f in frames for c in face_crops(f)[:1]]
            frames = crops or list(frames)
        return self.image_detector.predict_proba(list(frames))

    def predict_video(self, frames: Sequence[np.ndarray]) -> float:
        return aggregate(self.score_frames(frames), self.aggregation, self.k)

    def predict_proba(self, videos: Sequence[Any]) -> np.ndarray:
        """Each element: a (T, H, W, 3) array of frames, or a single image (one frame)."""
        out = []
        for v in videos:
            arr = np.asarray(v)
            frames = [arr] if arr.ndim == 3 else list(arr)
            out.append(self.predict_video(frames))
        return np.asarray(out, dtype=np.float64)

    def fit(self, train: ItemSet, val: ItemSet | None = None, **_: Any) -> Detector:
        return self  # the image detector is trained; the threshold is calibrated by the caller

    def _save_weights(self, root: Path) -> None:
        return None  # the image detector folder is referenced by path

    def _load_weights(self, root: Path) -> None:
        if not Path(self.base).is_dir():
            raise DeepauditError(f"{root}: base image detector {self.base} is missing")
