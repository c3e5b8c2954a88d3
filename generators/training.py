"""Train small diffusion models here, on real photos, because no weights can be downloaded.

Two architecturally different families, so cross-generator tests mean something:

- ``pixel``: a DDPM in pixel space (diffusers ``UNet2DModel`` + ``DDPMScheduler``);
- ``latent``: an ``AutoencoderKL`` trained first, then a UNet in its latent space (the
  Stable Diffusion recipe, tiny).

Both can be class-conditional on an attribute of the real images (``class_attribute``),
so synthetic items can be made per group. Training samples random crops from an image
pyramid of the real set and runs in :class:`deepaudit.trainer.Trainer`: a checkpoint every
``checkpoint_every`` steps, and a rerun after a kill anywhere ends with the same bits as an
uninterrupted run (when stopped by steps, not minutes). The result is a diffusers pipeline
folder (``DDPMPipeline`` / ``LDMPipeline``; loadable by diffusers itself) plus
``deepaudit.json`` describing the model and its training data.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from deepaudit.errors import DeepauditError
from deepaudit.trainer import Trainer, TrainState

__all__ = [
    "TrainConfig",
    "TrainingImages",
    "load_training_images",
    "train_diffusion",
    "write_real_crops",
]

logger = logging.getLogger(__name__)

META_NAME = "deepaudit.json"
Progress = Callable[[int, int, float], None]  # (step, total, loss)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the weights (plus where and how fast they are computed)."""

    family: Literal["pixel", "latent"] = "pixel"
    image_size: int = 32
    channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    steps: int = 1000
    batch_size: int = 32
    lr: float = 2e-4
    seed: int = 0
    train_timesteps: int = 1000
    class_attribute: str | None = None
    label_dropout: float = 0.1  # classifier-free guidance needs unconditional examples
    ae_steps: int | None = None  # latent family: autoencoder steps (default steps // 2)
    ae_channels: tuple[int, ...] = (32, 64)
    latent_channels: int = 4
    checkpoint_every: int = 200
    name: str | None = None

    def __post_init__(self) -> None:
        if self.family not in ("pixel", "latent"):
            raise ValueError(f"family must be 'pixel' or 'latent', got {self.family!r}")
        if self.image_size < 8 or self.image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8 (>= 8), got {self.image_size}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be positive")
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "ae_channels", tuple(int(c) for c in self.ae_channels))

    @property
    def autoencoder_steps(self) -> int:
        if self.family != "latent":
            return 0
        return self.ae_steps if self.ae_steps is not None else max(1, self.steps // 2)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["ae_channels"] = list(self.ae_channels)
        return d


@dataclass
class TrainingImages:
    """Real images in memory (RGB uint8) and, for conditional training, their classes."""

    images: list[np.ndarray]
    labels: list[int | None]
    classes: list[str] = field(default_factory=list)
    source: str = "builtin"

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for lab in self.labels:
            if lab is not None:
                counts[self.classes[lab]] = counts.get(self.classes[lab], 0) + 1
        return {"source": self.source, "images": len(self.images), "classes": counts}


def load_training_images(
    source: str | os.PathLike[str] | None = None,
    *,
    class_attribute: str | None = None,
    max_side: int = 512,
) -> TrainingImages:
    """Real images from a manifest folder, a plain folder, or (None) the built-in photos.

    Images are downscaled so their long side is at most ``max_side`` (training crops are
    small; keeping full-size photos in memory would only cost RAM).
    """
    from PIL import Image

    def shrink(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        if max(h, w) <= max_side:
            return img
        s = max_side / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.LANCZOS))

    if source is None:
        if class_attribute:
            raise DeepauditError(
                f"class_attribute={class_attribute!r} needs real images with that attribute "
                "(a manifest); the built-in photos have only 'scene'"
            )
        from deepaudit.photos import builtin_photos

        imgs = [shrink(p.image) for p in builtin_photos()]
        return TrainingImages(imgs, [None] * len(imgs), [], "builtin")

    from deepaudit.manifest import MANIFEST_NAME, read_manifest
    from deepaudit.media import read_image

    root = Path(source)
    images: list[np.ndarray] = []
    raw_labels: list[str | None] = []
    if (root / MANIFEST_NAME).is_file() or root.name == MANIFEST_NAME:
        manifest = read_manifest(root)
        items = [i for i in manifest.items if i.label == "real" and i.kind == "image"]
        if not items:
            raise DeepauditError(f"{manifest.path}: no real images to train on")
        if class_attribute:
            present = sorted({k for i in items for k in i.attributes})
            if not any(class_attribute in i.attributes for i in items):
                raise DeepauditError(
                    f"{manifest.path}: no item has attribute {class_attribute!r}; "
                    f"present: {', '.join(present) or 'none'}"
                )
        for item in items:
            try:
                images.append(shrink(read_image(manifest.resolve(item))))
            except DeepauditError as exc:
                logger.warning("skipping %s", exc)
                continue
            value = item.attributes.get(class_attribute) if class_attribute else None
            raw_labels.append(None if value is None else str(value))
    elif root.is_dir():
        if class_attribute:
            raise DeepauditError(f"{root}: class_attribute needs a manifest, not a plain folder")
        from deepaudit.manifest_import import iter_files

        for f in iter_files(root):
            try:
                images.append(shrink(read_image(f)))
                raw_labels.append(None)
            except DeepauditError as exc:
                logger.warning("skipping %s", exc)
    else:
        raise DeepauditError(f"{root}: not a manifest folder or a folder of images")
    if not images:
        raise DeepauditError(f"{root}: no readable images to train on")
    classes = sorted({lab for lab in raw_labels if lab is not None})
    labels = [classes.index(lab) if lab is not None else None for lab in raw_labels]
    return TrainingImages(images, labels, classes, str(root))


