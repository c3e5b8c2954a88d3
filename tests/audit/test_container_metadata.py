"""AI-generation signals in video and audio container tags, on files the tests write with
ffmpeg's ``-metadata`` flags (the ffmpeg that imageio-ffmpeg bundles)."""

from __future__ import annotations

import json
import random
import struct
import subprocess

import pytest
from typer.testing import CliRunner

from deepaudit.audit.metadata import read_ai_metadata
from deepaudit.cli.app import app
from deepaudit.container_tags import read_container_tags
from deepaudit.errors import MediaError

DST = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
A1111 = "a red fox in snow\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Model: sdxl_base"

VIDEO = ["-f", "lavfi", "-i", "testsrc=size=32x32:rate=5", "-t", "0.6"]
AUDIO = ["-f", "lavfi", "-i", "sine=d=0.2"]
# container -> (source and codec, muxer flags)
CONTAINERS = {
    "mp4": ([*VIDEO, "-c:v", "libx264", "-pix_fmt", "yuv420p"], []),
    "mp4-keys": (
        [*VIDEO, "-c:v", "libx264", "-pix_fmt", "yuv420p"],
        ["-movflags", "+use_metadata_tags"],
    ),
    "mov": ([*VIDEO, "-c:v", "libx264", "-pix_fmt", "yuv420p"], []),
    "mov-keys": (
        [*VIDEO, "-c:v", "libx264", "-pix_fmt", "yuv420p"],
        ["-movflags", "+use_metadata_tags"],
    ),
    "webm": ([*VIDEO, "-c:v", "libvpx"], []),
    "mkv": ([*VIDEO, "-c:v", "ffv1"], []),
    "avi": ([*VIDEO, "-c:v", "mjpeg"], []),
    "wav": (AUDIO, []),
    "mp3": ([*AUDIO, "-c:a", "libmp3lame"], []),
}


def ffmpeg(out, container: str, *metadata: str):
    """Write a short clip or tone into ``out`` with ``-metadata key=value`` for each item."""
    import imageio_ffmpeg

    source, flags = CONTAINERS[container]
    tags = [arg for item in metadata for arg in ("-metadata", item)]
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *source, *tags, *flags, str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return out


def _ext(container: str) -> str:
    return container.split("-")[0]


@pytest.mark.parametrize(
    ("container", "field"),
    [
        ("mp4", "mp4:moov/udta/meta/ilst/©cmt"),
        ("mp4-keys", "mp4:moov/udta/meta/ilst/comment"),
        ("mov", "mp4:moov/udta/©des"),  # ffmpeg writes it to ©des and ©cmt
        ("webm", "mkv:Tags/COMMENT"),
        ("mkv", "mkv:Tags/COMMENT"),
        ("avi", "riff:INFO/ICMT"),
        ("wav", "riff:INFO/ICMT"),
        ("mp3", "id3:TXXX:comment"),
    ],
)
def test_a_generator_named_in_any_container_is_a_weak_signal(tmp_path, container, field):
    f = ffmpeg(tmp_path / f"clip.{_ext(container)}", container, "comment=Made with Sora 2")
    report = read_ai_metadata(f)
    (sig,) = [s for s in report.signals if s.kind == "container-generator-name"]
    assert (sig.claim, sig.strength, sig.field) == ("ai-generated", "weak", field)
    assert sig.details["match"] == "Sora"
    assert not report.declares_ai  # a name anyone can type is not a declaration


@pytest.mark.parametrize("container", ["mp4-keys", "webm", "mkv", "mp3"])
def test_an_iptc_source_type_tag_declares_ai(tmp_path, container):
    f = ffmpeg(tmp_path / f"clip.{_ext(container)}", container, f"DigitalSourceType={DST}")
    report = read_ai_metadata(f)
    (sig,) = report.signals
    assert (sig.kind, sig.claim, sig.strength) == (
        "iptc-digital-source-type",
        "ai-generated",
        "strong",
    )
    assert sig.details["value"] == "trainedAlgorithmicMedia"
    assert report.declares_ai


def test_source_types_in_fixed_fields_and_short_names(tmp_path):
    # WAV INFO has no free keys: the URI in its comment still declares the source type
    wav = ffmpeg(tmp_path / "a.wav", "wav", f"comment={DST}")
    assert [s.details["value"] for s in read_ai_metadata(wav).signals] == [
        "trainedAlgorithmicMedia"
    ]
    # a short IPTC term counts under a key that says it is a source type, and only there
    mkv = ffmpeg(
        tmp_path / "a.mkv",
        "mkv",
        "digital_source_type=digitalCapture",
        "title=trainedAlgorithmicMedia",
    )
    (sig,) = read_ai_metadata(mkv).signals
    assert (sig.claim, sig.field) == ("capture", "mkv:Tags/DIGITAL_SOURCE_TYPE")


