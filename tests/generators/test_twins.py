"""A synthetic twin is encoded as its real photo was: format, tables, subsampling, mode, EXIF."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from deepaudit.generators.twins import (
    RealPhoto,
    estimate_jpeg_quality,
    list_real_photos,
    pair_items,
    read_encoding,
    write_twin,
)
from deepaudit.media import read_image


@pytest.mark.parametrize("quality", [35, 75, 83, 95])
def test_jpeg_quality_is_recovered_from_the_tables(quality, photo):
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG", quality=quality)
    with Image.open(buf) as im:
        assert estimate_jpeg_quality(im.quantization) == quality


def test_jpeg_twin_has_the_real_tables_subsampling_and_progressive_flag(tmp_path, photo):
    real = tmp_path / "real.jpg"
    Image.fromarray(photo).save(real, quality=61, subsampling=1, progressive=True)
    enc = read_encoding(real)
    twin = write_twin(tmp_path / "twin", photo[::-1].copy(), enc)
    assert twin.suffix == ".jpg"
    with Image.open(real) as a, Image.open(twin) as b:
        assert b.format == "JPEG" and b.quantization == a.quantization
        assert JpegImagePlugin.get_sampling(b) == JpegImagePlugin.get_sampling(a) == 1
        assert b.info.get("progressive") and b.size == a.size
    assert enc.to_json()["quality"] == 61 and enc.to_json()["subsampling"] == "4:2:2"


def test_png_greyscale_and_lossless_webp_stay_what_they_are(tmp_path, photo):
    cases = {
        "a.png": lambda p: Image.fromarray(photo).save(p),
        "b.jpg": lambda p: Image.fromarray(photo).convert("L").save(p, quality=80),
        "c.webp": lambda p: Image.fromarray(photo).save(p, lossless=True),
    }
    for name, write in cases.items():
        real = tmp_path / name
        write(real)
        twin = write_twin(tmp_path / f"twin-{real.stem}", photo, read_encoding(real))
        with Image.open(real) as a, Image.open(twin) as b:
            assert (b.format, b.mode, b.size) == (a.format, a.mode, a.size)
    assert read_encoding(tmp_path / "c.webp").lossless is True
    # lossless: the twin's pixels are exactly the pixels it was given
    assert np.array_equal(read_image(tmp_path / "twin-c.webp"), photo)


def test_a_misnamed_file_gets_a_twin_in_its_real_format_and_odd_formats_are_refused(
    tmp_path, photo
):
    from deepaudit.errors import MediaError

    Image.fromarray(photo).save(tmp_path / "named.jpg", format="PNG")
    twin = write_twin(tmp_path / "twin", photo, read_encoding(tmp_path / "named.jpg"))
    assert twin.suffix == ".png" and Image.open(twin).format == "PNG"
    Image.fromarray(photo).save(tmp_path / "icon.ico")
    with pytest.raises(MediaError, match=r"icon\.ico: cannot write a twin as ICO"):
        read_encoding(tmp_path / "icon.ico")


def test_a_sideways_photo_gets_a_sideways_twin_with_the_same_orientation_tag(tmp_path, photo):
    exif = Image.Exif()
    exif[0x0112] = 6
    real = tmp_path / "phone.jpg"
    Image.fromarray(photo).save(real, quality=90, exif=exif.tobytes())
    upright = read_image(real)
    assert upright.shape[:2] == (photo.shape[1], photo.shape[0])
    twin = write_twin(tmp_path / "twin", upright, read_encoding(real))
    with Image.open(real) as a, Image.open(twin) as b:
        assert b.size == a.size and b.getexif().get(0x0112) == 6
    # decoded upright, the twin lines up with the photo pixel for pixel (up to JPEG error)
    diff = np.abs(read_image(twin).astype(int) - upright.astype(int))
    assert read_image(twin).shape == upright.shape and diff.mean() < 4


def test_pair_items_place_the_real_once_and_share_the_pair_id(tmp_path, photo):
    from deepaudit.media import file_sha256

    src = tmp_path / "src"
    (src / "x").mkdir(parents=True)
    Image.fromarray(photo).save(src / "x" / "p.jpg", quality=88)
    line = {  # the source manifest: its attributes and split travel to both items
        "id": "p",
        "path": "x/p.jpg",
        "sha256": file_sha256(src / "x" / "p.jpg"),
        "kind": "image",
        "label": "real",
        "source": "ffhq",
        "split": "val",
        "attributes": {"gender": "female"},
    }
    (src / "manifest.jsonl").write_text(json.dumps(line) + "\n")
    (real,) = list_real_photos(src)
    assert real == RealPhoto(src / "x" / "p.jpg", "ffhq", {"gender": "female"}, "val")
    out = tmp_path / "out"
    (out / "vae").mkdir(parents=True)
    rows = []
    for k in range(2):
        rows += pair_items(
            out, out / "vae" / f"{k:06d}", f"vae/{k:06d}", photo, real, source="vae", generator=None
        )
    real_rows = {r.id: r for r in rows if r.label == "real"}
    (real_item,) = real_rows.values()
    assert (out / real_item.path).read_bytes() == (src / "x" / "p.jpg").read_bytes()
    twins = [r for r in rows if r.label == "synthetic"]
    assert {t.extra["pair"] for t in twins} == {real_item.extra["pair"]}
    assert all(t.split == "val" and t.attributes == {"gender": "female"} for t in twins)


def test_a_twin_of_the_wrong_size_is_refused(tmp_path, photo):
    from deepaudit.errors import MediaError

    real = tmp_path / "r.png"
    Image.fromarray(photo).save(real)
    with pytest.raises(MediaError, match=r"r\.png: the twin came out 64x48"):
        pair_items(
            tmp_path,
            tmp_path / "t",
            "t",
            photo[:48, :64],
            RealPhoto(real, "x"),
            source="x",
            generator=None,
        )
