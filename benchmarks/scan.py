"""Scan speed and memory, measured in one run on the same files.

``python -m benchmarks.scan [--quick] [--device cpu|cuda] [--model resnet50] [--size 224]``
prints JSON. Files: JPEG and PNG photo crops in ``0_real/`` and ``1_fake/`` plus a few MP4
clips; one timm detector (weights untouched: speed does not depend on them).

- ``scan_files_per_s``: ``deepaudit scan`` (workers, provenance, metadata, watermark,
  batched detector; ``--precision``, engine auto: ``auto_engine`` says what it chose) over
  the files;
- ``decode_files_per_s``, ``provenance_files_per_s``, ``hash_metadata_watermark_files_per_s``:
  each stage alone, in this process; ``inference_images_per_s``: the model alone on
  pre-decoded crops, per engine the machine can run (torch fp32, onnx fp32, torch bf16 on
  CPUs with bf16 units; torch AMP on CUDA);
- ``bound_files_per_s``: one core doing every stage in turn with the fastest engine (files ÷
  the sum of the stage times), and ``scan_vs_bound`` (goal ≥ 0.9; above 1 where worker
  processes overlap stages);
- ``peer_images_per_s``: the CNNDetection-style loop (torchvision ImageFolder + DataLoader,
  CenterCrop, batch 32, 2 workers, the same model, torch fp32) and, per engine,
  ``scan_images_per_s`` and ``scan_vs_peer`` on the same images (goals: ≥ 2.5 on AVX2, ≥ 3
  with bf16 units);
- ``peak_rss_mb`` of a scan over N and 10×N files (the 10×N set copies the files under
  new names) and their ratio (goal ≤ 1.1: memory flat in the number of files);
- ``handoff``: the GPU path's stages (:mod:`benchmarks.handoff`): crops back from a worker
  pickled vs through shared memory, and ``read_image`` vs the batched JPEG decoder.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_files(root: Path, n: int, side: int, clips: int, *, resized: bool = False) -> list[Path]:
    """``n`` photos from the built-in ones, JPEG and PNG in ``0_real``/``1_fake``, and
    ``clips`` MP4 clips (pans of 24 frames). Each photo is its own random crop: at most
    ``side``² as it is, or with ``resized`` a crop of 70-100% of the photo's short side
    resized to exactly ``side``² (real-sized files, no two alike). Seeded: the same files
    every run."""
    from deepaudit.media import write_image, write_video
    from deepaudit.photos import builtin_photos, pan_clip

    photos = [p.image for p in builtin_photos()]
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        s = int(min(h, w) * rng.uniform(0.7, 1.0)) if resized else min(side, h, w)
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        crop = np.ascontiguousarray(img[y : y + s, x : x + s])
        if resized:
            import cv2

            crop = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
        folder = root / ("1_fake" if i % 2 else "0_real")
        ext = ".jpg" if i % 3 else ".png"
        files.append(write_image(folder / f"{i:05d}{ext}", crop, quality=90))
    for i in range(clips):
        frames = pan_clip(photos[i % len(photos)], frames=24, size=min(side, 256))
        files.append(write_video(root / "0_real" / f"clip{i}.mp4", frames, fps=12).path)
    return files


def _peak_rss_of_scan(paths: list[Path], out: Path, det: Path, workers: int, device: str) -> float:
    cmd = [
        sys.executable,
        "-m",
        "deepaudit",
        "scan",
        *map(str, paths),
        "-o",
        str(out),
        "-d",
        str(det),
        "--workers",
        str(workers),
        "--device",
        device,
        "--json",
    ]
    code = (
        "import resource, subprocess, sys, json\n"
        f"p = subprocess.run({cmd!r}, capture_output=True)\n"
        "assert p.returncode == 0, p.stderr[-2000:]\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1]) / 1024.0


def run(
    *,
    quick: bool = False,
    device: str = "cpu",
    model: str | None = None,
    size: int | None = None,
    workers: int | None = None,
    precision: str = "auto",
) -> dict:
    import torch

    from deepaudit.audit.provenance import inspect_provenance
    from deepaudit.audit.scan import run_scan
    from deepaudit.c2pa_layer import make_context
    from deepaudit.detectors import create_detector
    from deepaudit.detectors.data import crop
    from deepaudit.media import read_image, read_video

    model = model or ("resnet10t" if quick else "resnet50")
    size = size or (64 if quick else 224)
    n = 48 if quick else 400
    clips = 2 if quick else 6
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "data"
        files = make_files(data, n, 2 * size if quick else 512, clips)
        det_dir = root / "det"
        det = create_detector("timm", model=model, input_size=size, device=device)
        det.save_pretrained(det_dir)

        from deepaudit.detectors import load_detector
        from deepaudit.devices import cpu_flags, cpu_has_bf16, resolve_precision

        t = time.perf_counter()
        summary = run_scan(
            [data],
            root / "scan",
            detectors=[det_dir],
            workers=workers,
            device=device,
            report=False,
            precision=precision,
        )
        t_scan = time.perf_counter() - t
        assert summary.files == len(files), summary.to_json()
        auto_choice = summary.detectors["det"].get("engine")

        t = time.perf_counter()
        decoded = []
        first_of = {}
        for f in files:
            if f.suffix == ".mp4":
                decoded.extend(read_video(f, num_frames=8).frames)
            else:
                decoded.append(read_image(f))
                first_of[f] = decoded[-1]
        t_decode = time.perf_counter() - t
        crops = np.stack([crop(im, size) for im in decoded])
        # every engine the machine can run, model alone on the prepared crops
        if device.startswith("cuda"):
            engines = [("torch", resolve_precision("auto", device))]
        else:
            engines = [("torch", "fp32"), ("onnx", "fp32")]
            if cpu_has_bf16():
                engines.append(("torch", "bf16"))
        infer_s: dict[str, float] = {}
        for eng, prec in engines:
            d = load_detector(det_dir, device=device, engine=eng, precision=prec)
            d.score_inputs(crops[:32])  # warm-up (and the one-off ONNX export)
            t = time.perf_counter()
            for i in range(0, len(crops), 32):
                d.score_inputs(crops[i : i + 32])
            infer_s[f"{eng}-{prec}"] = time.perf_counter() - t
        t_infer = min(infer_s.values())  # the faster engine in the bound
        ctx = make_context()
        t = time.perf_counter()
        for f in files:
            inspect_provenance(f, context=ctx)
        t_prov = time.perf_counter() - t
        # the rest of what the scan does per file: SHA-256, AI metadata, watermark decoding
        from deepaudit.audit.metadata import read_ai_metadata
        from deepaudit.audit.watermark import detect_watermark
        from deepaudit.media import file_sha256

        t = time.perf_counter()
        for f in files:
            file_sha256(f)
            if f.suffix != ".mp4":
                read_ai_metadata(f)
                detect_watermark(first_of[f])
        t_signals = time.perf_counter() - t

        rates = {
            "decode_files_per_s": len(files) / t_decode,
            "provenance_files_per_s": len(files) / t_prov,
            "hash_metadata_watermark_files_per_s": len(files) / t_signals,
        }
        inference = {k: round(len(crops) / v, 2) for k, v in infer_s.items()}
        # one core doing every stage in turn (videos: 8 frames of inference each)
        bound = len(files) / (t_decode + t_prov + t_signals + t_infer)
        scan_rate = len(files) / t_scan

        # the peer: CNNDetection's evaluation loop over 0_real/1_fake
        from torch.utils.data import DataLoader
        from torchvision import datasets, transforms

        images = [f for f in files if f.suffix != ".mp4"]
        tf = transforms.Compose(
            [
                transforms.CenterCrop(size),
                transforms.ToTensor(),
                transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
            ]
        )
        ds = datasets.ImageFolder(
            str(data), transform=tf, is_valid_file=lambda p: not p.endswith(".mp4")
        )
        loader = DataLoader(ds, batch_size=32, num_workers=2)
        # the peer's own copy of the weights, in PyTorch's default (contiguous) layout as
        # CNNDetection runs it; our detector switched its copy to channels_last
        import copy

        net = (
            copy.deepcopy(det.module.net)
            .to(device)
            .eval()
            .to(memory_format=torch.contiguous_format)
        )
        t = time.perf_counter()
        with torch.inference_mode():
            for x, _ in loader:
                torch.sigmoid(net(x.to(device)))
        t_peer = time.perf_counter() - t
        peer = len(images) / t_peer
        # the same images through the scan alone, for a like-for-like ratio, per engine
        scan_images: dict[str, float] = {}
        for eng, prec in [("auto", precision), *engines]:
            t = time.perf_counter()
            run_scan(
                [data / "0_real", data / "1_fake"],
                root / f"scan_images_{eng}_{prec}",
                detectors=[det_dir],
                workers=workers,
                device=device,
                report=False,
                precision=prec,
                engine=eng,
            )
            scan_images[f"{eng}-{prec}"] = len(images) / (time.perf_counter() - t)
        best = max(scan_images.values())

        big = root / "big"
        for k in range(10):
            for f in files:
                dst = big / f"{k}" / f.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dst)  # new files (links would be deduplicated by inode)
        w = workers if workers is not None else 1
        rss_n = _peak_rss_of_scan([data], root / "rss_n", det_dir, w, device)
        rss_10n = _peak_rss_of_scan([big], root / "rss_10n", det_dir, w, device)
    from benchmarks.handoff import run as handoff

    gpu_path = handoff(quick=quick, device=device, size=size)  # the GPU path's two stages
    return {
        "device": device,
        "precision": precision,
        "model": model,
        "crop": size,
        "files": len(files),
        "videos": clips,
        "scan_files_per_s": round(scan_rate, 2),
        "auto_engine": auto_choice,
        **{k: round(v, 2) for k, v in rates.items()},
        "inference_images_per_s": inference,
        "bound_files_per_s": round(bound, 2),
        "scan_vs_bound": round(scan_rate / bound, 3),
        "peer_images_per_s": round(peer, 2),
        "scan_images_per_s": {k: round(v, 2) for k, v in scan_images.items()},
        "scan_vs_peer": {k: round(v / peer, 3) for k, v in scan_images.items()},
        "best_scan_vs_peer": round(best / peer, 3),
        "cpu_flags": cpu_flags(),
        "peak_rss_mb": {"n": round(rss_n, 1), "10n": round(rss_10n, 1)},
        "rss_ratio_10n_vs_n": round(rss_10n / rss_n, 3),
        "self_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "handoff": gpu_path,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="48 files, resnet10t at 64².")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--precision", default="auto", help="auto, fp32 or bf16")
    a = parser.parse_args(argv)
    res = run(
        quick=a.quick,
        device=a.device,
        model=a.model,
        size=a.size,
        workers=a.workers,
        precision=a.precision,
    )
    json.dump(res, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
