"""The scan tests' inbox: real, generated, signed, stripped, tampered, video and broken files,
scanned by the local scan (test_scan.py) and the Ray scan (test_scan_ray.py) alike."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from deepaudit.c2pa_layer import sign_file
from deepaudit.detectors import create_detector, load_detector
from deepaudit.detectors.data import load_items
from deepaudit.detectors.inference import score_items
from deepaudit.detectors.train import train_detector
from deepaudit.manifest import read_manifest
from deepaudit.media import write_image, write_video
from deepaudit.photos import png_bomb_header


@pytest.fixture(scope="session")
def spectral(detector_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("det") / "spectral"
    train_detector(create_detector("spectral"), load_items(detector_data), out, target_fpr=0.1)
    return out


@pytest.fixture
def inbox(tmp_path, detector_data, creds, clip, spectral):
    box = tmp_path / "inbox"
    (box / "sub").mkdir(parents=True)
    m = read_manifest(detector_data)
    # the real photo the detector is surest about: under threshold, so its verdict is known
    reals = load_items(detector_data).split("test").where(label=0)
    lowest = reals.items[int(np.argmin(score_items(load_detector(spectral), reals)))]
    real = next(i for i in m.items if i.id == lowest.id)
    fake = next(i for i in m.items if i.label == "synthetic" and i.split == "test")
    (box / "real.png").write_bytes((detector_data / real.path).read_bytes())
    (box / "sub" / "fake.png").write_bytes((detector_data / fake.path).read_bytes())
    trusted = sign_file(detector_data / fake.path, creds["signing"], box / "signed.png")
    stripped = box / "stripped.png"
    Image.open(trusted).save(stripped)
    data = bytearray(trusted.read_bytes())
    data[data.index(b"IDAT") + 30] ^= 0x5A
    (box / "tampered.png").write_bytes(bytes(data))
    capture = sign_file(
        detector_data / fake.path,
        creds["signing"],
        box / "capture.png",
        digital_source_type="digitalCapture",
    )
    write_video(box / "clip.mp4", clip, fps=8)
    (box / "empty.jpg").write_bytes(b"")
    jpeg = write_image(tmp_path / "x.jpg", clip[0])
    (box / "truncated.jpg").write_bytes(jpeg.read_bytes()[:200])
    (box / "notes.png").write_text("not an image")
    (box / "invoice.mp4").write_bytes(b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n")
    (box / "bomb.png").write_bytes(png_bomb_header(60000, 60000))
    os.symlink(box, box / "sub" / "loop")  # a symlink loop
    os.mkfifo(box / "pipe.png")
    return {"box": box, "capture": capture}
