"""Stable Diffusion dwtDct watermarks: embed, decode, p-values, and what JPEG does to them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from deepaudit.audit.watermark import (
    SCHEMES,
    binomial_tail,
    decode_bits,
    detect_watermark,
    embed_watermark,
)
from deepaudit.media import write_image


@pytest.fixture(scope="module")
def real() -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(skimage.data.chelsea()[:256, :256])


def test_binomial_tail_matches_scipy():
    from scipy.stats import binom

    for n in (32, 48, 136):
        for k in (0, 1, n // 2, n - 3, n):
            assert binomial_tail(k, n) == pytest.approx(
                binom.sf(k - 1, n, 0.5), rel=1e-9, abs=1e-300
            )
    assert binomial_tail(49, 48) == 0.0


@pytest.mark.parametrize("scheme", ["sdxl", "sd1", "sd2"])
def test_embedded_mark_is_decoded_exactly(real, scheme):
    marked = embed_watermark(real, scheme)
    assert marked.shape == real.shape and marked.dtype == np.uint8
    psnr = 10 * np.log10(255**2 / np.mean((marked.astype(float) - real) ** 2))
    assert psnr > 35  # invisible
    sch = SCHEMES[scheme]
    matched = int((decode_bits(marked, sch.n_bits, order=sch.order) == sch.bits).sum())
    # Saturated colours clip some votes; with 136 bits a 256² image has ~7 votes per bit.
    assert matched == sch.n_bits if scheme == "sdxl" else matched >= sch.n_bits - 10
    report = detect_watermark(marked)
    assert report.detected and report.best.scheme == scheme
    assert report.p_value < 1e-6


def test_unmarked_real_photo_is_not_detected(real):
    report = detect_watermark(real)
    assert not report.detected
    assert report.p_value > 0.01
    assert len(report.matches) == 6  # three schemes × two channel orders


def test_mark_survives_png_but_not_heavy_jpeg(tmp_path, real):
    marked = embed_watermark(real, "sdxl")
    assert detect_watermark(write_image(tmp_path / "m.png", marked)).detected
    buf = io.BytesIO()
    Image.fromarray(marked).save(buf, "JPEG", quality=50)
    jpeg = np.asarray(Image.open(buf).convert("RGB"))
    best = max(
        (m for m in detect_watermark(jpeg).matches if m.scheme == "sdxl"), key=lambda m: m.matched
    )
    assert best.matched < 40  # dwtDct is fragile: absence of a mark proves nothing


def test_small_images_are_skipped_with_a_reason():
    tiny = np.zeros((16, 16, 3), np.uint8)
    report = detect_watermark(tiny)
    assert not report.detected and report.best is None
    assert "too small" in report.skipped
    with pytest.raises(ValueError, match="too small"):
        embed_watermark(tiny)
