"""Published detectors: scoring speed, peak memory and parity, per kind.

``python -m benchmarks.zoo [--quick] [--device cpu|cuda] [--kinds cnndetection,npr]`` prints
JSON. For every kind (each in its own process, so peak memory is its own):

- the authors' file format is written with random weights at the paper's real size
  (``tests/detectors/zoo/test_<kind>.py``: ``authors_files``), imported, and loaded;
- ``images_per_s``: ``predict_proba`` on 256×256 photo crops (the whole image for the kinds
  that score it whole), after one warm-up batch, on CPU and — where available — CUDA;
- ``peak_rss_mib``: the process's peak resident memory (CPU), ``peak_cuda_mib`` on CUDA;
- ``parity_max_abs``: the largest difference of decision values between the imported
  detector and the test's independent forward pass (``reference_decisions``).

Speeds are only comparable within one run; the CPU's flags are named in ``environment``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _images(n: int, size: int) -> list[np.ndarray]:
    from deepaudit.photos import builtin_photos

    photos = [p.image for p in builtin_photos()]
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        h, w = img.shape[:2]
        s = min(size, h, w)
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        out.append(np.ascontiguousarray(img[y : y + s, x : x + s, :3]))
    return out


def run_one(kind: str, *, device: str, quick: bool) -> dict:
    """Measure one kind in this process."""
    import importlib
    import resource

    import torch

    from deepaudit.detectors import load_detector
    from deepaudit.detectors.zoo import import_detector

    test = importlib.import_module(f"tests.detectors.zoo.test_{kind}")
    n = 4 if quick else 16
    with tempfile.TemporaryDirectory() as tmp:
        weights, backbones = test.authors_files(Path(tmp) / "authors", small=quick)
        out = import_detector(kind, weights, Path(tmp) / "det", backbones=backbones)
        det = load_detector(out, device=device)
        images = _images(n, 256)
        ref = np.asarray(test.reference_decisions(weights, backbones, images[:2]), np.float64)
        got = np.concatenate(
            [det.decision_values(det.input_spec().prepare(im)) for im in images[:2]]
        )
        parity = float(np.max(np.abs(ref - got)))
        det.predict_proba(images[:2])  # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        det.predict_proba(images)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
    res = {
        "kind": kind,
        "device": device,
        "images": n,
        "image_size": 256,
        "input": det.input_spec().__dict__,
        "images_per_s": round(n / dt, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "parity_max_abs": parity,
        "real_size": not quick,
    }
    if device.startswith("cuda"):
        res["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return res


def run(*, quick: bool = False, device: str = "auto", kinds: list[str] | None = None) -> dict:
    import torch

    from deepaudit.detectors.zoo import KINDS
    from deepaudit.devices import describe_environment

    devices = ["cpu"]
    if device in ("auto", "cuda") and torch.cuda.is_available():
        devices.append("cuda")
    results = []
    root = Path(__file__).resolve().parents[1]
    for kind in kinds or list(KINDS):
        for dev in devices:
            cmd = [sys.executable, "-m", "benchmarks.zoo", "--one", kind, "--device", dev]
            if quick:
                cmd.append("--quick")
            proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=os.environ)
            if proc.returncode:
                err = (proc.stderr.strip().splitlines() or ["failed"])[-1]
                results.append({"kind": kind, "device": dev, "error": err})
            else:
                results.append(json.loads(proc.stdout))
    env = describe_environment()
    return {
        "environment": {k: env[k] for k in ("cpu_count", "cpu_flags", "gpus", "torch_threads")},
        "quick": quick,
        "kinds": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Small models, 4 images.")
    parser.add_argument("--device", default="auto", help="auto (CPU, and CUDA if present), cpu.")
    parser.add_argument("--kinds", default=None, help="Comma-separated kinds (default: all).")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        out = run_one(args.one, device=args.device, quick=args.quick)
    else:
        kinds = args.kinds.split(",") if args.kinds else None
        out = run(quick=args.quick, device=args.device, kinds=kinds)
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
