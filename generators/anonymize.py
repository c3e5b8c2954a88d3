"""Face anonymisation: each detected face replaced by a generated one, and the edit declared.

Generative models are a privacy tool as well as a deception tool: a photo can be shared
with its people's faces swapped for faces that belong to nobody. Done honestly, the result
says so. Steps per image:

1. **detect** faces with OpenCV: the Haar cascade shipped with opencv-python(-headless), or
   YuNet from a local ONNX model file when given (better on small, turned or dark faces);
2. **mask** each face with an ellipse a little larger than the detector's box, whose border
   ramps from 1 to 0 (``feather``) so the new face blends in; outside the ellipses the mask
   is exactly 0 and those pixels are the original's, bit for bit (outputs are PNG);
3. **replace** the masked region by a generated face: a sample of a class-conditional face
   model trained by the suite (:class:`ModelFaces`, resized to the face and matched to the
   region's mean colour), or a local inpainting pipeline (:class:`InpaintFaces`);
4. **sign** the output with C2PA: action ``c2pa.edited``, digital source type
   ``compositeWithTrainedAlgorithmicMedia``, the original as ``parentOf`` ingredient (its
   own manifest, if it had one, comes along). ``deepaudit provenance`` and ``scan`` then
   report the file as AI-edited. The original's metadata (EXIF, GPS) is not copied.

An image without a detected face is reported and left alone (no output), so a missed face
is visible in the report rather than hidden in a file that looks anonymised.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from deepaudit.errors import DeepauditError

__all__ = [
    "AnonymizeError",
    "AnonymizedFile",
    "FaceBox",
    "FaceDetector",
    "InpaintFaces",
    "ModelFaces",
    "anonymize_file",
    "anonymize_image",
    "face_mask",
]

logger = logging.getLogger(__name__)

DIGITAL_SOURCE_TYPE = "compositeWithTrainedAlgorithmicMedia"
HAAR_CASCADE = "haarcascade_frontalface_default.xml"

# (crop of the image around one face, its mask 0..255, seed) → replacement pixels, same shape
FaceSource = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


class AnonymizeError(DeepauditError):
    """An image, model or option anonymisation cannot work with; the message says why."""


@dataclass(frozen=True)
class FaceBox:
    """A detected face: pixel box (x, y, w, h) in the image, the detector and its score."""

    x: int
    y: int
    w: int
    h: int
    detector: str
    score: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "box": [self.x, self.y, self.w, self.h],
            "detector": self.detector,
            "score": self.score,
        }


class FaceDetector:
    """OpenCV face detection: YuNet when ``yunet`` (a local .onnx file) is given, else the
    Haar cascade shipped with OpenCV. ``min_size``: smallest face side in pixels."""

    def __init__(self, *, yunet: str | os.PathLike[str] | None = None, min_size: int = 24) -> None:
        import cv2

        self.min_size = int(min_size)
        self.yunet_path = Path(yunet) if yunet is not None else None
        if self.yunet_path is not None:
            if not self.yunet_path.is_file():
                raise AnonymizeError(f"{self.yunet_path}: YuNet model file not found")
            try:
                self._yunet = cv2.FaceDetectorYN.create(str(self.yunet_path), "", (320, 320))
            except cv2.error as exc:
                reason = str(exc).strip().splitlines()[-1]
                raise AnonymizeError(f"{self.yunet_path}: not a YuNet model ({reason})") from None
            self.name = f"yunet:{self.yunet_path.name}"
        else:
            path = Path(cv2.data.haarcascades) / HAAR_CASCADE
            self._haar = cv2.CascadeClassifier(str(path))
            if self._haar.empty():
                raise AnonymizeError(f"{path}: OpenCV's Haar cascade did not load")
            self.name = "haar:frontalface_default"

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Faces in an RGB uint8 image, largest first."""
        import cv2

        h, w = image.shape[:2]
        if self.yunet_path is not None:
            self._yunet.setInputSize((w, h))
            _, found = self._yunet.detect(np.ascontiguousarray(image[..., ::-1]))
            rows = [] if found is None else found
            boxes = [
                FaceBox(int(r[0]), int(r[1]), int(r[2]), int(r[3]), self.name, float(r[-1]))
                for r in rows
                if min(r[2], r[3]) >= self.min_size
            ]
        else:
            gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
            found = self._haar.detectMultiScale(
                gray, scaleFactor=1.1, minNeighbors=5, minSize=(self.min_size, self.min_size)
            )
            boxes = [FaceBox(int(x), int(y), int(bw), int(bh), self.name) for x, y, bw, bh in found]
        clipped = []
        for b in boxes:
            x0, y0 = max(0, b.x), max(0, b.y)
            x1, y1 = min(w, b.x + b.w), min(h, b.y + b.h)
            if x1 - x0 >= 2 and y1 - y0 >= 2:
                clipped.append(FaceBox(x0, y0, x1 - x0, y1 - y0, b.detector, b.score))
        return sorted(clipped, key=lambda b: -b.w * b.h)


