"""Readers and writers of deepaudit.media, with real files written by the tests."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from deepaudit import media
from deepaudit.errors import MediaError
from deepaudit.photos import png_bomb_header

# --------------------------------------------------------------------------- images


@pytest.mark.parametrize(
    ("ext", "max_err"),
    [(".png", 0), (".bmp", 0), (".tiff", 0), (".jpg", 12), (".webp", 15), (".gif", 40)],
)
def test_image_round_trip(tmp_path, photo, ext, max_err):
    path = media.write_image(tmp_path / f"x{ext}", photo, quality=90)
    back = media.read_image(path)
    assert back.dtype == np.uint8 and back.shape == photo.shape
    assert np.abs(back.astype(int) - photo).mean() <= max_err
    info = media.probe(path)
    assert (info.kind, info.width, info.height, info.frames) == ("image", 128, 96, 1)
    assert info.extension_matches


def test_webp_lossless_is_exact(tmp_path, photo):
    path = media.write_image(tmp_path / "x.webp", photo, lossless=True)
    assert np.array_equal(media.read_image(path), photo)


def test_jpeg_quality_changes_size(tmp_path, photo):
    low = media.write_image(tmp_path / "low.jpg", photo, quality=30).stat().st_size
    high = media.write_image(tmp_path / "high.jpg", photo, quality=95).stat().st_size
    assert low < high


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "1"])
def test_modes_become_rgb_uint8(tmp_path, photo, mode):
    im = Image.fromarray(photo)
    if mode == "I;16":
        grey = np.asarray(im.convert("L")).astype(np.uint16) * 257
        im = Image.fromarray(grey)
        assert im.mode.startswith("I")
    else:
        im = im.convert(mode)
    path = tmp_path / ("x.tiff" if mode == "CMYK" else "x.png")
    im.save(path)
    arr = media.read_image(path)
    assert arr.dtype == np.uint8 and arr.shape == (96, 128, 3)
    if mode == "I;16":  # 16-bit values are scaled to 8 bits, not clipped to white
        assert 20 < arr.mean() < 235


def test_exif_orientation_is_applied(tmp_path, photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90° clockwise to display
    path = tmp_path / "sideways.jpg"
    Image.fromarray(photo).save(path, exif=exif, quality=95)
    arr = media.read_image(path)
    assert arr.shape == (128, 96, 3)
    expected = np.rot90(photo, k=-1)
    assert np.abs(arr.astype(int) - expected).mean() < 10
    info = media.probe(path)
    assert (info.width, info.height) == (96, 128)


def test_content_wins_over_extension(tmp_path, photo):
    path = tmp_path / "really_png.jpg"
    Image.fromarray(photo).save(path, format="PNG")
    assert np.array_equal(media.read_image(path), photo)
    info = media.probe(path)
    assert info.format == "png" and not info.extension_matches


def test_gif_first_frame_and_animation(tmp_path, clip):
    path = media.write_video(tmp_path / "anim.gif", clip, fps=10).path
    first = media.read_image(path)
    assert first.shape == clip[0].shape
    assert np.abs(first.astype(int) - clip[0]).mean() < 40
    info = media.probe(path)
    assert info.kind == "video" and info.frames == 12 and info.fps == pytest.approx(10)


# --------------------------------------------------------------------------- videos


@pytest.mark.parametrize("ext", [".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif", ".webp"])
def test_video_round_trip_frame_count(tmp_path, clip, ext):
    written = media.write_video(tmp_path / f"clip{ext}", clip, fps=12)
    video = media.read_video(written.path)
    assert written.frames == 12
    assert video.frames.shape == clip.shape
    assert video.indices == tuple(range(12))
    assert video.frame_count == 12
    assert video.fps == pytest.approx(12, rel=0.05)
    assert np.abs(video.frames.astype(int) - clip).mean() < 40
    info = media.probe(written.path)
    assert (info.kind, info.frames, info.width, info.height) == ("video", 12, 64, 48)


def test_mp4_is_h264_when_ffmpeg_is_there(tmp_path, clip):
    written = media.write_video(tmp_path / "clip.mp4", clip, fps=12)
    assert written.codec == "h264"
    import cv2

    cap = cv2.VideoCapture(str(written.path))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    cap.release()
    assert fourcc.lower() in ("avc1", "h264")


def test_mp4v_fallback_codec(tmp_path, clip):
    written = media.write_video(tmp_path / "clip.mp4", clip, fps=12, codec="mp4v")
    assert written.codec == "mp4v"
    assert media.read_video(written.path).frames.shape == clip.shape


def test_ffv1_is_lossless(tmp_path, clip):
    path = media.write_video(tmp_path / "clip.mkv", clip, fps=12).path
    assert np.array_equal(media.read_video(path).frames, clip)


def test_sampling_n_frames_and_every_k(tmp_path, clip):
    path = media.write_video(tmp_path / "clip.mkv", clip, fps=12).path
    four = media.read_video(path, num_frames=4)
    assert four.indices == (1, 4, 7, 10)
    assert np.array_equal(four.frames, clip[[1, 4, 7, 10]])
    every5 = media.read_video(path, every=5)
    assert every5.indices == (0, 5, 10)
    streamed = list(media.iter_video_frames(path, every=4))
    assert [i for i, _ in streamed] == [0, 4, 8]
    assert np.array_equal(streamed[1][1], clip[4])


def test_sample_frame_indices():
    assert media.sample_frame_indices(10) == list(range(10))
    assert media.sample_frame_indices(10, num_frames=20) == list(range(10))
    assert media.sample_frame_indices(100, num_frames=4) == [12, 37, 62, 87]
    assert media.sample_frame_indices(10, every=3) == [0, 3, 6, 9]
    assert media.sample_frame_indices(0, num_frames=3) == []
    with pytest.raises(ValueError, match="not both"):
        media.sample_frame_indices(10, num_frames=2, every=2)
    with pytest.raises(ValueError):
        media.sample_frame_indices(10, every=0)


def test_odd_size_mp4_is_refused_not_cropped(tmp_path, clip):
    odd = clip[:, :47, :63]
    with pytest.raises(MediaError, match="even width and height"):
        media.write_video(tmp_path / "odd.mp4", odd, fps=12)
    path = media.write_video(tmp_path / "odd.mkv", odd, fps=12).path
    assert media.read_video(path).frames.shape == odd.shape


def test_write_video_streams_an_iterator(tmp_path, clip):
    written = media.write_video(tmp_path / "gen.avi", (f for f in clip), fps=8)
    assert written.frames == 12 and media.probe(written.path).frames == 12


def test_write_video_rejects_mixed_sizes(tmp_path, clip):
    frames = [clip[0], clip[1][:40]]
    with pytest.raises(MediaError, match="frame 1"):
        media.write_video(tmp_path / "bad.mkv", frames, fps=8)
    assert not (tmp_path / "bad.mkv").exists()  # nothing half-written is left


def test_read_image_on_a_video_says_so(tmp_path, clip):
    path = media.write_video(tmp_path / "clip.mp4", clip, fps=12).path
    with pytest.raises(MediaError, match="not an image"):
        media.read_image(path)


# --------------------------------------------------------------------------- bad input


def _one_line(exc: MediaError, path) -> None:
    text = str(exc)
    assert "\n" not in text
    assert text.startswith(str(path))


@pytest.fixture
def jpeg_bytes(photo) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _bad_files(tmp_path, jpeg_bytes, clip):
    mkv = media.write_video(tmp_path / "src.mkv", clip, fps=12).path.read_bytes()
    png = io.BytesIO()
    Image.fromarray(clip[0]).save(png, format="PNG")
    return {
        "empty.jpg": (b"", "empty file"),
        "truncated.jpg": (jpeg_bytes[: len(jpeg_bytes) // 2], "truncated"),
        "truncated.png": (png.getvalue()[: len(png.getvalue()) // 2], "truncated PNG image data"),
        "notes.png": (b"hello, this is text\n", "content is text despite the .png extension"),
        "invoice.mp4": (b"%PDF-1.7\n" + b"0" * 100, "PDF document"),
        "archive.webp": (b"PK\x03\x04" + b"\x00" * 100, "ZIP archive"),
        "noise.bin": (bytes(range(7, 200)) * 3, "unrecognised content"),
        "drawing.svg": (b'<?xml version="1.0"?><svg xmlns="x"></svg>', "unsupported format: SVG"),
        "sound.wav": (b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40, "unsupported format: WAV"),
        "bomb.png": (png_bomb_header(60_000, 60_000), "pixel limit"),
        "cut.mkv": (mkv[: len(mkv) // 3], "truncated"),
        "header_only.mp4": (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", "cannot open"),
    }


def test_every_bad_file_gets_a_one_line_error(tmp_path, jpeg_bytes, clip):
    for name, (data, reason) in _bad_files(tmp_path, jpeg_bytes, clip).items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(MediaError) as info:
            media.probe(path)
        assert reason in str(info.value), (name, str(info.value))
        _one_line(info.value, path)
        reader = media.read_video if name.endswith((".mkv", ".mp4")) else media.read_image
        with pytest.raises(MediaError):
            reader(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(MediaError, match="no such file"):
        media.read_image(tmp_path / "nope.png")
    with pytest.raises(MediaError, match="is a directory"):
        media.probe(tmp_path)


def test_pixel_limit(tmp_path, photo):
    path = media.write_image(tmp_path / "x.png", photo)
    with pytest.raises(MediaError, match="pixel limit"):
        media.read_image(path, max_pixels=1000)
    assert media.read_image(path, max_pixels=96 * 128).shape == photo.shape


def test_frame_and_memory_limits(tmp_path, clip):
    path = media.write_video(tmp_path / "clip.avi", clip, fps=12).path
    with pytest.raises(MediaError, match="frame limit"):
        media.read_video(path, max_frames=5)
    with pytest.raises(MediaError, match="sample with num_frames"):
        media.read_video(path, max_bytes=1000)
    assert len(media.read_video(path, num_frames=2, max_bytes=10**9).frames) == 2


def test_truncated_video_best_effort(tmp_path, clip):
    many = np.concatenate([clip] * 5)  # 60 frames
    data = media.write_video(tmp_path / "long.avi", many, fps=12).path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="truncated"):
        media.read_video(cut, num_frames=8)
    video = media.read_video(cut, num_frames=8, allow_truncated=True)
    assert video.truncated and len(video.frames) == 8
    assert max(video.indices) < video.frame_count < 60


def test_writer_errors(tmp_path, photo):
    with pytest.raises(MediaError, match="extension"):
        media.write_image(tmp_path / "x.xyz", photo)
    with pytest.raises(MediaError, match="uint8"):
        media.write_image(tmp_path / "x.png", photo.astype(np.float32))
    with pytest.raises(MediaError, match="no frames"):
        media.write_video(tmp_path / "x.mp4", [], fps=10)
    with pytest.raises(MediaError, match="fps"):
        media.write_video(tmp_path / "x.mp4", [photo], fps=0)


def test_probe_files_reports_instead_of_raising(tmp_path, photo):
    good = media.write_image(tmp_path / "good.png", photo)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    results = media.probe_files([good, bad], hashes=True)
    assert results[0].info is not None and len(results[0].sha256) == 64
    assert results[1].info is None and results[1].to_json()["error"] == {
        "class": "MediaError",
        "message": f"{bad}: empty file (0 bytes)",
    }


def test_sha256_matches_hashlib(tmp_path, photo):
    import hashlib

    path = media.write_image(tmp_path / "x.png", photo)
    assert media.file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- regressions


def test_truncated_h264_fails_probe_and_streaming(tmp_path, clip):
    many = np.concatenate([clip] * 5)
    data = media.write_video(tmp_path / "long.mp4", many, fps=12).path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.3)])
    with pytest.raises(MediaError, match=r"truncated|no decodable"):
        media.probe(cut)
    with pytest.raises(MediaError, match=r"truncated|no decodable"):
        list(media.iter_video_frames(cut))


def test_fifo_and_nul_path_are_media_errors(tmp_path):
    import os

    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    with pytest.raises(MediaError, match="not a regular file"):
        media.probe(fifo)
    with pytest.raises(MediaError, match="invalid path"):
        media.probe(tmp_path / "a\x00b.png")


def test_max_bytes_applies_when_sampling(tmp_path, clip):
    path = media.write_video(tmp_path / "c.avi", clip, fps=12).path
    with pytest.raises(MediaError, match="max_bytes"):
        media.read_video(path, every=1, max_bytes=1000)


def test_multipage_tiff_with_different_sizes(tmp_path, photo):
    path = tmp_path / "pages.tiff"
    small = Image.fromarray(photo[:10, :10])
    small.save(path, save_all=True, append_images=[Image.fromarray(photo)])
    with pytest.raises(MediaError, match=r"page 1 is 128×96, not \(10, 10\)"):
        media.read_video(path)
    assert media.read_image(path).shape == (10, 10, 3)


@pytest.mark.parametrize("text", ["The free software movement\n", "BMI table for adults\n"])
def test_prose_is_not_sniffed_as_media(tmp_path, text):
    path = tmp_path / "README"
    path.write_text(text * 20)
    with pytest.raises(MediaError, match="content is text"):
        media.probe(path)