class _CropSampler:
    """Random square crops at several scales (an image pyramid), with horizontal flips."""

    def __init__(self, data: TrainingImages, size: int, seed: int) -> None:
        import torch
        from PIL import Image

        self.size = size
        self.entries: list[tuple[Any, int]] = []  # (tensor 3×H×W uint8, label or -1)
        for img, lab in zip(data.images, data.labels, strict=True):
            h, w = img.shape[:2]
            short = min(h, w)
            scale = size / short
            while scale <= 1.0 + 1e-9:
                nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
                small = np.asarray(Image.fromarray(img).resize((nw, nh), Image.Resampling.LANCZOS))
                t = torch.from_numpy(np.array(small)).permute(2, 0, 1).contiguous()
                self.entries.append((t, -1 if lab is None else int(lab)))
                scale *= 1.5
            if short < size:  # smaller than a crop: upscale once
                up = size / short
                nh, nw = max(size, round(h * up)), max(size, round(w * up))
                small = np.asarray(Image.fromarray(img).resize((nw, nh), Image.Resampling.BICUBIC))
                t = torch.from_numpy(np.array(small)).permute(2, 0, 1).contiguous()
                self.entries.append((t, -1 if lab is None else int(lab)))
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> tuple[Any, Any]:
        import torch

        out = torch.empty((n, 3, self.size, self.size), dtype=torch.uint8)
        labels = torch.empty(n, dtype=torch.long)
        picks = self.rng.integers(0, len(self.entries), n)
        for k, idx in enumerate(picks):
            t, lab = self.entries[idx]
            _, h, w = t.shape
            y = int(self.rng.integers(0, h - self.size + 1))
            x = int(self.rng.integers(0, w - self.size + 1))
            crop = t[:, y : y + self.size, x : x + self.size]
            out[k] = crop.flip(-1) if self.rng.random() < 0.5 else crop
            labels[k] = lab
        return out.float().div_(127.5).sub_(1.0), labels