def _ellipse(box: FaceBox, grow: tuple[float, float]) -> tuple[float, float, float, float]:
    """Centre and semi-axes of the mask ellipse: the box grown so that the forehead and chin
    (outside Haar's tight box) are covered too."""
    cx, cy = box.x + box.w / 2.0, box.y + box.h / 2.0
    return cx, cy, box.w / 2.0 * grow[0], box.h / 2.0 * grow[1]


def face_mask(
    shape: tuple[int, int],
    boxes: Sequence[FaceBox],
    *,
    feather: float = 0.25,
    grow: tuple[float, float] = (1.15, 1.3),
) -> np.ndarray:
    """Float mask in [0, 1]: 1 inside each face's ellipse, ramping down over the outer
    ``feather`` fraction of its radius, exactly 0 outside every ellipse."""
    if not 0.0 < feather <= 1.0:
        raise AnonymizeError(f"feather must be in (0, 1], got {feather}")
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    mask = np.zeros((h, w), dtype=np.float64)
    for b in boxes:
        cx, cy, ax, ay = _ellipse(b, grow)
        r = np.sqrt(((xx + 0.5 - cx) / ax) ** 2 + ((yy + 0.5 - cy) / ay) ** 2)
        mask = np.maximum(mask, np.clip((1.0 - r) / feather, 0.0, 1.0))
    return mask


def _region(box: FaceBox, shape: tuple[int, int], grow: tuple[float, float]) -> tuple[slice, ...]:
    cx, cy, ax, ay = _ellipse(box, grow)
    h, w = shape
    y0, y1 = max(0, int(np.floor(cy - ay))), min(h, int(np.ceil(cy + ay)))
    x0, x1 = max(0, int(np.floor(cx - ax))), min(w, int(np.ceil(cx + ax)))
    return slice(y0, y1), slice(x0, x1)


def anonymize_image(
    image: np.ndarray,
    boxes: Sequence[FaceBox],
    source: FaceSource,
    *,
    seed: int = 0,
    feather: float = 0.25,
    grow: tuple[float, float] = (1.15, 1.3),
) -> tuple[np.ndarray, np.ndarray]:
    """The image with each face replaced and alpha-blended by its mask; returns the new
    image and the mask (float [0, 1]). Pixels where the mask is 0 are the original's."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise AnonymizeError(f"expected an RGB uint8 image, got {img.dtype} {img.shape}")
    out = img.astype(np.float64)
    full = np.zeros(img.shape[:2], dtype=np.float64)
    for k, b in enumerate(boxes):
        sl = _region(b, img.shape[:2], grow)
        m = face_mask(img.shape[:2], [b], feather=feather, grow=grow)[sl]
        crop = img[sl]
        new = np.asarray(source(crop, np.rint(m * 255).astype(np.uint8), seed + k))
        if new.shape != crop.shape:
            raise AnonymizeError(f"face source returned {new.shape} for a {crop.shape} region")
        a = m[..., None]
        out[sl] = out[sl] * (1.0 - a) + new.astype(np.float64) * a
        full[sl] = np.maximum(full[sl], m)
    result = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    result[full == 0] = img[full == 0]  # untouched means untouched, not "rounded back"
    return result, full


def _resize(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    h, w = shape
    src = np.ascontiguousarray(pixels)
    interp = cv2.INTER_CUBIC if h > src.shape[0] else cv2.INTER_AREA
    return cv2.resize(src, (w, h), interpolation=interp)


def _match_mean(new: np.ndarray, crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Shift the generated face's colour so its masked mean is the region's (the light of
    the scene), keeping its own structure."""
    m = mask.astype(np.float64)[..., None] / 255.0
    if m.sum() < 1:
        return new
    shift = (crop * m).sum((0, 1)) / m.sum() - (new * m).sum((0, 1)) / m.sum()
    return np.clip(new.astype(np.float64) + shift, 0, 255).astype(np.uint8)


class ModelFaces:
    """Faces sampled from a face model trained by the suite (a deepaudit pixel or latent
    diffusion folder). A class-conditional model gets ``face_class`` when given, else a
    class drawn per face from the seed (which group a face is drawn from says nothing about
    who was there)."""

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        face_class: str | None = None,
        steps: int = 25,
        guidance: float = 2.0,
        device: str = "auto",
    ) -> None:
        import json

        from deepaudit.generators import create_generator

        self.model = Path(model)
        meta_path = self.model / "deepaudit.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise AnonymizeError(f"{self.model}: not a deepaudit face model folder") from None
        self.classes = list(meta.get("classes") or [])
        if face_class is not None and face_class not in self.classes:
            valid = ", ".join(self.classes) or "none (the model is unconditional)"
            raise AnonymizeError(f"{self.model}: no class {face_class!r}; classes: {valid}")
        self.face_class = face_class
        family = meta.get("family", "pixel")
        self.generator = create_generator(
            f"{family}-ddim",
            model=self.model,
            steps=steps,
            guidance=guidance if self.classes else 1.0,
            device=device,
        )
        self.name = f"{family}-ddim:{self.model.name}"

    def __call__(self, crop: np.ndarray, mask: np.ndarray, seed: int) -> np.ndarray:
        from deepaudit.generators import GenerationRequest

        label = self.face_class
        if label is None and self.classes:
            label = self.classes[int(np.random.default_rng(seed).integers(len(self.classes)))]
        item = self.generator.generate([GenerationRequest(seed=seed, class_label=label)])[0]
        return _match_mean(_resize(item.pixels, crop.shape[:2]), crop, mask)


