"""The dwtDct invisible watermark of Stable Diffusion's reference code: embed and decode.

The primitives shared by the generator suite (which marks its outputs) and
`audit.watermark` (which looks for marks and scores them). See that module and
docs/provenance.md for the schemes, the compatibility check against `invisible-watermark`
and the measured robustness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "SCHEMES",
    "Order",
    "Scheme",
    "binomial_tail",
    "decode_bits",
    "embed_watermark",
    "majority",
    "votes",
]

Order = Literal["bgr", "rgb"]
_SCALE = 36.0  # the package's default quantisation step for the U plane
_BLOCK = 4


def _bits_of_bytes(data: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8)).astype(np.uint8)


def _bits_of_int(value: int, n: int) -> np.ndarray:
    return np.array([(value >> (n - 1 - i)) & 1 for i in range(n)], dtype=np.uint8)


@dataclass(frozen=True)
class Scheme:
    name: str
    description: str
    bits: np.ndarray
    order: Order  # how the reference code hands pixels to the encoder

    @property
    def n_bits(self) -> int:
        return int(self.bits.size)


SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in (
        Scheme(
            "sdxl",
            "SDXL (diffusers), 48 bits 0xB3EC907BB19E",
            _bits_of_int(0xB3EC907BB19E, 48),
            "rgb",
        ),
        Scheme(
            "sd1",
            "Stable Diffusion 1.x scripts, 'StableDiffusionV1'",
            _bits_of_bytes(b"StableDiffusionV1"),
            "bgr",
        ),
        Scheme("sd2", "Stable Diffusion 2.x scripts, 'SDV2'", _bits_of_bytes(b"SDV2"), "bgr"),
    )
}


def binomial_tail(k: int, n: int) -> float:
    """P(X ≥ k) for X ~ Binomial(n, 1/2): the chance of ``k`` matching bits at random."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return math.fsum(math.comb(n, i) for i in range(k, n + 1)) / 2.0**n


# --------------------------------------------------------------------------- transforms


