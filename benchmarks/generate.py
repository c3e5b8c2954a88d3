"""Generation speed: the suite (files, manifest, hashes) vs a bare sampling loop.

``python -m benchmarks.generate [--quick] [--device cpu|cuda]`` prints JSON:

- ``bare_images_per_s``: a plain loop over the same UNet and DDIM scheduler with the same
  steps and batch size, images kept in memory;
- ``suite_images_per_s``: :func:`generators.suite.run_suite` making the same images into a
  dataset folder (PNG files, SHA-256, manifest lines flushed per item);
- ``overhead_ratio`` = suite time ÷ bare time (goal ≤ 1.05).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def run(*, quick: bool = False, device: str = "cpu") -> dict:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="32 images, 10 steps.")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    json.dump(run(quick=args.quick, device=args.device), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
