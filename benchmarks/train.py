"""Detector training and inference speed: the full pipeline vs the model alone.

``python -m benchmarks.train [--quick] [--device cuda] [--model resnet50] [--size 224]``
prints JSON. On the same files and model:

- ``pipeline_train_images_per_s``: :func:`detectors.train.fit_network` per epoch (decode,
  random crop, augmentation, DataLoader, AMP/channels_last on CUDA), first and later epochs;
- ``bare_train_images_per_s``: forward + backward + step on batches already in memory;
- ``ratio`` = pipeline (later epochs) ÷ bare (goal ≥ 0.9);
- ``inference_images_per_s``: ``predict_crops`` on prepared crops, and ``score_items``
  (decode + crop + predict) on the files.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _make_files(root: Path, n: int, size: int) -> None:
    from deepaudit.manifest import ManifestItem, ManifestWriter
    from deepaudit.media import file_sha256, write_image
    from deepaudit.photos import builtin_photos

    photos = [p.image for p in builtin_photos()]
    rng = np.random.default_rng(0)
    with ManifestWriter(root) as w:
        for i in range(n):
            img = photos[i % len(photos)]
            h, w_ = img.shape[:2]
            s = min(size * 2, h, w_)
            y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w_ - s + 1))
            crop = np.ascontiguousarray(img[y : y + s, x : x + s])
            label = "synthetic" if i % 2 else "real"
            p = write_image(root / f"{i:05d}.jpg", crop, quality=90)
            w.write(
                ManifestItem(
                    id=str(i),
                    path=p.name,
                    sha256=file_sha256(p),
                    kind="image",
                    label=label,
                    source="bench",
                    split="train",
                )
            )


def run(
    *,
    quick: bool = False,
    device: str = "cpu",
    model: str | None = None,
    size: int | None = None,
    workers: int | None = None,
) -> dict:
    import torch
    import torch.nn.functional as F

    from deepaudit.detectors import create_detector
    from deepaudit.detectors.data import load_items
    from deepaudit.detectors.inference import score_items
    from deepaudit.detectors.train import fit_network
    from deepaudit.devices import device_policy

    model = model or "resnet10t"
    size = size or (64 if quick else 128)
    n = 256 if quick else 2048
    batch = 32 if quick else 64
    policy = device_policy(device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _make_files(root, n, size)
        items = load_items(root)
        det = create_detector(
            "timm",
            model=model,
            input_size=size,
            batch_size=batch,
            device=device,
            blur_p=0.0,
            jpeg_p=0.0,
        )
        epochs = 2 if quick else 3
        hist = fit_network(
            det,
            det.module,
            items,
            None,
            epochs=epochs,
            batch_size=batch,
            patience=99,
            device=device,
            num_workers=workers,
        )
        per_epoch = [e["train_images_per_s"] for e in hist["epochs"]]
        # the same model alone on tensors in memory
        module = det.module.to(policy.torch_device()).train()
        if policy.channels_last:
            module = module.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
        x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8).to(
            policy.torch_device()
        )
        if policy.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 2, (batch,)).float().to(policy.torch_device())
        steps = max(4, n // batch)

        def bare_step() -> None:
            with policy.autocast():
                logits = module(x).squeeze(1)
            loss = F.binary_cross_entropy_with_logits(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(3):
            bare_step()
        if policy.is_cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(steps):
            bare_step()
        if policy.is_cuda:
            torch.cuda.synchronize()
        bare = steps * batch / (time.perf_counter() - t)
        crops = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        det._policy = None
        det.score_inputs(crops[:batch])
        t = time.perf_counter()
        for i in range(0, n, batch * 2):
            det.score_inputs(crops[i : i + batch * 2])
        infer = n / (time.perf_counter() - t)
        t = time.perf_counter()
        score_items(det, items, batch_size=batch * 2)
        scored = n / (time.perf_counter() - t)
    later = float(np.mean(per_epoch[1:])) if len(per_epoch) > 1 else per_epoch[0]
    return {
        "device": policy.device,
        "amp": policy.amp_dtype,
        "channels_last": policy.channels_last,
        "model": model,
        "size": size,
        "images": n,
        "batch": batch,
        "pipeline_train_images_per_s": [round(v, 1) for v in per_epoch],
        "bare_train_images_per_s": round(bare, 1),
        "ratio": round(later / bare, 3),
        "inference_images_per_s": round(infer, 1),
        "score_files_images_per_s": round(scored, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="256 files at 64², 2 epochs.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default=None, help="timm model (default resnet10t).")
    parser.add_argument("--size", type=int, default=None, help="crop side")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers")
    a = parser.parse_args(argv)
    res = run(quick=a.quick, device=a.device, model=a.model, size=a.size, workers=a.workers)
    json.dump(res, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
