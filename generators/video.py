"""A video diffusion model trained here: a spatio-temporal UNet on short real clips.

diffusers' ``UNet3DConditionModel`` (2D convolutions inflated with temporal convolutions
and temporal attention) denoises whole clips in pixel space. It is unconditional: the
cross-attention it insists on gets a constant null context. Training clips come from a
user's videos or, by default, from camera pans across the built-in photos. Registered as
``video-<sampler>`` for a few samplers; a model folder holds ``unet/``, ``scheduler/`` and
``deepaudit.json`` like the image families, and checkpoints/resume work the same way.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.errors import DeepauditError, DependencyError
from deepaudit.generators._registry import register_generator
from deepaudit.generators.base import BatchedGenerator, GeneratedItem, GenerationRequest
from deepaudit.generators.samplers import SAMPLERS, make_scheduler, step_accepts_generator
from deepaudit.generators.training import META_NAME
from deepaudit.manifest import GeneratorInfo
from deepaudit.trainer import Trainer, TrainState

__all__ = [
    "NULL_CONTEXT_DIM",
    "VideoDiffusionGenerator",
    "VideoTrainConfig",
    "load_training_clips",
    "train_video_diffusion",
]

logger = logging.getLogger(__name__)
NULL_CONTEXT_DIM = 8  # width of the constant null context fed to cross-attention


@dataclass(frozen=True)
class VideoTrainConfig:
    frames: int = 8
    image_size: int = 32
    channels: tuple[int, ...] = (16, 32)
    steps: int = 300
    batch_size: int = 4
    lr: float = 3e-4
    seed: int = 0
    train_timesteps: int = 1000
    checkpoint_every: int = 100
    fps: float = 8.0
    name: str | None = None

    def __post_init__(self) -> None:
        if self.image_size % 8 or self.frames < 2:
            raise ValueError("image_size must be a multiple of 8 and frames >= 2")
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d


def load_training_clips(
    source: str | os.PathLike[str] | None, *, frames: int, size: int, per_video: int = 8
) -> np.ndarray:
    """Clips (N, frames, size, size, 3) uint8: from videos in a folder/manifest, or pans."""
    from PIL import Image

    def fit(clip: np.ndarray) -> np.ndarray:
        out = np.empty((len(clip), size, size, 3), np.uint8)
        for i, f in enumerate(clip):
            h, w = f.shape[:2]
            s = min(h, w)
            y, x = (h - s) // 2, (w - s) // 2
            crop = Image.fromarray(f[y : y + s, x : x + s])
            out[i] = np.asarray(crop.resize((size, size), Image.Resampling.BICUBIC))
        return out

    clips: list[np.ndarray] = []
    if source is None:
        from deepaudit.photos import builtin_photos, pan_clip

        for p in builtin_photos():
            for n in (frames, frames * 2):  # two pan speeds
                clips.append(pan_clip(p.image, frames=n, size=size)[:frames])
                clips.append(pan_clip(p.image[:, ::-1], frames=n, size=size)[:frames])
        return np.stack(clips)
    from deepaudit.manifest import MANIFEST_NAME, read_manifest
    from deepaudit.manifest_import import iter_files
    from deepaudit.media import read_video, sniff_format

    root = Path(source)
    if (root / MANIFEST_NAME).is_file():
        m = read_manifest(root)
        files = [m.resolve(i) for i in m.items if i.kind == "video" and i.label == "real"]
    elif root.is_dir():
        files = [f for f in iter_files(root) if _is_video(f, sniff_format)]
    else:
        raise DeepauditError(f"{root}: not a folder of videos or a manifest folder")
    for f in files:
        try:
            video = read_video(f, max_frames=frames * per_video * 4)
        except DeepauditError as exc:
            logger.warning("skipping %s", exc)
            continue
        v = video.frames
        for start in range(0, len(v) - frames + 1, frames):
            clips.append(fit(v[start : start + frames]))
            if len(clips) and len(clips) % per_video == 0:
                break
    if not clips:
        raise DeepauditError(f"{root}: no video with at least {frames} frames to train on")
    return np.stack(clips)


def _is_video(path: Path, sniff) -> bool:
    try:
        return sniff(path).kind == "video"
    except DeepauditError:
        return False


def _build_unet3d(cfg: VideoTrainConfig) -> Any:
    from diffusers import UNet3DConditionModel

    depth = len(cfg.channels)
    # Cross-attention only at the lowest resolution: at full resolution it is ~5x slower.
    down = ("DownBlock3D",) * (depth - 1) + ("CrossAttnDownBlock3D",)
    up = ("CrossAttnUpBlock3D",) + ("UpBlock3D",) * (depth - 1)
    return UNet3DConditionModel(
        sample_size=cfg.image_size,
        in_channels=3,
        out_channels=3,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=cfg.channels,
        layers_per_block=1,
        norm_num_groups=math.gcd(8, *cfg.channels),
        cross_attention_dim=NULL_CONTEXT_DIM,
        attention_head_dim=2,  # for UNet3D this is the number of heads
    )


def train_video_diffusion(
    config: VideoTrainConfig,
    out_dir: str | os.PathLike[str],
    *,
    clips: np.ndarray | None = None,
    device: str = "auto",
    minutes: float | None = None,
    tracker: Any = None,
    progress: Callable[[int, int, float], None] | None = None,
    resume: bool = True,
) -> Path:
    """Train the spatio-temporal UNet on clips; checkpoint, resume and export like images."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler

    from deepaudit.devices import device_policy, seed_everything

    out = Path(out_dir)
    if clips is None:
        clips = load_training_clips(None, frames=config.frames, size=config.image_size)
    policy = device_policy(device, precision="fp32")
    dev = policy.torch_device()
    seed_everything(config.seed)
    unet = _build_unet3d(config).to(dev)
    sched = DDPMScheduler(num_train_timesteps=config.train_timesteps)
    opt = torch.optim.AdamW(unet.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    data = torch.from_numpy(clips).permute(0, 4, 1, 2, 3).contiguous()  # N, C, F, H, W
    null = torch.zeros(config.batch_size, 1, NULL_CONTEXT_DIM, device=dev)
    state = TrainState(
        modules={"unet": unet}, stateful={"opt": opt}, generators={"noise": gen, "clips": rng}
    )
    trainer = Trainer(
        out / "checkpoint",
        state,
        config={**config.to_json(), "data": {"clips": len(clips)}},
        total=config.steps,
        checkpoint_every=config.checkpoint_every,
        minutes=minutes,
        resume=resume,
        finished=out / META_NAME,
    )
    trainer.restore()

    def step(i: int) -> dict[str, float]:
        idx = rng.integers(0, len(data), config.batch_size)
        x = data[idx].float().div(127.5).sub(1.0)
        if rng.random() < 0.5:
            x = x.flip(-1)
        x = x.to(dev)
        noise = torch.randn(x.shape, generator=gen).to(dev)
        t = torch.randint(0, config.train_timesteps, (x.shape[0],), generator=gen).to(dev)
        pred = unet(sched.add_noise(x, noise, t), t, encoder_hidden_states=null).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach())}

    def report(done: int, total: int, metrics: Mapping[str, float]) -> None:
        if progress is not None:
            progress(done, total, metrics["loss"])

    started = time.monotonic()
    params = {**config.to_json(), "device": policy.device, "clips": len(clips)}
    with trainer.tracking(
        tracker, "train-video-diffusion", tags={"task": "train-generator"}, params=params
    ):
        trainer.fit(step, progress=report)
        seconds = time.monotonic() - started
        return trainer.export(
            lambda: _export(out, config, unet, state.step, len(clips), policy.device, seconds)
        )


