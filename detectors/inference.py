"""The detector inference contract: decoded media in, per-file scores out, streamed in batches.

Every caller that scores files — the scan, evaluation, training-time validation and
calibration, the generator audit, the video detector — goes through this module, so none of
them needs to know how a detector prepares its inputs or turns frame scores into a file score:

1. :class:`InputSpec` (from ``Detector.input_spec()``) says how a detector wants its pixels.
   It is a small frozen record, so scan worker processes prepare inputs without holding the
   model: :meth:`InputSpec.prepare` turns a decoded image, or a clip's sampled frames, into
   an ``(n, S, S, 3)`` uint8 array (one centre crop per image or frame; optionally the
   largest face of each frame first).
2. ``Detector.score_inputs(batch)`` scores prepared inputs, one probability each.
3. ``Detector.reduce(per_input, video=...)`` makes the file's :class:`FileScore`: an image's
   single score, or a clip's aggregate with its per-frame scores.

:func:`score_prepared` batches prepared inputs of many files through a detector (inputs of
different files share batches) and :func:`score_items` streams a labelled set from disk.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from deepaudit.detectors.data import ItemSet, LabeledItem, crop
from deepaudit.errors import DeepauditError

__all__ = [
    "Aggregation",
    "FileScore",
    "InputSpec",
    "aggregate",
    "detector_keys",
    "face_crops",
    "score_items",
    "score_prepared",
]

logger = logging.getLogger(__name__)

Aggregation = Literal["mean", "max", "topk"]
DEFAULT_FRAMES = 8


def aggregate(scores: np.ndarray, how: Aggregation = "mean", k: int = 3) -> float:
    """One score from per-frame scores: their mean, their max, or the mean of the top ``k``."""
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


@dataclass(frozen=True)
class InputSpec:
    """How a detector wants its pixels (hashable and picklable: worker processes use it).

    The default (``size`` only) is deepaudit's own crop: the centred ``size``² square, images
    smaller than that scaled up first. Published detectors ask for their papers' exact
    pipeline instead (``exact=True``): an optional ``resize`` of the shorter side (PIL, as
    torchvision's ``Resize`` does on PIL images), then torchvision's ``CenterCrop`` (offsets
    rounded, smaller images padded with zeros), or the whole image when ``size`` is None.
    """

    size: int | None  # side of the square centre crop (None: the whole image, exact only)
    faces: bool = False  # crop each frame to its largest face first (frames without one: whole)
    resize: int | None = None  # shorter side resized to this first (exact only)
    resize_mode: str = "bilinear"  # bilinear | bicubic | nearest (PIL filters)
    exact: bool = False  # torchvision's Resize/CenterCrop arithmetic instead of deepaudit's crop

    def __post_init__(self) -> None:
        if not self.exact and (self.size is None or self.resize is not None):
            raise ValueError("a whole-image or resized InputSpec needs exact=True")
        if self.resize_mode not in _PIL_FILTERS:
            raise ValueError(f"resize_mode must be one of {sorted(_PIL_FILTERS)}")

    def prepare(self, media: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """``(n, h, w, 3)`` uint8: one input for an image (H, W[, 3]), one per frame of a clip
        (a (T, H, W, 3) array or a list of frames). ``h = w = size`` unless ``size`` is None."""
        frames = [media] if isinstance(media, np.ndarray) and media.ndim in (2, 3) else media
        if not len(frames):
            side = self.size or 0
            return np.zeros((0, side, side, 3), np.uint8)
        if self.faces:
            faces = [c for f in frames for c in face_crops(np.asarray(f))[:1]]
            frames = faces or list(frames)
        if not self.exact:
            return np.stack([crop(np.asarray(f), self.size) for f in frames])
        return np.stack([self._exact(np.asarray(f)) for f in frames])

    def _exact(self, image: np.ndarray) -> np.ndarray:
        from PIL import Image

        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        image = image[..., :3]
        if self.resize is not None:
            h, w = image.shape[:2]
            short, long = (h, w) if h <= w else (w, h)
            new_long = int(self.resize * long / short)
            nh, nw = (self.resize, new_long) if h <= w else (new_long, self.resize)
            if (nh, nw) != (h, w):
                pil = Image.fromarray(np.ascontiguousarray(image))
                image = np.asarray(pil.resize((nw, nh), _PIL_FILTERS[self.resize_mode]))
        if self.size is None:
            return np.ascontiguousarray(image)
        h, w = image.shape[:2]
        s = self.size
        if h < s or w < s:  # torchvision pads with zeros, centred (left/top get the floor)
            ph, pw = max(0, s - h), max(0, s - w)
            image = np.pad(image, ((ph // 2, (ph + 1) // 2), (pw // 2, (pw + 1) // 2), (0, 0)))
            h, w = image.shape[:2]
        top, left = round((h - s) / 2.0), round((w - s) / 2.0)
        return np.ascontiguousarray(image[top : top + s, left : left + s])


_PIL_FILTERS = {"nearest": 0, "bilinear": 2, "bicubic": 3}


@dataclass(frozen=True)
class FileScore:
    """A detector's answer for one file: P(synthetic), and for clips the frames behind it."""

    score: float
    threshold: float
    frame_scores: tuple[float, ...] | None = None  # clips only
    aggregation: str | None = None
    raw: float | None = None  # the detector's own score when ``score`` is calibrated

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"threshold": self.threshold, "score": self.score}
        if self.raw is not None:
            out["raw"] = self.raw
        if self.frame_scores is not None:
            out["frame_max"] = max(self.frame_scores) if self.frame_scores else None
            out["frames"] = len(self.frame_scores)
            out["aggregation"] = self.aggregation
        return out