def test_xmp_in_an_mp4_uuid_box(tmp_path):
    f = ffmpeg(tmp_path / "a.mp4", "mp4")
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
        f'Iptc4xmpExt:DigitalSourceType="{DST}"/></rdf:RDF></x:xmpmeta>'
    ).encode()
    uuid = bytes.fromhex("BE7ACFCB97A942E89C71999491E3AFAC")
    with f.open("ab") as fh:  # a top-level box appended is valid ISO BMFF
        fh.write(struct.pack(">I4s", 8 + 16 + len(xmp), b"uuid") + uuid + xmp)
    (sig,) = read_ai_metadata(f).signals
    assert (sig.claim, sig.field) == (
        "ai-generated",
        "mp4:uuid-xmp:Iptc4xmpExt:DigitalSourceType",
    )


def test_generation_records_and_cameras(tmp_path):
    mkv = ffmpeg(tmp_path / "a.mkv", "mkv", f"comment={A1111}")
    (sig,) = read_ai_metadata(mkv).signals
    assert (sig.kind, sig.strength, sig.details["seed"]) == ("a1111-parameters", "strong", 42)
    # QuickTime mdta keys, as phones write them
    mov = ffmpeg(
        tmp_path / "phone.mov",
        "mov-keys",
        "com.apple.quicktime.make=Apple",
        "com.apple.quicktime.model=iPhone 15 Pro",
    )
    report = read_ai_metadata(mov)
    (cam,) = [s for s in report.signals if s.kind == "container-camera"]
    assert (cam.claim, cam.details) == ("capture", {"make": "Apple", "model": "iPhone 15 Pro"})
    assert report.claims_capture and not report.declares_ai


def test_files_without_tags_of_interest_have_no_signals(tmp_path):
    f = ffmpeg(tmp_path / "a.webm", "webm", "title=holiday", "artist=Jane")
    tags = read_container_tags(f, "webm")
    assert ("Title", "holiday") in {(t.key, t.value) for t in tags}
    assert read_ai_metadata(f).signals == ()


def _break(data: bytes, fmt: str) -> bytes:
    """A container whose metadata structure claims more than the file holds."""
    b = bytearray(data)
    if fmt == "mp4":
        at = b.index(b"moov") - 4
        b[at : at + 4] = struct.pack(">I", len(b) * 4)
    elif fmt == "mkv":
        b = b[: b.index(b"\x12\x54\xc3\x67") + 12]  # cut inside Tags
    elif fmt == "wav":
        at = b.index(b"LIST") + 4
        b[at : at + 4] = struct.pack("<I", len(b) * 4)
    elif fmt == "mp3":
        b[6:10] = b"\xff\xff\xff\xff"  # not a sync-safe size
    return bytes(b)


@pytest.mark.parametrize("fmt", ["mp4", "mkv", "wav", "mp3"])
def test_broken_containers_are_one_line_errors(tmp_path, fmt):
    good = ffmpeg(tmp_path / f"a.{fmt}", fmt, f"DigitalSourceType={DST}", "comment=x")
    bad = tmp_path / f"bad.{fmt}"
    bad.write_bytes(_break(good.read_bytes(), fmt))
    with pytest.raises(MediaError) as err:
        read_ai_metadata(bad)
    text = str(err.value)
    assert "\n" not in text and str(bad) in text and f"broken {fmt.upper()} container" in text


def test_random_damage_never_crashes_the_readers(tmp_path):
    rng = random.Random(0)
    files = [
        ffmpeg(tmp_path / f"a.{_ext(c)}", c, f"DigitalSourceType={DST}", "comment=Sora")
        for c in ("mp4-keys", "mov", "webm", "wav", "mp3", "avi")
    ]
    for f in files:
        data = f.read_bytes()
        fmt = f.suffix[1:]
        for _ in range(40):
            b = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            if rng.random() < 0.3:
                b = b[: rng.randrange(1, len(b))]
            try:
                read_container_tags(f, fmt, data=bytes(b))
            except MediaError as exc:
                assert "\n" not in str(exc)


def test_the_scan_and_the_clis_report_container_signals(tmp_path):
    from deepaudit.audit.scan import run_scan

    box = tmp_path / "box"
    box.mkdir()
    ffmpeg(box / "gen.mp4", "mp4-keys", f"DigitalSourceType={DST}")
    run_scan([box], tmp_path / "out", workers=0, report=False)
    (row,) = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert row["kind"] == "video" and "error" not in row
    assert row["metadata"]["declares_ai"]
    assert row["verdict"] == "likely-synthetic"
    assert any(
        "IPTC digital source type trainedAlgorithmicMedia" in r["text"] for r in row["reasons"]
    )

    song = ffmpeg(tmp_path / "song.mp3", "mp3", f"DigitalSourceType={DST}")
    out = CliRunner().invoke(app, ["metadata", str(song)])
    assert out.exit_code == 0, out.output
    assert "ai-generated (strong) IPTC digital source type trainedAlgorithmicMedia" in out.output
    out = CliRunner().invoke(app, ["provenance", str(song), "--json"])
    assert out.exit_code == 0, out.output
    (rec,) = json.loads(out.output)["files"]
    assert rec["state"] == "absent" and rec["metadata"]["declares_ai"]