def _export(
    out: Path,
    config: VideoTrainConfig,
    unet: Any,
    steps_done: int,
    clips: int,
    device: str,
    seconds: float,
) -> Path:
    from diffusers import DDPMScheduler

    out.mkdir(parents=True, exist_ok=True)
    unet.to("cpu").eval().save_pretrained(out / "unet")
    DDPMScheduler(num_train_timesteps=config.train_timesteps).save_pretrained(out / "scheduler")
    meta = {
        "format": "deepaudit-video-diffusion/1",
        "name": config.name or out.name,
        "family": "video",
        "image_size": config.image_size,
        "frames": config.frames,
        "fps": config.fps,
        "steps_done": steps_done,
        "config": config.to_json(),
        "training_clips": clips,
        "device": device,
        "seconds": round(seconds, 1),
    }
    (out / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return out


class VideoDiffusionGenerator(BatchedGenerator):
    """Sample clips from a video model trained here."""

    kind = "video"

    def __init__(
        self,
        *,
        name: str,
        sampler: str,
        model: str | os.PathLike[str] | None = None,
        steps: int | None = None,
        batch_size: int = 4,
        device: str = "auto",
    ) -> None:
        from diffusers import DDPMScheduler, UNet3DConditionModel

        from deepaudit.devices import device_policy

        if model is None:
            raise DependencyError(
                f"generator {name!r} needs model=DIR: a folder made by "
                "`deepaudit generators train --family video`"
            )
        root = Path(model)
        if not (root / META_NAME).is_file():
            raise DependencyError(f"{root}: not a deepaudit video model (no {META_NAME})")
        self.meta = json.loads((root / META_NAME).read_text())
        if self.meta.get("family") != "video":
            raise DependencyError(f"{root}: a {self.meta.get('family')} model, not a video model")
        self.name, self.sampler, self.path = name, sampler, root
        self.steps = int(steps or min(SAMPLERS[sampler][2], 50))
        self.batch_size = int(batch_size)
        self.policy = device_policy(device, precision="fp32")
        try:
            self.unet = UNet3DConditionModel.from_pretrained(root / "unet")
            self.sched_cfg = DDPMScheduler.load_config(root / "scheduler")
        except (OSError, ValueError) as exc:
            raise DependencyError(f"{root}: broken model folder: {exc}") from exc
        self.unet.to(self.policy.torch_device()).eval()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.meta.get("name"),
            "model_path": str(self.path),
            "sampler": self.sampler,
            "steps": self.steps,
            "frames": self.meta["frames"],
            "image_size": self.meta["image_size"],
        }

    def _batch(self, requests: Sequence[GenerationRequest]) -> list[GeneratedItem]:
        import torch

        started = time.perf_counter()
        dev = self.policy.torch_device()
        f, s = int(self.meta["frames"]), int(self.meta["image_size"])
        gens = [torch.Generator().manual_seed(int(r.seed)) for r in requests]
        x = torch.stack([torch.randn((3, f, s, s), generator=g) for g in gens]).to(dev)
        sched = make_scheduler(self.sampler, self.sched_cfg)
        sched.set_timesteps(self.steps, device=dev)
        x = x * sched.init_noise_sigma
        null = torch.zeros(len(requests), 1, NULL_CONTEXT_DIM, device=dev)
        kwargs = {"generator": gens} if step_accepts_generator(sched) else {}
        with torch.inference_mode():
            for t in sched.timesteps:
                eps = self.unet(sched.scale_model_input(x, t), t, encoder_hidden_states=null).sample
                x = sched.step(eps, t, x, **kwargs).prev_sample
        frames = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        frames = frames.permute(0, 2, 3, 4, 1).cpu().numpy()  # B, F, H, W, C
        seconds = (time.perf_counter() - started) / len(requests)
        return [
            GeneratedItem(
                np.ascontiguousarray(fr),
                GeneratorInfo(
                    model=str(self.meta.get("name")),
                    sampler=self.sampler,
                    steps=self.steps,
                    seed=int(r.seed),
                    params={"family": "video", "frames": f, "resolution": s},
                ),
                fps=float(self.meta.get("fps", 8.0)),
                seconds=seconds,
            )
            for r, fr in zip(requests, frames, strict=True)
        ]


for _sampler in ("ddim", "dpmpp", "euler", "ddpm"):

    def _factory(_s: str = _sampler, **cfg: Any) -> VideoDiffusionGenerator:
        return VideoDiffusionGenerator(name=f"video-{_s}", sampler=_s, **cfg)

    register_generator(
        f"video-{_sampler}",
        family="video",
        kind="video",
        description=f"spatio-temporal UNet video diffusion trained here, sampled with {_sampler}",
    )(_factory)