def score_prepared(
    det: Any,
    inputs: Sequence[np.ndarray],
    *,
    video: Sequence[bool],
    batch_size: int | None = 64,
) -> list[FileScore | None]:
    """Score many files' prepared inputs (``InputSpec.prepare`` output, one array per file).

    Inputs of consecutive files are concatenated into batches of ``batch_size`` (None: one
    batch), so small files do not each pay a forward pass. A file with no inputs gets None.
    """
    sizes = [len(x) for x in inputs]
    flat = [x for x in inputs if len(x)]
    probs = np.zeros(0)
    if flat:
        # inputs of one shape share batches; whole-image detectors see many shapes
        shapes: dict[tuple[int, ...], list[int]] = {}
        for k, x in enumerate(flat):
            shapes.setdefault(x.shape[1:], []).append(k)
        parts: list[np.ndarray | None] = [None] * len(flat)
        for members in shapes.values():
            batch = np.concatenate([flat[k] for k in members])
            p = np.concatenate(
                [
                    np.asarray(det.score_inputs(batch[i:j]), dtype=np.float64)
                    for i, j in _chunks(len(batch), batch_size)
                ]
            )
            pos = 0
            for k in members:
                parts[k] = p[pos : pos + len(flat[k])]
                pos += len(flat[k])
        probs = np.concatenate(parts)
    out: list[FileScore | None] = []
    pos = 0
    for n, is_video in zip(sizes, video, strict=True):
        out.append(det.reduce(probs[pos : pos + n], video=is_video) if n else None)
        pos += n
    return out


def _chunks(n: int, size: int | None) -> list[tuple[int, int]]:
    """``[i, j)`` ranges over ``n`` inputs: full batches of ``size``, then the rest in
    power-of-two parts (45 = 32 + 8 + 4 + 1). Forward passes then come in a handful of
    shapes, so the allocator reuses the same blocks and memory stays flat however files and
    clip frames fall into flushes."""
    if not size:
        return [(0, n)] if n else []
    out, i = [], 0
    while n - i >= size:
        out.append((i, i + size))
        i += size
    step = 1 << max(0, size.bit_length() - 1)
    while i < n:
        while step > n - i:
            step >>= 1
        out.append((i, i + step))
        i += step
    return out


def _decode(item: LabeledItem, frames: int) -> np.ndarray:
    from deepaudit.media import read_image, read_video

    if item.kind == "video":
        return read_video(item.path, num_frames=frames).frames
    return read_image(item.path)


def score_items(
    det: Any,
    items: ItemSet,
    *,
    perturb: Callable[[np.ndarray], np.ndarray] | None = None,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """P(synthetic) for each item (NaN where the file cannot be read).

    Files are decoded, perturbed and prepared by a thread pool — PIL, OpenCV and NumPy
    release the GIL — while the detector scores the previous chunk.
    """
    from concurrent.futures import ThreadPoolExecutor

    spec = det.input_spec()
    frames = det.frames or DEFAULT_FRAMES

    def load(item: LabeledItem) -> np.ndarray | None:
        try:
            media = _decode(item, frames)
            if perturb is not None:
                media = (
                    np.stack([perturb(f) for f in media])
                    if item.kind == "video"
                    else perturb(media)
                )
            return spec.prepare(media)
        except DeepauditError as exc:
            logger.warning("skipping %s", exc)
            return None

    scores = np.full(len(items), np.nan)
    n_threads = threads or min(8, max(1, (os.cpu_count() or 2)))
    done = 0
    with ThreadPoolExecutor(n_threads) as pool:
        for start in range(0, len(items), batch_size):
            chunk = items.items[start : start + batch_size]
            loaded = list(pool.map(load, chunk))
            keep = [k for k, x in enumerate(loaded) if x is not None]
            results = score_prepared(
                det,
                [loaded[k] for k in keep],
                video=[chunk[k].kind == "video" for k in keep],
                batch_size=batch_size,
            )
            for k, r in zip(keep, results, strict=True):
                if r is not None:
                    scores[start + k] = r.score
            done += len(chunk)
            if progress is not None:
                progress(done, len(items))
    return scores


def detector_keys(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Unique names for detector folders in results: the folder name, or as many trailing
    path parts as it takes to tell folders with the same name apart (``a/model``, ``b/model``).
    The same folder given twice is refused with a one-line error."""
    resolved = [Path(p).resolve() for p in paths]
    seen: dict[Path, str] = {}
    for p, raw in zip(resolved, paths, strict=True):
        if p in seen:
            raise DeepauditError(f"{raw}: the same detector folder is given twice ({seen[p]})")
        seen[p] = os.fspath(raw)
    keys = [p.name for p in resolved]
    depth = 1
    while len(set(keys)) < len(keys):
        depth += 1
        keys = [
            "/".join(p.parts[-depth:]) if [q.name for q in resolved].count(p.name) > 1 else p.name
            for p in resolved
        ]
    return keys
