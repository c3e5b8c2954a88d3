"""Generation speed: the suite (files, manifest, hashes) vs a bare loop over the same model.

``python -m benchmarks.generate [--quick] [--device cpu|cuda]`` prints JSON with two parts.

``sampling`` (a pixel DDPM trained here):

- ``bare_images_per_s``: a plain loop over the same UNet and DDIM scheduler with the same
  steps and batch size, images kept in memory;
- ``suite_images_per_s``: :func:`generators.suite.run_suite` making the same images into a
  dataset folder (PNG files, SHA-256, manifest lines flushed per item);
- ``overhead_ratio`` = suite time ÷ bare time (goal ≤ 1.05).

``vae_reconstruct`` (the ``vae-reconstruct`` twins of real photos, through an autoencoder
with Stable Diffusion's architecture, 83 M parameters, random weights built from its
config: the speed is the architecture's, the weights do not change it):

- ``bare_images_per_s``: decoded photos already in memory as tensors, encode → decode →
  uint8, nothing written;
- ``suite_images_per_s``: the suite making the twins from the files: loading the
  autoencoder, decoding each photo, hashing and placing it, writing the twin in the
  photo's format (JPEG tables copied, PNG), the manifest;
- ``ratio`` = suite images/s ÷ bare images/s (goal ≥ 0.9);
- ``cpu_flags``: the CPU features speed depends on (avx512_bf16, amx, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def run(*, quick: bool = False, device: str = "cpu") -> dict:
    return {
        "sampling": run_sampling(quick=quick, device=device),
        "vae_reconstruct": run_vae_reconstruct(quick=quick, device=device),
    }


def run_sampling(*, quick: bool = False, device: str = "cpu") -> dict:
    import torch

    from deepaudit.generators.diffusion import load_diffusion_model
    from deepaudit.generators.samplers import make_scheduler
    from deepaudit.generators.suite import load_suite, run_suite
    from deepaudit.generators.training import TrainConfig, train_diffusion

    n, steps, batch = (32, 10, 16) if quick else (256, 25, 32)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = TrainConfig(family="pixel", channels=(32, 64, 64), steps=5, batch_size=8)
        t = time.perf_counter()
        model = train_diffusion(cfg, root / "model", device=device)
        train_s = time.perf_counter() - t
        m = load_diffusion_model(model, device=device)
        unet = m.unet

        def bare() -> None:
            with torch.inference_mode():
                for start in range(0, n, batch):
                    b = min(batch, n - start)
                    gens = [torch.Generator().manual_seed(start + i) for i in range(b)]
                    x = torch.stack([torch.randn((3, 32, 32), generator=g) for g in gens]).to(
                        device
                    )
                    sched = make_scheduler("ddim", m.scheduler_config)
                    sched.set_timesteps(steps, device=device)
                    for ts in sched.timesteps:
                        x = sched.step(unet(x, ts).sample, ts, x).prev_sample
                    ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()

        bare()  # warm-up
        t = time.perf_counter()
        bare()
        t_bare = time.perf_counter() - t
        spec_path = root / "suite.toml"
        spec_path.write_text(
            f'[suite]\nbatch_size = {batch}\n[[generate]]\ngenerator = "pixel-ddim"\n'
            f'model = "{model}"\ncount = {n}\n'
            f"options = {{ steps = {steps}, batch_size = {batch} }}\n"
        )
        spec = load_suite(spec_path)
        run_suite(spec, root / "warm", device=device)
        t = time.perf_counter()
        report = run_suite(spec, root / "out", device=device)
        t_suite = time.perf_counter() - t
    return {
        "device": device,
        "images": n,
        "steps": steps,
        "batch": batch,
        "bare_images_per_s": round(n / t_bare, 2),
        "suite_images_per_s": round(report.generated / t_suite, 2),
        "overhead_ratio": round(t_suite / t_bare, 3),
        "train_5_steps_s": round(train_s, 2),
    }


def run_vae_reconstruct(*, quick: bool = False, device: str = "cpu") -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from deepaudit.devices import cpu_flags, device_policy
    from deepaudit.generators.autoencoders import VaeReconstructGenerator
    from deepaudit.generators.suite import load_suite, run_suite
    from deepaudit.generators.tiny_pipelines import write_tiny_autoencoder
    from deepaudit.media import read_image
    from deepaudit.photos import builtin_photos

    n, side, batch = (8, 128, 4) if quick else (32, 256, 4)
    policy = device_policy(device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        vae_dir = write_tiny_autoencoder(
            root / "sd-vae", widths=(128, 256, 512, 512), sample_size=512
        )
        photos = root / "photos"
        photos.mkdir()
        sources = [p.image for p in builtin_photos()]
        for i in range(n):  # half JPEG (tables to copy), half PNG: real datasets mix them
            img = sources[i % len(sources)]
            y, x = (i * 7) % max(1, img.shape[0] - side), (i * 11) % max(1, img.shape[1] - side)
            crop = np.ascontiguousarray(img[y : y + side, x : x + side])
            if crop.shape[:2] != (side, side):
                crop = np.asarray(Image.fromarray(crop).resize((side, side)))
            if i % 2:
                Image.fromarray(crop).save(photos / f"{i:03d}.png")
            else:
                Image.fromarray(crop).save(photos / f"{i:03d}.jpg", quality=90)
        gen = VaeReconstructGenerator(model=vae_dir, device=device)
        images = [read_image(p) for p in sorted(photos.iterdir())]

        def bare() -> None:
            lay = gen.layout
            with torch.inference_mode():
                for start in range(0, n, batch):
                    x = torch.from_numpy(np.stack(images[start : start + batch]))
                    x = x.permute(0, 3, 1, 2).to(policy.device, gen.dtype) / 127.5 - 1.0
                    z = gen.vae.encode(x).latent_dist.mode() * lay.scaling_factor
                    out = gen.vae.decode(z / lay.scaling_factor).sample
                    ((out.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()

        bare()  # warm-up
        t = time.perf_counter()
        bare()
        t_bare = time.perf_counter() - t
        spec_path = root / "suite.toml"
        spec_path.write_text(
            f'[suite]\nbatch_size = {batch}\n[[generate]]\ngenerator = "vae-reconstruct"\n'
            f'model = "{vae_dir}"\ninit_from = "{photos}"\noptions = {{ batch_size = {batch} }}\n'
        )
        spec = load_suite(spec_path)
        t = time.perf_counter()
        report = run_suite(spec, root / "out", device=device)
        t_suite = time.perf_counter() - t
    bare_rate, suite_rate = n / t_bare, report.generated / t_suite
    return {
        "device": policy.device,
        "precision": policy.precision,
        "cpu_flags": cpu_flags(),
        "torch_threads": torch.get_num_threads(),
        "images": n,
        "side": side,
        "batch": batch,
        "architecture": "SD 1.x/2.x/XL autoencoder (83 M parameters), random weights",
        "bare_images_per_s": round(bare_rate, 3),
        "suite_images_per_s": round(suite_rate, 3),
        "ratio": round(suite_rate / bare_rate, 3),
        "goal_ratio": 0.9,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="32 images, 10 steps; 8 twins of 128 px photos."
    )
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    json.dump(run(quick=args.quick, device=args.device), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
