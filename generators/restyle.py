"""``video-restyle``: a real video in, the same motion under a new look out (Gen-1 style).

Esser et al. (2023) keep a driving video's structure and change its appearance from a text
prompt. Here the structure comes from the source frames themselves (SDEdit on video): they
are encoded, noised to ``strength`` of the way and denoised again, so a low ``strength``
keeps more of the source's structure and a high one keeps only its coarse layout and motion.

Two kinds of model, chosen by what the ``model`` folder holds:

- a local diffusers video pipeline: text-to-video SD (run as ``VideoToVideoSDPipeline``)
  or AnimateDiff (as ``AnimateDiffVideoToVideoPipeline``), or those video-to-video pipelines
  themselves, restyling to the request's prompt;
- the video UNet trained here (``deepaudit generators train --family video``): unconditional,
  so it re-renders the source in its own learnt style; it needs no pretrained weights.

Frames are consecutive from the start of the source (up to ``max_frames``), processed at the
source size scaled to ``max_side`` and rounded to what the model divides by, and written
back at the source's size and frame rate. Each request carries one source video.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.errors import DependencyError
from deepaudit.generators._registry import register_generator
from deepaudit.generators.base import GeneratedItem, GenerationRequest
from deepaudit.generators.samplers import SAMPLERS, make_scheduler, step_accepts_generator
from deepaudit.generators.training import META_NAME
from deepaudit.manifest import GeneratorInfo

__all__ = ["VideoRestyleGenerator"]

# what each video pipeline restyles as: text-to-video pipelines become their video-to-video
# siblings on the same weights
_V2V = {
    "TextToVideoSDPipeline": "VideoToVideoSDPipeline",
    "VideoToVideoSDPipeline": "VideoToVideoSDPipeline",
    "AnimateDiffPipeline": "AnimateDiffVideoToVideoPipeline",
    "AnimateDiffVideoToVideoPipeline": "AnimateDiffVideoToVideoPipeline",
}


def _resize_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack(
        [
            np.asarray(Image.fromarray(f).resize((width, height), Image.Resampling.BICUBIC))
            for f in frames
        ]
    )


def processing_size(height: int, width: int, *, max_side: int, multiple: int) -> tuple[int, int]:
    """(h, w) scaled so the long side is at most ``max_side``, rounded to ``multiple``."""
    scale = min(1.0, max_side / max(height, width))
    h = max(multiple, round(height * scale / multiple) * multiple)
    w = max(multiple, round(width * scale / multiple) * multiple)
    return h, w


class VideoRestyleGenerator:
    """Video-to-video restyling with a local pipeline or the video model trained here."""

    kind = "video"
    task = "video2video"  # the suite gives it source videos (init_from)
    batch_size = 1  # one source video per call: sources differ in size and length

    def __init__(
        self,
        *,
        model: str | os.PathLike[str] | None = None,
        strength: float = 0.6,
        steps: int | None = None,
        guidance: float = 7.5,
        sampler: str | None = None,
        max_frames: int = 16,
        max_side: int = 512,
        device: str = "auto",
        precision: str = "auto",
    ) -> None:
        from deepaudit.devices import device_policy

        if model is None:
            raise DependencyError(
                "generator 'video-restyle' needs model=DIR: a diffusers video pipeline folder "
                "or a video model trained here"
            )
        if not 0.0 < float(strength) <= 1.0:
            raise ValueError(f"video-restyle: strength must be in (0, 1], got {strength}")
        if sampler is not None and sampler not in SAMPLERS:
            valid = ", ".join(SAMPLERS)
            raise ValueError(f"video-restyle: unknown sampler {sampler!r}; valid: {valid}")
        self.name = "video-restyle"
        self.path = Path(model)
        self.strength, self.guidance = float(strength), float(guidance)
        self.sampler = sampler
        self.max_frames, self.max_side = int(max_frames), int(max_side)
        if (self.path / META_NAME).is_file():
            self.policy = device_policy(device, precision="fp32")
            self._load_own()
            self.steps = int(steps or 50)
        elif (self.path / "model_index.json").is_file():
            self.policy = device_policy(device, precision=precision)
            self._load_pipeline()
            self.steps = int(steps or 30)
        else:
            raise DependencyError(
                f"{self.path}: neither a diffusers pipeline folder (model_index.json) nor a "
                f"video model trained here ({META_NAME})"
            )

    def _load_own(self) -> None:
        from diffusers import DDPMScheduler, UNet3DConditionModel

        meta = json.loads((self.path / META_NAME).read_text())
        if meta.get("family") != "video":
            raise DependencyError(f"{self.path}: a {meta.get('family')} model, not a video model")
        try:
            self.unet = UNet3DConditionModel.from_pretrained(self.path / "unet")
            self.sched_cfg = DDPMScheduler.load_config(self.path / "scheduler")
        except (OSError, ValueError) as exc:
            raise DependencyError(f"{self.path}: broken model folder: {exc}") from exc
        self.unet.to(self.policy.torch_device()).eval()
        self.meta = meta
        self.pipe = None
        self.model_name = str(meta.get("name") or self.path.name)
        self.multiple = 2 ** (len(self.unet.config.block_out_channels) - 1)

    def _load_pipeline(self) -> None:
        import diffusers
        import torch

        from deepaudit.generators.pretrained import quiet_hub_progress

        dtype = torch.float32
        if self.policy.is_cuda:
            dtype = torch.bfloat16 if self.policy.amp_dtype == "bfloat16" else torch.float16
        quiet_hub_progress()
        try:
            pipe = diffusers.DiffusionPipeline.from_pretrained(
                self.path, local_files_only=True, dtype=dtype
            )
        except (OSError, ValueError, TypeError, KeyError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DependencyError(f"{self.path}: cannot load the pipeline: {first}") from exc
        target = _V2V.get(type(pipe).__name__)
        if target is None:
            raise DependencyError(
                f"{self.path}: {type(pipe).__name__} has no video-to-video form; use a "
                f"text-to-video SD or AnimateDiff pipeline ({', '.join(sorted(_V2V))})"
            )
        if type(pipe).__name__ != target:
            cls = getattr(diffusers, target)
            pipe = cls.from_pipe(pipe) if hasattr(cls, "from_pipe") else cls(**pipe.components)
        if self.sampler:
            pipe.scheduler = make_scheduler(self.sampler, pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(self.policy.device)
        self.model_name = self.path.name
        down = 2 ** (len(pipe.unet.config.block_out_channels) - 1)
        # the latents must pass the UNet's downsamplings; the pipelines also insist on 8
        self.multiple = math.lcm(8, int(pipe.vae_scale_factor) * down)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model_name,
            "model_path": str(self.path),
            "pipeline": type(self.pipe).__name__ if self.pipe is not None else "video-unet",
            "sampler": self._sampler_name(),
            "steps": self.steps,
            "strength": self.strength,
            "max_frames": self.max_frames,
            "max_side": self.max_side,
        }

    def _sampler_name(self) -> str:
        if self.pipe is not None:
            return self.sampler or type(self.pipe.scheduler).__name__
        return self.sampler or "ddim"

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GeneratedItem]:
        return [self._one(r) for r in requests]

    def _one(self, r: GenerationRequest) -> GeneratedItem:
        if r.init_video is None or r.init_video.ndim != 4 or len(r.init_video) < 1:
            raise ValueError(f"{self.name}: every request needs a source video (init_video)")
        started = time.perf_counter()
        source = r.init_video[: self.max_frames]
        frames, height, width = source.shape[:3]
        h, w = processing_size(height, width, max_side=self.max_side, multiple=self.multiple)
        clip = _resize_frames(source, w, h)
        out = self._pipeline(clip, r) if self.pipe is not None else self._sdedit(clip, r)
        out = _resize_frames(out, width, height)
        params: dict[str, Any] = {
            "task": "video2video",
            "pipeline": type(self.pipe).__name__ if self.pipe is not None else "video-unet",
            "strength": self.strength,
            "frames": int(frames),
            "processed_size": [int(w), int(h)],
        }
        info = GeneratorInfo(
            model=self.model_name,
            sampler=self._sampler_name(),
            steps=self.steps,
            guidance=self.guidance if self.pipe is not None else None,
            seed=int(r.seed),
            prompt=r.prompt if self.pipe is not None else None,
            negative_prompt=r.negative_prompt if self.pipe is not None else None,
            params=params,
        )
        return GeneratedItem(
            np.ascontiguousarray(out),
            info,
            fps=float(r.init_fps or 8.0),
            seconds=time.perf_counter() - started,
        )

    def _pipeline(self, clip: np.ndarray, r: GenerationRequest) -> np.ndarray:
        import torch
        from PIL import Image

        pil = [Image.fromarray(f) for f in clip]
        kwargs: dict[str, Any] = {
            "prompt": r.prompt or "",
            "strength": self.strength,
            "num_inference_steps": self.steps,
            "guidance_scale": self.guidance,
            "generator": torch.Generator().manual_seed(int(r.seed)),
            "output_type": "np",
        }
        if r.negative_prompt:
            kwargs["negative_prompt"] = r.negative_prompt
        if type(self.pipe).__name__ == "AnimateDiffVideoToVideoPipeline":
            kwargs.update(video=[pil], height=clip.shape[1], width=clip.shape[2])
        else:
            kwargs["video"] = pil
        with torch.inference_mode():
            result = self.pipe(**kwargs)
        px = np.asarray(result.frames[0], dtype=np.float32)
        return np.clip(np.rint(px * 255.0), 0, 255).astype(np.uint8)

    def _sdedit(self, clip: np.ndarray, r: GenerationRequest) -> np.ndarray:
        """SDEdit on the video UNet: noise the source to ``strength`` and denoise it."""
        import torch

        from deepaudit.generators.video import NULL_CONTEXT_DIM

        dev = self.policy.torch_device()
        x0 = torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float().div(127.5).sub(1.0)
        gen = torch.Generator().manual_seed(int(r.seed))
        sched = make_scheduler(self.sampler or "ddim", self.sched_cfg)
        sched.set_timesteps(self.steps, device=dev)
        keep = min(self.steps, max(1, int(self.steps * self.strength)))
        start = self.steps - keep
        timesteps = sched.timesteps[start * sched.order :]
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(start * sched.order)
        noise = torch.randn(x0.shape, generator=gen)
        x = sched.add_noise(x0, noise, timesteps[:1].cpu()).to(dev)
        null = torch.zeros(1, 1, NULL_CONTEXT_DIM, device=dev)
        kwargs = {"generator": gen} if step_accepts_generator(sched) else {}
        with torch.inference_mode():
            for t in timesteps:
                eps = self.unet(sched.scale_model_input(x, t), t, encoder_hidden_states=null).sample
                x = sched.step(eps, t, x, **kwargs).prev_sample
        frames = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return frames[0].permute(1, 2, 3, 0).cpu().numpy()


@register_generator(
    "video-restyle",
    family="restyle",
    kind="video",
    description="video-to-video restyling (Gen-1 style): a real video's motion under a new look",
)
def _video_restyle(**cfg: Any) -> VideoRestyleGenerator:
    return VideoRestyleGenerator(**cfg)
