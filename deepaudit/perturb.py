"""Post-processing that media meets in the wild: JPEG, resizing, blur, noise, cropping.

Generators apply it to their outputs, detectors use it for augmentation and robustness
grids. A perturbation is written as ``name:value`` (``jpeg:75``, ``resize:0.5``,
``blur:2``, ``noise:5``, ``crop:0.9``) so it fits in a suite file, a CLI option and the
``transforms`` list of a manifest item; :func:`parse_perturbation` checks it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["KINDS", "Perturbation", "apply_all", "parse_perturbation"]

Kind = Literal["jpeg", "resize", "blur", "noise", "crop", "webp"]
KINDS: dict[str, str] = {
    "jpeg": "JPEG re-encode at quality 1-100 (4:2:0 chroma, as cameras and platforms do)",
    "webp": "WebP re-encode at quality 1-100",
    "resize": "scale by a factor in (0, 8], bicubic (0.5 halves each side)",
    "blur": "Gaussian blur with sigma in (0, 20] pixels",
    "noise": "additive Gaussian noise, sigma in (0, 100] on the 0-255 scale",
    "crop": "centre crop keeping a fraction in (0, 1] of each side",
}
_RANGES = {
    "jpeg": (1, 100),
    "webp": (1, 100),
    "resize": (1e-3, 8),
    "blur": (1e-3, 20),
    "noise": (1e-3, 100),
    "crop": (1e-3, 1),
}


@dataclass(frozen=True)
class Perturbation:
    kind: Kind
    value: float

    @property
    def spec(self) -> str:
        v = int(self.value) if self.kind in ("jpeg", "webp") else self.value
        return f"{self.kind}:{v:g}" if isinstance(v, float) else f"{self.kind}:{v}"

    def __str__(self) -> str:
        return self.spec

    def apply(self, rgb: np.ndarray, *, seed: int = 0) -> np.ndarray:
        """Apply to an (H, W, 3) uint8 image; ``seed`` makes noise reproducible."""
        from PIL import Image, ImageFilter

        if self.kind in ("jpeg", "webp"):
            buf = io.BytesIO()
            fmt = "JPEG" if self.kind == "jpeg" else "WEBP"
            Image.fromarray(rgb).save(buf, fmt, quality=int(self.value))
            buf.seek(0)
            return np.asarray(Image.open(buf).convert("RGB"))
        if self.kind == "resize":
            h, w = rgb.shape[:2]
            size = (max(1, round(w * self.value)), max(1, round(h * self.value)))
            return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC))
        if self.kind == "blur":
            img = Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(self.value))
            return np.asarray(img)
        if self.kind == "noise":
            rng = np.random.default_rng(seed)
            noisy = rgb.astype(np.float32) + rng.normal(0.0, self.value, rgb.shape)
            return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        h, w = rgb.shape[:2]  # crop
        ch, cw = max(1, round(h * self.value)), max(1, round(w * self.value))
        y, x = (h - ch) // 2, (w - cw) // 2
        return np.ascontiguousarray(rgb[y : y + ch, x : x + cw])


def parse_perturbation(spec: str) -> Perturbation:
    """``"jpeg:75"`` → ``Perturbation("jpeg", 75)``; a ValueError names what is allowed."""
    name, sep, value = str(spec).strip().partition(":")
    name = name.strip().lower()
    if name not in KINDS:
        raise ValueError(
            f"unknown perturbation {spec!r}; use one of "
            + ", ".join(f"{k}:VALUE ({v})" for k, v in KINDS.items())
        )
    if not sep:
        raise ValueError(f"perturbation {spec!r} needs a value, e.g. {name}:{_RANGES[name][1]}")
    try:
        v = float(value)
    except ValueError:
        raise ValueError(f"perturbation {spec!r}: {value!r} is not a number") from None
    lo, hi = _RANGES[name]
    if not (lo <= v <= hi) or v != v:
        raise ValueError(f"perturbation {spec!r}: value must be in [{lo:g}, {hi:g}]")
    if name in ("jpeg", "webp") and v != int(v):
        raise ValueError(f"perturbation {spec!r}: quality must be a whole number")
    return Perturbation(name, v)  # type: ignore[arg-type]


def apply_all(rgb: np.ndarray, perturbations: list[Perturbation], *, seed: int = 0) -> np.ndarray:
    """Apply perturbations in order (each noise step gets its own stream from ``seed``)."""
    for i, p in enumerate(perturbations):
        rgb = p.apply(rgb, seed=seed * 1009 + i)
    return rgb
