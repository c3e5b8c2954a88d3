"""Real media files, the ways they get damaged, and what every reader must do with them.

Seeds are written by deepaudit itself (PNG with an A1111 parameters chunk, JPEG with EXIF and
XMP, WebP, animated GIF, H.264 MP4, and a PNG and a JPEG signed with the test certificates),
so each mutation starts from bytes the readers accept and lands just beside them, where
parsers break. A mutation is a small record, so a failure names exactly what was done; the
same records drive the hypothesis test (tests/test_fuzz_media.py) and the seeded corpus run:

    python -m tests.media_mutations --files 400 --seed 0     # prints JSON; exit 1 on a crash

The contract checked on every file: ``probe`` (with and without decoding), ``read_image``,
``read_video`` and ``read_ai_metadata`` return sound results or raise a one-line
:class:`~deepaudit.errors.DeepauditError` naming the file; ``c2pa_layer.read_file`` and
``inspect_provenance`` never raise; a scan gives every file exactly one row.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np

KINDS = ("flip", "truncate", "zero", "transplant", "duplicate")

A1111 = (
    "a photo of an astronaut\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 128x96, Model: sd15"
)
XMP = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
    'Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/'
    'trainedAlgorithmicMedia"/></rdf:RDF></x:xmpmeta>'
)


# --------------------------------------------------------------------------- seeds


def sample_photo() -> np.ndarray:
    """The test suite's photo: scikit-image's astronaut at 96×128 (see tests/conftest.py)."""
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[::4, ::4][:96, :128])


def sample_clip(photo: np.ndarray) -> np.ndarray:
    """Twelve 48×64 frames panning across ``photo`` (the suite's ``clip`` fixture)."""
    return np.ascontiguousarray(np.stack([photo[10:58, 2 * i : 2 * i + 64] for i in range(12)]))


def write_seeds(root: Path, photo: np.ndarray, clip: np.ndarray, signing: Any) -> dict[str, Path]:
    """Write the seed files into ``root``; ``signing`` is a SigningCredentials."""
    from PIL import Image, PngImagePlugin

    from deepaudit.c2pa_layer import sign_file
    from deepaudit.media import write_image, write_video

    root.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111)
    Image.fromarray(photo).save(root / "photo.png", pnginfo=info)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate on display
    exif[0x010F] = "Canon"
    exif[0x0110] = "EOS R5"
    exif[0x0131] = "Adobe Firefly"
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + A1111.encode("utf-16-be")
    Image.fromarray(photo).save(root / "exif.jpg", exif=exif, xmp=XMP.encode(), quality=90)
    seeds = {
        "png": root / "photo.png",
        "jpeg": root / "exif.jpg",
        "webp": write_image(root / "photo.webp", photo, quality=80),
        "gif": write_video(root / "anim.gif", clip, fps=8).path,
        "mp4": write_video(root / "clip.mp4", clip, fps=8).path,
    }
    plain_jpeg = write_image(root / "plain.jpg", photo)
    seeds["c2pa-png"] = sign_file(seeds["png"], signing, root / "signed.png")
    seeds["c2pa-jpeg"] = sign_file(plain_jpeg, signing, root / "signed.jpg")
    plain_jpeg.unlink()
    return seeds


# --------------------------------------------------------------------------- mutations


@dataclass(frozen=True)
class Mutation:
    """One change to a file's bytes; ``at`` in [0, 1) places it relative to the length.

    - ``flip``: flip bit ``size % 8`` of the byte at ``at``;
    - ``truncate``: keep the bytes before ``at``;
    - ``zero``: zero ``size`` bytes from ``at``;
    - ``transplant``: replace the first ``size`` bytes with ``donor``'s first bytes;
    - ``duplicate``: copy the format chunk (PNG chunk, JPEG segment, RIFF chunk, MP4 box)
      found at ``at`` and insert the copy after it; without chunks, ``size`` bytes at ``at``.
    """

    kind: str
    at: float
    size: int = 1
    donor: str | None = None


