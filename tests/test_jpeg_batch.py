"""The batched JPEG decoder gives read_image's pixels, upright, and names the files it cannot.

Run with ``device="cpu"`` (torchvision's decoder): the code path the scan takes with nvJPEG.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deepaudit.jpeg_batch import decode_jpegs, jpeg_header
from deepaudit.media import read_image


def _picture(h: int = 40, w: int = 56) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 4) % 256, (y * 6) % 256, ((x + y) * 3) % 256], -1).astype(np.uint8)


def _jpeg(path, array, **save) -> bytes:
    Image.fromarray(array).save(path, "JPEG", quality=90, **save)
    return path.read_bytes()


def test_every_exif_orientation_decodes_to_read_images_pixels(tmp_path):
    blobs, orientations, expected = [], [], []
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.jpg"
        data = _jpeg(path, _picture(), exif=exif.tobytes(), progressive=orientation % 2 == 0)
        header = jpeg_header(data)
        assert header is not None and header.orientation == orientation
        blobs.append(data)
        orientations.append(header.orientation)
        expected.append(read_image(path))
        assert (header.height, header.width) == expected[-1].shape[:2]
    for got, want in zip(decode_jpegs(blobs, orientations, "cpu"), expected, strict=True):
        assert got is not None and got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)


def test_a_rejected_file_is_none_and_the_rest_of_the_batch_decodes(tmp_path):
    good = _jpeg(tmp_path / "good.jpg", _picture())
    bad = bytearray(good)
    bad[bad.index(b"\xff\xda") + 5] = 9  # the scan names a component the frame lacks
    out = decode_jpegs([good, bytes(bad), good], [1, 1, 1], "cpu")
    assert out[1] is None
    np.testing.assert_array_equal(out[0], read_image(tmp_path / "good.jpg"))
    np.testing.assert_array_equal(out[2], out[0])


@pytest.mark.parametrize(
    "kind", ["cmyk", "grayscale", "truncated", "trailing-junk", "over-the-pixel-limit", "png"]
)
def test_files_the_batch_could_get_wrong_go_to_the_cpu_reader(tmp_path, kind):
    path = tmp_path / "x.jpg"
    picture = _picture()
    max_pixels = 10**8
    if kind == "cmyk":
        Image.fromarray(picture).convert("CMYK").save(path, "JPEG")
        data = path.read_bytes()
    elif kind == "grayscale":
        data = _jpeg(path, picture[..., 0])
    elif kind == "truncated":
        data = _jpeg(path, picture)[:-2]
    elif kind == "trailing-junk":
        data = _jpeg(path, picture) + b"junk"
    elif kind == "over-the-pixel-limit":
        data, max_pixels = _jpeg(path, picture), picture.shape[0] * picture.shape[1] - 1
    else:
        Image.fromarray(picture).save(path, "PNG")
        data = path.read_bytes()
    assert jpeg_header(data, max_pixels=max_pixels) is None
    assert jpeg_header(_jpeg(tmp_path / "ok.jpg", picture), max_pixels=10**8) is not None