class InpaintFaces:
    """Faces painted into the masked region by a local inpainting pipeline (a diffusers
    folder, run by the ``sd-inpaint`` generator) at ``size``² pixels, then resized back."""

    def __init__(
        self,
        pipeline: str | os.PathLike[str],
        *,
        prompt: str = "a photo of a person's face",
        size: int = 512,
        steps: int = 25,
        device: str = "auto",
    ) -> None:
        from deepaudit.generators import create_generator

        self.pipeline = Path(pipeline)
        if not self.pipeline.is_dir():
            raise AnonymizeError(f"{self.pipeline}: inpainting pipeline folder not found")
        self.prompt, self.size = prompt, int(size)
        self.generator = create_generator(
            "sd-inpaint", model=self.pipeline, steps=steps, device=device
        )
        self.name = f"sd-inpaint:{self.pipeline.name}"

    def __call__(self, crop: np.ndarray, mask: np.ndarray, seed: int) -> np.ndarray:
        from deepaudit.generators import GenerationRequest

        s = (self.size, self.size)
        req = GenerationRequest(
            seed=seed, prompt=self.prompt, init_image=_resize(crop, s), mask=_resize(mask, s)
        )
        item = self.generator.generate([req])[0]
        return _resize(item.pixels, crop.shape[:2])


@dataclass(frozen=True)
class AnonymizedFile:
    """What happened to one input: ``anonymized`` (output written and signed), ``no-faces``
    (left alone), or ``error`` (with the reason)."""

    source: Path
    status: Literal["anonymized", "no-faces", "error"]
    output: Path | None = None
    faces: tuple[FaceBox, ...] = ()
    reason: str = ""
    face_changes: tuple[float, ...] = ()  # mean |Δ| per face box, in grey levels
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "status": self.status,
            "output": str(self.output) if self.output else None,
            "faces": [f.to_json() for f in self.faces],
            "face_mean_abs_change": list(self.face_changes),
            "reason": self.reason,
            **self.extra,
        }


def _box_change(before: np.ndarray, after: np.ndarray, b: FaceBox) -> float:
    """Mean absolute difference inside a face box, in grey levels (0-255)."""
    sl = slice(b.y, b.y + b.h), slice(b.x, b.x + b.w)
    return float(np.abs(after[sl].astype(np.int16) - before[sl].astype(np.int16)).mean())


def _seed_of(path: Path) -> int:
    """A seed from the file's bytes: the same photo gets the same new faces on a rerun."""
    return int(hashlib.sha256(path.read_bytes()).hexdigest()[:8], 16)


def anonymize_file(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    detector: FaceDetector,
    source: FaceSource,
    credentials: Any,
    source_name: str = "face model",
    feather: float = 0.25,
) -> AnonymizedFile:
    """Detect, replace, write ``out_dir/<stem>.anon.png`` and sign it (see the module
    docstring). Unreadable inputs and inputs C2PA cannot take as ingredient are
    ``error``, never raised, so one bad file does not stop a batch."""
    from deepaudit.c2pa_layer import sign_file
    from deepaudit.media import read_image, write_image

    src = Path(path)
    try:
        image = read_image(src)
    except DeepauditError as exc:
        return AnonymizedFile(src, "error", reason=str(exc))
    boxes = detector.detect(image)
    if not boxes:
        return AnonymizedFile(
            src, "no-faces", reason=f"no face found by {detector.name}; file left unchanged"
        )
    new, _ = anonymize_image(image, boxes, source, seed=_seed_of(src), feather=feather)
    changes = tuple(round(_box_change(image, new, b), 2) for b in boxes)
    out = Path(out_dir) / f"{src.stem}.anon.png"
    tmp = out.with_name(f".{out.name}.unsigned.png")
    write_image(tmp, new)
    try:
        sign_file(
            tmp,
            credentials,
            out,
            digital_source_type=DIGITAL_SOURCE_TYPE,
            action="c2pa.edited",
            title=out.name,
            parameters={
                "description": "faces replaced by generated faces (anonymisation)",
                "faces": len(boxes),
                "face_detector": detector.name,
                "face_generator": source_name,
            },
            parent=src,
        )
    except DeepauditError as exc:
        return AnonymizedFile(src, "error", faces=tuple(boxes), reason=str(exc))
    finally:
        tmp.unlink(missing_ok=True)
    return AnonymizedFile(src, "anonymized", out, tuple(boxes), face_changes=changes)
