"""Invisible watermarks of the Stable Diffusion reference code: decode, score, embed.

Stable Diffusion's reference scripts and diffusers' SDXL pipelines mark their outputs with
the `invisible-watermark` package's ``dwtDct`` method:

- SD 1.x scripts: the bytes ``StableDiffusionV1`` (136 bits), image in BGR order;
- SD 2.x scripts: the bytes ``SDV2`` (32 bits), BGR order;
- SDXL in diffusers: 48 bits ``0xB3EC907BB19E``; diffusers hands the encoder an *RGB* array
  where the package expects BGR, so the mark sits in a different chroma plane.

``dwtDct`` converts the image to YUV, takes the level-1 Haar DWT of the U plane, cuts its
low-low band into 4×4 blocks and, in each, quantises the largest-magnitude value other than
the block's first (step 36) so that its remainder encodes one bit — despite the name, the
package applies no DCT in this method. Bit *i* of the message goes into every block whose
index ≡ *i* (mod length); decoding averages those votes. Checked against the package itself:
each decoder reads the other's marks (figures in docs/provenance.md).

`deepaudit.watermark` re-implements that scheme with NumPy and OpenCV (vectorised over
blocks) instead of importing `imwatermark`, whose package import loads PyTorch for its
RivaGAN model and needs onnxruntime and the non-headless OpenCV wheel. Decoding reports, per
scheme and channel order, how many bits match and the binomial probability of at least that
many matches by chance (a p-value), instead of a bare threshold. ``dwtDct`` is fragile:
after JPEG q75 about 32 of 48 bits are left (docs/provenance.md has the measured figures),
so *absence* of a mark proves nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepaudit.watermark import (
    SCHEMES,
    Order,
    binomial_tail,
    decode_bits,
    embed_watermark,
    majority,
    votes,
)

__all__ = [
    "SCHEMES",
    "WatermarkMatch",
    "WatermarkReport",
    "binomial_tail",
    "decode_bits",
    "detect_watermark",
    "embed_watermark",
]


@dataclass(frozen=True)
class WatermarkMatch:
    scheme: str
    order: Order
    matched: int
    n_bits: int
    p_value: float  # chance of ≥ matched bits on an unmarked image

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "order": self.order,
            "matched_bits": self.matched,
            "n_bits": self.n_bits,
            "p_value": self.p_value,
        }


@dataclass(frozen=True)
class WatermarkReport:
    """Every scheme × channel order tried; ``detected`` uses a Bonferroni-corrected p-value."""

    matches: tuple[WatermarkMatch, ...]
    alpha: float
    skipped: str | None = None  # why nothing was decoded (too small, not an image)

    @property
    def best(self) -> WatermarkMatch | None:
        return min(self.matches, key=lambda m: m.p_value, default=None)

    @property
    def p_value(self) -> float | None:
        best = self.best
        return None if best is None else min(1.0, best.p_value * len(self.matches))

    @property
    def detected(self) -> bool:
        p = self.p_value
        return p is not None and p < self.alpha

    def to_json(self) -> dict[str, Any]:
        best = self.best
        return {
            "detected": self.detected,
            "scheme": best.scheme if best and self.detected else None,
            "p_value": self.p_value,
            "alpha": self.alpha,
            "best": best.to_json() if best else None,
            "tried": [m.to_json() for m in self.matches],
            "skipped": self.skipped,
        }


def detect_watermark(
    image: np.ndarray | str | os.PathLike[str],
    *,
    schemes: tuple[str, ...] = ("sdxl", "sd1", "sd2"),
    alpha: float = 1e-3,
) -> WatermarkReport:
    """Decode every scheme in both channel orders from an RGB uint8 image or an image file."""
    if not isinstance(image, np.ndarray):
        from deepaudit.media import read_image

        image = read_image(image)
    matches: list[WatermarkMatch] = []
    skipped: dict[str, str] = {}
    for order in ("bgr", "rgb"):
        block_votes = votes(image, order)  # shared by every scheme: one colour conversion per order
        for name in schemes:
            sch = SCHEMES[name]
            try:
                bits = majority(block_votes, sch.n_bits)
            except ValueError as exc:
                skipped[name] = f"{name}: {exc}"
                continue
            matched = int((bits == sch.bits).sum())
            matches.append(
                WatermarkMatch(name, order, matched, sch.n_bits, binomial_tail(matched, sch.n_bits))
            )
    return WatermarkReport(tuple(matches), alpha, "; ".join(skipped.values()) or None)