def _build_unet(cfg: TrainConfig, n_classes: int) -> Any:
    from diffusers import UNet2DModel

    latent = cfg.family == "latent"
    size = cfg.image_size // 2 ** (len(cfg.ae_channels) - 1) if latent else cfg.image_size
    depth = len(cfg.channels)
    groups = math.gcd(8, *cfg.channels)
    return UNet2DModel(
        sample_size=size,
        in_channels=cfg.latent_channels if latent else 3,
        out_channels=cfg.latent_channels if latent else 3,
        block_out_channels=cfg.channels,
        layers_per_block=cfg.layers_per_block,
        down_block_types=("DownBlock2D",) * depth,
        up_block_types=("UpBlock2D",) * depth,
        norm_num_groups=groups,
        # one extra embedding is the "no class" token used for classifier-free guidance
        num_class_embeds=n_classes + 1 if n_classes else None,
    )


def _build_autoencoder(cfg: TrainConfig) -> Any:
    from diffusers import AutoencoderKL

    n = len(cfg.ae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.ae_channels,
        latent_channels=cfg.latent_channels,
        norm_num_groups=math.gcd(8, *cfg.ae_channels),
        sample_size=cfg.image_size,
    )


def train_diffusion(
    config: TrainConfig,
    out_dir: str | os.PathLike[str],
    *,
    data: TrainingImages | None = None,
    device: str = "auto",
    precision: str = "auto",
    minutes: float | None = None,
    tracker: Any = None,
    progress: Progress | None = None,
    resume: bool = True,
) -> Path:
    """Train a model per ``config`` into ``out_dir``; resume from its checkpoint if present.

    ``minutes`` caps wall time (stopping early but still saving a usable model); use
    ``config.steps`` alone when the result must be reproducible.
    """
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler

    from deepaudit.devices import device_policy, seed_everything

    out = Path(out_dir)
    data = data if data is not None else load_training_images()
    if config.class_attribute and not data.classes:
        raise DeepauditError(f"{data.source}: no item has a value for {config.class_attribute!r}")
    policy = device_policy(device, precision=precision)
    dev = policy.torch_device()
    seed_everything(config.seed)

    n_classes = len(data.classes) if config.class_attribute else 0
    unet = _build_unet(config, n_classes).to(dev)
    vae = _build_autoencoder(config).to(dev) if config.family == "latent" else None
    noise_sched = DDPMScheduler(num_train_timesteps=config.train_timesteps)
    sampler = _CropSampler(data, config.image_size, config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    ae_total = config.autoencoder_steps
    opt_ae = torch.optim.AdamW(vae.parameters(), lr=1e-3) if vae is not None else None
    opt = torch.optim.AdamW(unet.parameters(), lr=config.lr)
    state = TrainState(
        modules={"unet": unet, **({"vae": vae} if vae is not None else {})},
        stateful={"opt": opt, **({"opt_ae": opt_ae} if opt_ae is not None else {})},
        generators={"noise": gen, "crops": sampler.rng},
        values={"latent_scale": None},
    )
    trainer = Trainer(
        out / "checkpoint",
        state,
        config={**config.to_json(), "data": {"images": len(data.images), "classes": data.classes}},
        total=ae_total + config.steps,
        checkpoint_every=config.checkpoint_every,
        minutes=minutes,
        resume=resume,
        finished=out / META_NAME,
    )
    trainer.restore()

    def step(i: int) -> dict[str, float]:
        x, labels = sampler.batch(config.batch_size)
        x = x.to(dev)
        if i < ae_total:  # stage 1: the autoencoder
            vae.train()
            with policy.autocast():
                post = vae.encode(x).latent_dist
                rec = vae.decode(post.sample()).sample
                loss = F.mse_loss(rec.float(), x) + 1e-6 * post.kl().mean()
            opt_ae.zero_grad(set_to_none=True)
            loss.backward()
            opt_ae.step()
            return {"ae_loss": float(loss.detach())}
        if vae is not None:
            vae.eval()
            with torch.no_grad():
                z = vae.encode(x).latent_dist.mode()
                if state.values["latent_scale"] is None:
                    state.values["latent_scale"] = float(1.0 / z.flatten().std().clamp_min(1e-3))
                x = z * state.values["latent_scale"]
        noise = torch.randn(x.shape, generator=gen).to(dev)
        t = torch.randint(0, config.train_timesteps, (x.shape[0],), generator=gen).to(dev)
        noisy = noise_sched.add_noise(x, noise, t)
        class_labels = None
        if n_classes:
            labels = labels.clone()
            drop = torch.rand(labels.shape, generator=gen) < config.label_dropout
            labels[(labels < 0) | drop] = n_classes  # the "no class" token
            class_labels = labels.to(dev)
        unet.train()
        with policy.autocast():
            pred = unet(noisy, t, class_labels=class_labels).sample
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach())}

    def report(done: int, total: int, metrics: Mapping[str, float]) -> None:
        if progress is not None:
            progress(done, total, next(iter(metrics.values())))  # the step's one loss

    params = {**config.to_json(), "device": policy.device, **data.summary()}
    started = time.monotonic()
    with trainer.tracking(
        tracker, f"train-{config.family}-diffusion", tags={"task": "train-generator"}, params=params
    ) as run:
        trainer.fit(step, progress=report)
        if vae is not None and state.values["latent_scale"] is None:
            raise DeepauditError(f"{out}: stopped before the latent UNet started; give more time")
        seconds = time.monotonic() - started
        final = trainer.export(
            lambda: _export(out, config, data, unet, vae, state, policy.device, seconds)
        )
        if run is not None:
            run.log_artifact(final / META_NAME)
    return final


