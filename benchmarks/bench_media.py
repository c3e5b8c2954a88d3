"""Media I/O speed: our guarded readers against bare Pillow/OpenCV on the same files.

Ratios (ours / bare) are the figures to watch: absolute rates depend on the machine.
Uses the built-in photos; adds ../shared/data/samples when that folder exists.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "samples"


def _rate(fn, items, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        for item in items:
            fn(item)
    return repeat * len(items) / (time.perf_counter() - start)


def _bare_pil(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _bare_cv2_all(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    cap.release()
    return n


def run(*, quick: bool = False) -> dict:
    from deepaudit import media
    from deepaudit.photos import builtin_photos, pan_clip

    repeat = 1 if quick else 5
    photos = builtin_photos()
    out: dict = {"repeat": repeat}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for ext in (".jpg", ".png", ".webp"):
            files = [media.write_image(d / f"{p.name}{ext}", p.image) for p in photos]
            ours = _rate(media.read_image, files, repeat)
            bare = _rate(_bare_pil, files, repeat)
            probe = _rate(lambda f: media.probe(f, verify=False), files, repeat)
            out[f"image{ext}"] = {
                "files": len(files),
                "read_image_per_s": round(ours, 1),
                "bare_pillow_per_s": round(bare, 1),
                "ratio_ours_vs_bare": round(ours / bare, 3),
                "probe_header_only_per_s": round(probe, 1),
            }
        frames = pan_clip(photos[0].image, frames=24 if quick else 120, size=256)
        for ext in (".mp4", ".avi", ".mkv"):
            path = media.write_video(d / f"clip{ext}", frames, fps=24).path
            media.read_video(path, num_frames=1)  # warm up the decoder libraries
            _bare_cv2_all(path)
            t = time.perf_counter()
            full = media.read_video(path)
            t_full = time.perf_counter() - t
            t = time.perf_counter()
            media.read_video(path, num_frames=8)
            t_8 = time.perf_counter() - t
            t = time.perf_counter()
            _bare_cv2_all(path)
            t_bare = time.perf_counter() - t
            out[f"video{ext}"] = {
                "frames": len(full.frames),
                "size": f"{full.width}x{full.height}",
                "read_all_fps": round(len(full.frames) / t_full, 1),
                "bare_opencv_read_all_fps": round(len(full.frames) / t_bare, 1),
                "ratio_ours_vs_bare": round(t_bare / t_full, 3),
                "sample_8_vs_read_all_time_ratio": round(t_8 / t_full, 3),
            }
    if SHARED.is_dir():
        files = [f for f in sorted(SHARED.rglob("*")) if f.is_file()]
        results = media.probe_files(files)
        out["shared_samples"] = {
            "files": len(files),
            "unreadable": [r.path for r in results if r.error],
            "probe_verify_per_s": round(_rate(media.probe, files, 1), 1),
        }
    else:
        out["shared_samples"] = f"skipped: {SHARED} not found"
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    json.dump(run(quick=parser.parse_args().quick), sys.stdout, indent=2)
    sys.stdout.write("\n")
