"""Sampling the diffusion models trained here, one registered generator per family × sampler.

``pixel-ddim``, ``pixel-dpmpp``, ``latent-euler``, ... share a model folder made by
:func:`generators.training.train_diffusion` and differ in the scheduler that samples it.
Every item starts from noise drawn on the CPU from its own seed, so a seed gives the same
image whatever the batch it lands in, on CPU and (up to float differences) on GPU.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.errors import DependencyError
from deepaudit.generators._registry import register_generator
from deepaudit.generators.base import BatchedGenerator, GeneratedItem, GenerationRequest
from deepaudit.generators.samplers import SAMPLERS, make_scheduler, step_accepts_generator
from deepaudit.generators.training import META_NAME
from deepaudit.manifest import GeneratorInfo

__all__ = ["DiffusionModel", "TinyDiffusionGenerator", "load_diffusion_model"]


class DiffusionModel:
    """A trained model folder loaded for sampling: UNet, optional autoencoder, metadata."""

    def __init__(self, path: Path, unet: Any, vae: Any, scheduler_config: Any, meta: dict) -> None:
        self.path = path
        self.unet = unet
        self.vae = vae
        self.scheduler_config = scheduler_config
        self.meta = meta

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.path.name)

    @property
    def classes(self) -> list[str]:
        return list(self.meta.get("classes") or [])


def load_diffusion_model(path: str | os.PathLike[str], *, device: Any = "cpu") -> DiffusionModel:
    """Load a folder written by ``train_diffusion``; a clear error if it is not one."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DModel

    root = Path(path)
    meta_path = root / META_NAME
    if not root.is_dir():
        raise DependencyError(
            f"{root}: model folder not found (train one: deepaudit generators train)"
        )
    if not meta_path.is_file():
        raise DependencyError(
            f"{root}: not a deepaudit diffusion model (no {META_NAME}); "
            "train one with `deepaudit generators train`"
        )
    try:
        meta = json.loads(meta_path.read_text())
        unet = UNet2DModel.from_pretrained(root / "unet")
        vae = None
        if meta.get("family") == "latent":
            vae = AutoencoderKL.from_pretrained(root / "vqvae")
        sched_cfg = DDPMScheduler.load_config(root / "scheduler")
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DependencyError(f"{root}: broken model folder: {first}") from exc
    unet.to(device).eval()
    if vae is not None:
        vae.to(device).eval()
    return DiffusionModel(root, unet, vae, sched_cfg, meta)


class TinyDiffusionGenerator(BatchedGenerator):
    """Unconditional or class-conditional sampling of a model trained here."""

    kind = "image"

    def __init__(
        self,
        *,
        name: str,
        family: str,
        sampler: str,
        model: str | os.PathLike[str] | None = None,
        steps: int | None = None,
        guidance: float = 1.0,
        batch_size: int = 16,
        device: str = "auto",
        precision: str = "fp32",
        eta: float = 0.0,
    ) -> None:
        from deepaudit.devices import device_policy

        if model is None:
            raise DependencyError(
                f"generator {name!r} needs model=DIR: a folder made by "
                f"`deepaudit generators train --family {family}`"
            )
        self.name = name
        self.sampler = sampler
        self.steps = int(steps or SAMPLERS[sampler][2])
        self.guidance = float(guidance)
        self.batch_size = int(batch_size)
        self.eta = float(eta)
        self.policy = device_policy(device, precision=precision)
        self.model = load_diffusion_model(model, device=self.policy.torch_device())
        if self.model.meta.get("family") != family:
            raise DependencyError(
                f"{model}: a {self.model.meta.get('family')} model, not {family}; "
                f"use a {self.model.meta.get('family')}-* generator"
            )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model.name,
            "model_path": str(self.model.path),
            "sampler": self.sampler,
            "steps": self.steps,
            "classes": self.model.classes,
            "image_size": self.model.meta.get("image_size"),
        }

    def _batch(self, requests: Sequence[GenerationRequest]) -> list[GeneratedItem]:
        import torch

        started = time.perf_counter()
        m = self.model
        dev = self.policy.torch_device()
        unet = m.unet
        size = unet.config.sample_size
        chans = unet.config.in_channels
        gens = [torch.Generator().manual_seed(int(r.seed)) for r in requests]
        noise = torch.stack([torch.randn((chans, size, size), generator=g) for g in gens])
        sched = make_scheduler(self.sampler, m.scheduler_config)
        sched.set_timesteps(self.steps, device=dev)
        x = noise.to(dev) * sched.init_noise_sigma
        labels = self._class_labels(requests)
        uncond = None
        if labels is not None and self.guidance != 1.0:
            uncond = torch.full_like(labels, len(m.classes))
        step_kwargs: dict[str, Any] = {}
        if step_accepts_generator(sched):
            step_kwargs["generator"] = gens
        if self.sampler == "ddim":
            step_kwargs["eta"] = self.eta
        with torch.inference_mode(), self.policy.autocast():
            for t in sched.timesteps:
                inp = sched.scale_model_input(x, t)
                eps = unet(inp, t, class_labels=labels).sample
                if uncond is not None:
                    eps_u = unet(inp, t, class_labels=uncond).sample
                    eps = eps_u + self.guidance * (eps - eps_u)
                x = sched.step(eps.float(), t, x, **step_kwargs).prev_sample
            if m.vae is not None:
                x = m.vae.decode(x / float(m.meta["latent_scale"])).sample
        pixels = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        pixels = pixels.permute(0, 2, 3, 1).cpu().numpy()
        seconds = (time.perf_counter() - started) / len(requests)
        items = []
        for r, px in zip(requests, pixels, strict=True):
            attrs = {m.meta["class_attribute"]: r.class_label} if r.class_label else {}
            info = GeneratorInfo(
                model=m.name,
                sampler=self.sampler,
                steps=self.steps,
                guidance=self.guidance if labels is not None else None,
                seed=int(r.seed),
                params={
                    "family": m.meta.get("family"),
                    "resolution": int(px.shape[0]),
                    **({"class": r.class_label} if r.class_label else {}),
                    **({"eta": self.eta} if self.sampler == "ddim" else {}),
                },
            )
            items.append(GeneratedItem(np.ascontiguousarray(px), info, attrs, seconds=seconds))
        return items

    def _class_labels(self, requests: Sequence[GenerationRequest]) -> Any:
        import torch

        classes = self.model.classes
        if not classes:
            bad = [r.class_label for r in requests if r.class_label]
            if bad:
                raise ValueError(f"{self.model.path}: model is unconditional; got class {bad[0]!r}")
            return None
        idx = []
        for r in requests:
            if r.class_label is None:
                idx.append(len(classes))  # the "no class" token
            elif r.class_label not in classes:
                valid = ", ".join(classes)
                raise ValueError(
                    f"{self.model.path}: unknown class {r.class_label!r}; valid: {valid}"
                )
            else:
                idx.append(classes.index(r.class_label))
        return torch.tensor(idx, device=self.policy.torch_device())


def _register_family(family: str, what: str) -> None:
    for sampler in SAMPLERS:
        name = f"{family}-{sampler}"

        def factory(
            _name: str = name, _sampler: str = sampler, **cfg: Any
        ) -> TinyDiffusionGenerator:
            return TinyDiffusionGenerator(name=_name, family=family, sampler=_sampler, **cfg)

        register_generator(name, family=family, description=f"{what}, sampled with {sampler}")(
            factory
        )


_register_family("pixel", "pixel-space DDPM trained here")
_register_family("latent", "latent diffusion (AutoencoderKL + UNet) trained here")