def chunks(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of the top-level chunks the format of ``data`` is made of, as far as
    they parse; empty for formats without a simple chunk layout (GIF) or garbled headers."""
    out: list[tuple[int, int]] = []
    n = len(data)
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        i = 8
        while i + 12 <= n:
            (length,) = struct.unpack(">I", data[i : i + 4])
            end = i + 12 + length
            if end > n:
                break
            out.append((i, end))
            i = end
    elif data.startswith(b"\xff\xd8"):
        i = 2
        while i + 4 <= n and data[i] == 0xFF:
            marker = data[i + 1]
            (length,) = struct.unpack(">H", data[i + 2 : i + 4])
            end = i + 2 + length
            if marker == 0xDA:  # start of scan: the entropy-coded data runs to EOI
                eoi = data.rfind(b"\xff\xd9")
                end = eoi if eoi > i else n
            if end > n or length < 2:
                break
            out.append((i, end))
            i = end
            if marker == 0xDA:
                break
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        i = 12
        while i + 8 <= n:
            (length,) = struct.unpack("<I", data[i + 4 : i + 8])
            end = i + 8 + length + (length & 1)
            if end > n:
                break
            out.append((i, end))
            i = end
    elif data[4:8] == b"ftyp":
        i = 0
        while i + 8 <= n:
            (size,) = struct.unpack(">I", data[i : i + 4])
            if size < 8 or i + size > n:
                break
            out.append((i, i + size))
            i += size
    return out


def mutate(data: bytes, m: Mutation, donors: Mapping[str, bytes]) -> bytes:
    """``data`` with ``m`` applied (pure: the same inputs give the same bytes)."""
    n = len(data)
    pos = min(int(m.at * n), max(n - 1, 0))
    if m.kind == "flip":
        if not n:
            return data
        out = bytearray(data)
        out[pos] ^= 1 << (m.size % 8)
        return bytes(out)
    if m.kind == "truncate":
        return data[:pos]
    if m.kind == "zero":
        return data[:pos] + b"\x00" * min(m.size, n - pos) + data[pos + m.size :]
    if m.kind == "transplant":
        head = donors[m.donor or ""][: m.size]
        return head + data[len(head) :]
    if m.kind == "duplicate":
        parts = chunks(data)
        if parts:
            start, end = parts[min(int(m.at * len(parts)), len(parts) - 1)]
        else:
            start, end = pos, min(pos + m.size, n)
        return data[:end] + data[start:end] + data[end:]
    raise ValueError(f"mutation kind must be one of {KINDS}, got {m.kind!r}")


def mutate_all(data: bytes, ms: Sequence[Mutation], donors: Mapping[str, bytes]) -> bytes:
    for m in ms:
        data = mutate(data, m, donors)
    return data


def random_mutations(rng: random.Random, donor_names: Sequence[str]) -> list[Mutation]:
    """One to three mutations drawn like the hypothesis strategy draws them (for the corpus)."""
    out = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(KINDS)
        size = rng.choice((1, 2, 4, 8, 16, 64, 256, 4096)) if kind != "flip" else rng.randrange(8)
        donor = rng.choice(donor_names) if kind == "transplant" else None
        out.append(Mutation(kind, rng.random(), size, donor))
    return out


# --------------------------------------------------------------------------- the contract


def check_readers(path: Path, *, context: Any) -> dict[str, str]:
    """Run every per-file reader on ``path`` and check what it returns.

    Returns reader name → outcome ("ok" or the DeepauditError class); any other exception
    escapes, which is the failure the fuzz tests look for.
    """
    from deepaudit.audit.metadata import read_ai_metadata
    from deepaudit.audit.provenance import State, inspect_provenance
    from deepaudit.c2pa_layer import ReadStatus, read_file
    from deepaudit.errors import DeepauditError
    from deepaudit.media import probe, read_image, read_video

    outcome: dict[str, str] = {}

    def attempt(name: str, fn: Callable[[], Any]) -> Any:
        try:
            result = fn()
        except DeepauditError as exc:
            assert str(exc).startswith(str(path)), f"{name}: message does not name the file"
            assert "\n" not in str(exc), f"{name}: message is not one line"
            outcome[name] = type(exc).__name__
            return None
        outcome[name] = "ok"
        return result

    info = attempt("probe", lambda: probe(path))
    if info is not None:
        assert info.width > 0 and info.height > 0 and info.frames >= 1, info
    header = attempt("probe_header", lambda: probe(path, verify=False))  # what scan sniffs
    if info is not None:  # a file that decodes has a header that parses
        assert header is not None and header.kind == info.kind, (header, info)
    img = attempt("read_image", lambda: read_image(path))
    if img is not None:
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, img.shape
        if info is not None:  # what probe promised is what read gives
            assert (img.shape[1], img.shape[0]) == (info.width, info.height), (img.shape, info)
    video = attempt("read_video", lambda: read_video(path, num_frames=4))
    if video is not None:
        f = video.frames
        assert f.dtype == np.uint8 and f.ndim == 4 and len(f) >= 1 and f.shape[3] == 3, f.shape
    report = attempt("read_ai_metadata", lambda: read_ai_metadata(path))
    if report is not None:
        json.dumps(report.to_json())
    read = read_file(path, context=context)  # must never raise
    assert read.status in get_args(ReadStatus), read.status
    outcome["c2pa_read_file"] = read.status
    rec = inspect_provenance(path, context=context)  # must never raise
    assert rec.state in get_args(State) and rec.reason and rec.conclusion, rec
    json.dumps(rec.to_json())
    outcome["inspect_provenance"] = rec.state
    return outcome


def check_scan(folder: Path, out: Path, *, detectors: Sequence[Path] = (), anchors=None) -> None:
    """Scan ``folder`` (workers=0) and check that every file has exactly one row."""
    from deepaudit.audit.scan import run_scan
    from deepaudit.audit.verdict import VERDICTS

    files = sorted(str(p) for p in folder.iterdir() if p.is_file())
    summary = run_scan(
        [folder], out, detectors=list(detectors), trust_anchors=anchors, workers=0, restart=True
    )
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["path"] for r in rows) == files
    assert summary.files == len(files)
    for r in rows:
        assert r["verdict"] in VERDICTS, r
        if r["verdict"] == "error":  # and an error row says which file and why
            assert r["error"]["message"].startswith(r["path"]), r
    assert (out / "report.html").stat().st_size > 0


# --------------------------------------------------------------------------- the corpus run


def tiny_detector(root: Path) -> Path:
    """A spectral detector fitted in a second on real crops vs noise: scores flow in the scan."""
    from deepaudit.detectors import create_detector
    from deepaudit.detectors.data import load_items
    from deepaudit.generators.training import write_real_crops
    from deepaudit.manifest import ManifestItem, ManifestWriter
    from deepaudit.media import file_sha256, write_image

    data = write_real_crops(root / "data", 12, size=32, seed=1)
    rng = np.random.default_rng(1)
    with ManifestWriter(data) as w:
        for i in range(12):
            img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            p = write_image(data / "noise" / f"{i:03d}.png", img)
            w.write(
                ManifestItem(
                    id=f"noise/{i:03d}",
                    path=p.relative_to(data).as_posix(),
                    sha256=file_sha256(p),
                    kind="image",
                    label="synthetic",
                    source="noise",
                    width=32,
                    height=32,
                )
            )
    det = create_detector("spectral").fit(load_items(data))
    return det.save_pretrained(root / "spectral")


def run_corpus(root: Path, files: int, seed: int) -> dict[str, Any]:
    """Write ``files`` mutated files (seeded), check every reader on each, scan them all."""
    from deepaudit.c2pa_layer import load_signing_credentials, make_context, make_demo_credentials

    started = time.perf_counter()
    certs = make_demo_credentials(root / "certs", organization="Fuzz Org")
    signing = load_signing_credentials(certs["chain"], certs["key"])
    photo = sample_photo()
    seeds = write_seeds(root / "seeds", photo, sample_clip(photo), signing)
    donors = {k: p.read_bytes() for k, p in seeds.items()}
    names = sorted(seeds)
    rng = random.Random(seed)
    corpus = root / "corpus"
    corpus.mkdir()
    made: dict[Path, tuple[str, list[Mutation]]] = {}
    for i in range(files):
        name = names[i % len(names)]
        ms = random_mutations(rng, names)
        # one file in eight keeps another format's extension: content must win
        ext = seeds[rng.choice(names)].suffix if i % 8 == 7 else seeds[name].suffix
        path = corpus / f"{i:04d}-{name}{ext}"
        path.write_bytes(mutate_all(donors[name], ms, donors))
        made[path] = (name, ms)
    context = make_context(certs["ca"])
    crashes: list[dict[str, Any]] = []
    outcomes: Counter[str] = Counter()
    for path, (name, ms) in made.items():
        try:
            for reader, result in check_readers(path, context=context).items():
                outcomes[f"{reader}:{result}"] += 1
        except Exception as exc:  # the contract is broken: record and go on
            crashes.append(
                {
                    "file": path.name,
                    "seed_format": name,
                    "mutations": [m.__dict__ for m in ms],
                    "error": f"{type(exc).__name__}: {exc}"[:300],
                    "where": traceback.format_exc(limit=-2).splitlines()[-3:],
                }
            )
    readers_s = time.perf_counter() - started
    scan_error = None
    try:
        check_scan(corpus, root / "scan", detectors=[tiny_detector(root)], anchors=certs["ca"])
    except Exception as exc:
        scan_error = f"{type(exc).__name__}: {exc}"[:500]
    rows = (root / "scan" / "results.jsonl").read_text().splitlines()
    verdicts = Counter(json.loads(r)["verdict"] for r in rows)
    return {
        "files": files,
        "seed": seed,
        "crashes": len(crashes),
        "crash_details": crashes,
        "scan_rows": len(rows),
        "scan_error": scan_error,
        "scan_verdicts": dict(sorted(verdicts.items())),
        "outcomes": dict(sorted(outcomes.items())),
        "readers_seconds": round(readers_s, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="deepaudit-fuzz-") as tmp:
        result = run_corpus(Path(tmp), args.files, args.seed)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 1 if result["crashes"] or result["scan_error"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