def _u_plane(rgb: np.ndarray, order: Order) -> tuple[np.ndarray, np.ndarray]:
    """The YUV image (uint8) of the array as the encoder saw it, and its cropped U plane."""
    import cv2

    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 image, got shape {rgb.shape}")
    as_bgr = rgb[..., ::-1] if order == "bgr" else rgb
    yuv = cv2.cvtColor(np.ascontiguousarray(as_bgr, dtype=np.uint8), cv2.COLOR_BGR2YUV)
    h, w = (rgb.shape[0] // 4) * 4, (rgb.shape[1] // 4) * 4
    return yuv, yuv[:h, :w, 1].astype(np.float64)


def _ll_blocks(plane: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Haar low-low band of ``plane`` cut into 4×4 blocks, row-major: (N, 4, 4)."""
    ll = (plane[0::2, 0::2] + plane[0::2, 1::2] + plane[1::2, 0::2] + plane[1::2, 1::2]) / 2.0
    bh, bw = ll.shape[0] // _BLOCK, ll.shape[1] // _BLOCK
    blocks = (
        ll[: bh * _BLOCK, : bw * _BLOCK]
        .reshape(bh, _BLOCK, bw, _BLOCK)
        .transpose(0, 2, 1, 3)
        .reshape(-1, _BLOCK, _BLOCK)
    )
    return blocks, (bh, bw)


def _peak(coeffs: np.ndarray) -> np.ndarray:
    flat = np.abs(coeffs.reshape(len(coeffs), -1))
    return np.argmax(flat[:, 1:], axis=1) + 1  # largest value after the first, per block


def votes(rgb: np.ndarray, order: Order) -> np.ndarray:
    """One 0/1 vote per low-low 4×4 block, in the encoder's block order."""
    _, plane = _u_plane(rgb, order)
    coeffs, _ = _ll_blocks(plane)
    pos = _peak(coeffs)
    vals = np.abs(coeffs.reshape(len(coeffs), -1)[np.arange(len(coeffs)), pos])
    return (np.mod(vals, _SCALE) > 0.5 * _SCALE).astype(np.float64)


def majority(votes: np.ndarray, n_bits: int) -> np.ndarray:
    if len(votes) < n_bits:
        raise ValueError(
            f"image too small for a {n_bits}-bit mark: {len(votes)} blocks, need {n_bits}"
        )
    idx = np.arange(len(votes)) % n_bits
    ones = np.bincount(idx, weights=votes, minlength=n_bits)
    counts = np.bincount(idx, minlength=n_bits)
    return (ones / counts > 0.5).astype(np.uint8)


def decode_bits(rgb: np.ndarray, n_bits: int, *, order: Order = "bgr") -> np.ndarray:
    """The ``n_bits`` message bits read from an RGB uint8 image (majority over blocks)."""
    return majority(votes(rgb, order), n_bits)


def embed_watermark(
    rgb: np.ndarray, scheme: str = "sdxl", *, order: Order | None = None, passes: int = 4
) -> np.ndarray:
    """Return a copy of an RGB uint8 image carrying ``scheme``'s message (dwtDct, U plane).

    ``order`` defaults to the scheme's reference convention, so SD/SDXL decoders find it.
    Rounding to uint8 and clipping saturated colours move some values off their step;
    up to ``passes`` passes re-embed into the result until every bit reads back.
    """
    sch = SCHEMES[scheme]
    order = order or sch.order
    out = rgb
    for _ in range(max(1, passes)):
        out = _embed_once(out, sch, order)
        if np.array_equal(decode_bits(out, sch.n_bits, order=order), sch.bits):
            break
    return out


def _embed_once(rgb: np.ndarray, sch: Scheme, order: Order) -> np.ndarray:
    import cv2

    yuv, plane = _u_plane(rgb, order)
    coeffs, (bh, bw) = _ll_blocks(plane)
    if len(coeffs) < sch.n_bits:
        raise ValueError(
            f"image too small for the {sch.name} mark: {len(coeffs)} blocks, need {sch.n_bits}"
        )
    n = len(coeffs)
    flat = coeffs.reshape(n, -1).copy()
    pos = _peak(coeffs)
    val = flat[np.arange(n), pos]
    bits = sch.bits[np.arange(n) % sch.n_bits].astype(np.float64)
    # The nearest value whose remainder encodes the bit. The package floors instead, which
    # moves values twice as far on average and, on smooth chroma, often below another value
    # of the block that the decoder then reads: with rounding our marks decode 48/48 where the
    # package's read 45/48, at +2 dB PSNR, and survive JPEG better (docs/provenance.md).
    offset = (0.25 + 0.5 * bits) * _SCALE
    mag = np.maximum(np.rint((np.abs(val) - offset) / _SCALE), 0) * _SCALE + offset
    flat[np.arange(n), pos] = np.where(val >= 0, mag, -mag)
    delta_blocks = flat.reshape(n, _BLOCK, _BLOCK) - coeffs
    delta_ll = delta_blocks.reshape(bh, bw, _BLOCK, _BLOCK).transpose(0, 2, 1, 3)
    delta_ll = delta_ll.reshape(bh * _BLOCK, bw * _BLOCK)
    # Only the low-low band changes, so each pixel of a 2×2 cell moves by ΔLL / 2.
    up = np.repeat(np.repeat(delta_ll / 2.0, 2, axis=0), 2, axis=1)
    u = yuv[..., 1].astype(np.float64)
    u[: up.shape[0], : up.shape[1]] += up
    yuv = yuv.copy()
    yuv[..., 1] = np.clip(np.rint(u), 0, 255).astype(np.uint8)
    out = cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR)
    return np.ascontiguousarray(out[..., ::-1] if order == "bgr" else out)
