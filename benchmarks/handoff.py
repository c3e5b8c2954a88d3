"""The scan's GPU-path stages on this machine: crops handed back pickled vs through shared
memory, and JPEGs decoded by ``read_image`` vs the batched decoder, in one run.

``python -m benchmarks.handoff [--quick] [--device cpu|cuda] [--size 224]`` prints JSON:

- ``transfer``: per file, a worker process returning a record with the detectors' crops
  (one ``size``² RGB crop for an image, ``frames`` of them for a clip) to the main process,
  ``pickle`` (the scan before) vs ``shared_memory`` (:mod:`deepaudit.audit.handoff`): the
  wall time per file with ``4`` files in flight, and the main process's CPU time per file
  (the single process a fast accelerator waits on); ``ratio_*`` = pickle ÷ shared memory
  (above 1: shared memory is cheaper);
- ``decode``: ms per JPEG of ``read_image`` (Pillow, one file at a time) and of
  :func:`deepaudit.jpeg_batch.decode_jpegs` in batches of 32 on ``--device``, and the largest
  pixel difference between the two (0 on the CPU: both are libjpeg-turbo; nvJPEG may differ
  by a level or two, which the detectors' score tolerance absorbs);
- the CPU flags and the load average before and after (the machine may be shared: run it
  under ``nice -n 10`` and read the ratios, not the absolute figures).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

_crops: dict[tuple[int, ...], np.ndarray] = {}


def _worker_record(shape: tuple[int, ...], block: str | None) -> dict[str, Any]:
    """A worker's record with fresh crops, placed in ``block`` when one is lent."""
    from deepaudit.audit.handoff import write_block

    base = _crops.get(shape)
    if base is None:
        base = _crops[shape] = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    rec = {"path": "x.jpg", "kind": "image", "_inputs": {"crop": base.copy()}}
    return write_block(rec, block) if block is not None else rec


def _transfer(shape: tuple[int, ...], n: int, shared: bool) -> dict[str, float]:
    from deepaudit.audit.handoff import BlockPool

    in_flight = 4
    nbytes = int(np.prod(shape))
    pool = BlockPool(in_flight, nbytes) if shared else None
    try:
        with ProcessPoolExecutor(1) as ex:
            ex.submit(_worker_record, shape, None).result()  # started and warm
            cpu0, t0 = time.process_time(), time.perf_counter()
            pending: dict[Any, str | None] = {}
            done = submitted = 0
            while done < n:
                while submitted < n and len(pending) < in_flight:
                    block = pool.lend() if pool is not None else None
                    pending[ex.submit(_worker_record, shape, block)] = block
                    submitted += 1
                finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for fut in finished:
                    block = pending.pop(fut)
                    rec = fut.result()
                    if pool is not None:
                        pool.take(rec, block)
                    assert rec["_inputs"]["crop"].shape == shape
                    done += 1
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        if pool is not None:
            pool.close()
    return {"wall_ms_per_file": 1e3 * wall / n, "main_cpu_ms_per_file": 1e3 * cpu / n}


def _decode(root: Path, n: int, side: int, device: str) -> dict[str, Any]:
    from deepaudit.jpeg_batch import decode_jpegs, jpeg_header
    from deepaudit.media import read_image, write_image
    from deepaudit.photos import builtin_photos

    photos = [p.image for p in builtin_photos()]
    files = []
    for i in range(n):
        img = photos[i % len(photos)]
        s = min(side, *img.shape[:2])
        files.append(write_image(root / f"{i:04d}.jpg", np.ascontiguousarray(img[:s, :s])))
    blobs = [f.read_bytes() for f in files]
    headers = [jpeg_header(b) for b in blobs]
    orientations = [h.orientation if h else 1 for h in headers]
    decode_jpegs(blobs[:2], orientations[:2], device)  # the decoder loaded (and CUDA up)
    t = time.perf_counter()
    reference = [read_image(f) for f in files]
    t_cpu = time.perf_counter() - t
    t = time.perf_counter()
    batched: list[np.ndarray | None] = []
    for k in range(0, n, 32):
        batched += decode_jpegs(blobs[k : k + 32], orientations[k : k + 32], device)
    t_batch = time.perf_counter() - t
    diffs = [
        int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())
        for a, b in zip(reference, batched, strict=True)
        if b is not None and a.shape == b.shape
    ]
    return {
        "jpegs": n,
        "side": side,
        "accepted_by_header": sum(h is not None for h in headers),
        "read_image_ms_per_file": round(1e3 * t_cpu / n, 3),
        "batched_ms_per_file": round(1e3 * t_batch / n, 3),
        "device": device,
        "decoded_same_shape": len(diffs),
        "max_abs_pixel_difference": max(diffs) if diffs else None,
    }


def run(*, quick: bool = False, device: str = "cpu", size: int = 224, frames: int = 8) -> dict:
    from deepaudit.devices import cpu_flags

    n = 200 if quick else 2000
    load_before = os.getloadavg()
    transfer: dict[str, Any] = {}
    for label, shape in (("image", (1, size, size, 3)), ("clip", (frames, size, size, 3))):
        count = n if label == "image" else max(50, n // 4)
        pickled = _transfer(shape, count, shared=False)
        shm = _transfer(shape, count, shared=True)
        transfer[label] = {
            "bytes_per_file": int(np.prod(shape)),
            "files": count,
            "pickle": {k: round(v, 4) for k, v in pickled.items()},
            "shared_memory": {k: round(v, 4) for k, v in shm.items()},
            "ratio_wall": round(pickled["wall_ms_per_file"] / shm["wall_ms_per_file"], 3),
            "ratio_main_cpu": round(
                pickled["main_cpu_ms_per_file"] / max(shm["main_cpu_ms_per_file"], 1e-6), 3
            ),
        }
    with tempfile.TemporaryDirectory() as tmp:
        decode = _decode(Path(tmp), 64 if quick else 256, 512, device)
    return {
        "transfer": transfer,
        "decode": decode,
        "cpu_flags": cpu_flags(),
        "cpus": os.cpu_count(),
        "load_average_1min": {
            "before": round(load_before[0], 2),
            "after": round(os.getloadavg()[0], 2),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200 files, 64 JPEGs.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=224)
    a = parser.parse_args(argv)
    json.dump(run(quick=a.quick, device=a.device, size=a.size), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