def _export(
    out: Path, config, data, unet, vae, state: TrainState, device: str, seconds: float
) -> Path:
    from diffusers import DDPMPipeline, DDPMScheduler, LDMPipeline

    out.mkdir(parents=True, exist_ok=True)
    sched = DDPMScheduler(num_train_timesteps=config.train_timesteps)
    unet = unet.to("cpu").eval()
    if vae is None:
        DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(out)
    else:
        LDMPipeline(vqvae=vae.to("cpu").eval(), unet=unet, scheduler=sched).save_pretrained(out)
    meta = {
        "format": "deepaudit-diffusion/1",
        "name": config.name or out.name,
        "family": config.family,
        "image_size": config.image_size,
        "classes": data.classes if config.class_attribute else [],
        "class_attribute": config.class_attribute,
        "latent_scale": state.values["latent_scale"],
        "steps_done": state.step,
        "config": config.to_json(),
        "training_data": data.summary(),
        "device": device,
        "seconds": round(seconds, 1),
        "parameters": sum(p.numel() for p in unet.parameters()),
    }
    (out / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def classes_of(model_dir: str | os.PathLike[str]) -> Sequence[str]:
    return json.loads((Path(model_dir) / META_NAME).read_text()).get("classes", [])


def write_real_crops(
    out_dir: str | os.PathLike[str],
    n: int,
    *,
    size: int = 32,
    seed: int = 0,
    data: TrainingImages | None = None,
    source: str = "builtin-photos",
) -> Path:
    """A real set drawn like the generators' training crops: ``n`` random ``size``² crops
    of an image pyramid of the real photos, as PNG + manifest (attribute ``group`` a/b
    alternating, for audits to have groups). The synthetic set should match it in size and
    format, or a detector learns the difference in format instead of content."""
    from deepaudit.manifest import ManifestItem, ManifestWriter
    from deepaudit.media import file_sha256, write_image

    root = Path(out_dir)
    x, _ = _CropSampler(data or load_training_images(None), size, seed).batch(n)
    crops = ((x.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    with ManifestWriter(root) as w:
        for i, im in enumerate(crops):
            item_id = f"real/{i:05d}"
            if item_id in w:
                continue
            p = write_image(root / "real" / f"{i:05d}.png", im)
            w.write(
                ManifestItem(
                    id=item_id,
                    path=p.relative_to(root).as_posix(),
                    sha256=file_sha256(p),
                    kind="image",
                    label="real",
                    source=source,
                    width=size,
                    height=size,
                    attributes={"group": "ab"[i % 2]},
                )
            )
    return root
