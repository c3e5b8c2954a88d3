"""Pretrained diffusers pipelines loaded from a local folder (nothing is ever downloaded).

Registered generators, each taking ``model=DIR`` (a diffusers pipeline folder a user has):

- ``sd-text2img``: ``AutoPipelineForText2Image`` (SD 1.x/2.x, SDXL, SD3, PixArt, ...)
- ``sd-img2img``: ``AutoPipelineForImage2Image`` — needs ``init_image`` per request
- ``sd-inpaint``: ``AutoPipelineForInpainting`` — the mask is kept with the item (the ground
  truth for localisation); without one a seeded rectangle is used
- ``instruct-pix2pix``: ``StableDiffusionInstructPix2PixPipeline`` (edit by instruction); the
  pixels that changed from the source (:func:`edit_difference_mask`) are kept as its mask
- ``sd-upscale``: ``StableDiffusionUpscalePipeline`` (x4 upscaler)
- ``text2video``: any diffusers video pipeline (TextToVideoSD, AnimateDiff, ...) → frames

``sampler=NAME`` swaps the pipeline's scheduler for one of :data:`generators.samplers.SAMPLERS`
built from its own config. On CUDA the pipeline runs in fp16 (or bf16), on CPU in fp32.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.errors import DependencyError
from deepaudit.generators._registry import register_generator
from deepaudit.generators.base import BatchedGenerator, GeneratedItem, GenerationRequest
from deepaudit.generators.samplers import make_scheduler
from deepaudit.manifest import GeneratorInfo

__all__ = ["PretrainedPipelineGenerator", "default_inpaint_mask", "edit_difference_mask"]

_TASKS = {
    "text2img": "AutoPipelineForText2Image",
    "img2img": "AutoPipelineForImage2Image",
    "inpaint": "AutoPipelineForInpainting",
    "instruct": "StableDiffusionInstructPix2PixPipeline",
    "upscale": "StableDiffusionUpscalePipeline",
    "text2video": "DiffusionPipeline",
}
_NEEDS_IMAGE = {"img2img", "inpaint", "instruct", "upscale"}


def quiet_hub_progress() -> None:
    """Library code does not draw progress bars: the CLI draws its own."""
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    dlog.disable_progress_bar()
    tlog.disable_progress_bar()


def default_inpaint_mask(height: int, width: int, seed: int) -> np.ndarray:
    """A seeded rectangle covering 20-50% of each side: 255 inside (repaint), 0 outside."""
    rng = np.random.default_rng(seed)
    mh = int(height * rng.uniform(0.2, 0.5))
    mw = int(width * rng.uniform(0.2, 0.5))
    y = int(rng.integers(0, height - mh + 1))
    x = int(rng.integers(0, width - mw + 1))
    mask = np.zeros((height, width), np.uint8)
    mask[y : y + mh, x : x + mw] = 255
    return mask


def edit_difference_mask(
    source: np.ndarray, edited: np.ndarray, *, threshold: int = 32, blur: float = 2.0
) -> np.ndarray:
    """Where an edit changed the source: 255 where the largest channel difference, smoothed
    by a Gaussian of radius ``blur`` pixels, exceeds ``threshold`` (of 255), else 0.

    An instruction edit has no mask of its own, and a latent pipeline's autoencoder moves
    every pixel a few levels, so "changed at all" would mark the whole image; the smoothing
    drops isolated pixels and the threshold sits above that round-trip noise. The source is
    resized to the edit's size first (pipelines round sizes to multiples of 8).
    """
    from PIL import Image, ImageFilter

    h, w = edited.shape[:2]
    if source.shape[:2] != (h, w):
        source = np.asarray(Image.fromarray(source).resize((w, h), Image.Resampling.BICUBIC))
    diff = np.abs(edited.astype(np.int16) - source.astype(np.int16)).max(axis=-1)
    smooth = Image.fromarray(diff.astype(np.uint8)).filter(ImageFilter.GaussianBlur(blur))
    return np.where(np.asarray(smooth) > threshold, 255, 0).astype(np.uint8)


class PretrainedPipelineGenerator(BatchedGenerator):
    """A diffusers pipeline from a local folder, driven by generation requests."""

    def __init__(
        self,
        *,
        name: str,
        task: str,
        model: str | os.PathLike[str] | None = None,
        sampler: str | None = None,
        steps: int = 30,
        guidance: float = 7.5,
        height: int | None = None,
        width: int | None = None,
        strength: float = 0.75,
        image_guidance: float = 1.5,
        num_frames: int = 16,
        fps: float = 8.0,
        batch_size: int = 4,
        mask_threshold: int = 32,
        device: str = "auto",
        precision: str = "auto",
    ) -> None:
        import diffusers
        import torch

        from deepaudit.devices import device_policy

        if model is None:
            raise DependencyError(f"generator {name!r} needs model=DIR (a local diffusers folder)")
        root = Path(model)
        if not (root / "model_index.json").is_file():
            raise DependencyError(
                f"{root}: not a diffusers pipeline folder (no model_index.json); "
                "weights are never downloaded, point model= at a local copy"
            )
        self.name, self.task = name, task
        self.path = root
        self.sampler = sampler
        self.steps, self.guidance = int(steps), float(guidance)
        self.height, self.width = height, width
        self.strength, self.image_guidance = float(strength), float(image_guidance)
        self.num_frames, self.fps = int(num_frames), float(fps)
        self.batch_size = int(batch_size)
        self.mask_threshold = int(mask_threshold)
        self.kind = "video" if task == "text2video" else "image"
        self.policy = device_policy(device, precision=precision)
        dtype = torch.float32
        if self.policy.is_cuda:
            dtype = torch.bfloat16 if self.policy.amp_dtype == "bfloat16" else torch.float16
        quiet_hub_progress()
        cls = getattr(diffusers, _TASKS[task])
        kwargs: dict[str, Any] = {"local_files_only": True, "dtype": dtype}
        if task != "text2video":
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        try:
            pipe = cls.from_pretrained(root, **kwargs)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DependencyError(f"{root}: cannot load {_TASKS[task]}: {first}") from exc
        if sampler:
            pipe.scheduler = make_scheduler(sampler, pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(self.policy.device)
        self.model_name = root.name

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "model": self.model_name,
            "model_path": str(self.path),
            "pipeline": type(self.pipe).__name__,
            "sampler": self.sampler or type(self.pipe.scheduler).__name__,
            "steps": self.steps,
            "guidance": self.guidance,
        }

    def _batch(self, requests: Sequence[GenerationRequest]) -> list[GeneratedItem]:
        import torch
        from PIL import Image

        started = time.perf_counter()
        for r in requests:
            if self.task in _NEEDS_IMAGE and r.init_image is None:
                raise ValueError(f"{self.name}: every request needs an init_image")
        kwargs: dict[str, Any] = {
            "prompt": [r.prompt or "" for r in requests],
            "num_inference_steps": self.steps,
            "guidance_scale": self.guidance,
            "generator": [torch.Generator().manual_seed(int(r.seed)) for r in requests],
            "output_type": "np",
        }
        if any(r.negative_prompt for r in requests):
            kwargs["negative_prompt"] = [r.negative_prompt or "" for r in requests]
        masks: list[np.ndarray | None] = [None] * len(requests)
        if self.task in ("text2img", "text2video"):
            if self.height:
                kwargs["height"] = self.height
            if self.width:
                kwargs["width"] = self.width
        else:
            images = [Image.fromarray(r.init_image) for r in requests]
            kwargs["image"] = images
            if self.task == "img2img":
                kwargs["strength"] = self.strength
            elif self.task == "inpaint":
                masks = [
                    r.mask
                    if r.mask is not None
                    else default_inpaint_mask(im.height, im.width, int(r.seed))
                    for r, im in zip(requests, images, strict=True)
                ]
                kwargs["mask_image"] = [Image.fromarray(m) for m in masks]
                kwargs["strength"] = self.strength
                kwargs["height"], kwargs["width"] = images[0].height, images[0].width
            elif self.task == "instruct":
                kwargs["image_guidance_scale"] = self.image_guidance
        if self.task == "text2video":
            kwargs["num_frames"] = self.num_frames
        with torch.inference_mode():
            result = self.pipe(**kwargs)
        arrays = result.frames if self.task == "text2video" else result.images
        seconds = (time.perf_counter() - started) / len(requests)
        items = []
        for k, r in enumerate(requests):
            px = np.asarray(arrays[k], dtype=np.float32)
            px = np.clip(np.rint(px * 255.0), 0, 255).astype(np.uint8)
            params: dict[str, Any] = {"task": self.task, "pipeline": type(self.pipe).__name__}
            if self.task in ("img2img", "inpaint"):
                params["strength"] = self.strength
            if self.task == "inpaint":
                params["mask"] = "inpaint"
            if self.task == "instruct":
                params["image_guidance"] = self.image_guidance
                masks[k] = edit_difference_mask(r.init_image, px, threshold=self.mask_threshold)
                params["mask"] = f"difference>{self.mask_threshold}"
            info = GeneratorInfo(
                model=self.model_name,
                sampler=self.sampler or type(self.pipe.scheduler).__name__,
                steps=self.steps,
                guidance=self.guidance,
                seed=int(r.seed),
                prompt=r.prompt,
                negative_prompt=r.negative_prompt,
                params=params,
            )
            items.append(
                GeneratedItem(
                    np.ascontiguousarray(px),
                    info,
                    fps=self.fps if self.task == "text2video" else None,
                    mask=masks[k],
                    seconds=seconds,
                )
            )
        return items


def _register(name: str, task: str, doc: str) -> None:
    def factory(**cfg: Any) -> PretrainedPipelineGenerator:
        return PretrainedPipelineGenerator(name=name, task=task, **cfg)

    register_generator(
        name,
        family="pretrained",
        kind="video" if task == "text2video" else "image",
        description=doc,
    )(factory)


_register("sd-text2img", "text2img", "text-to-image diffusers pipeline from a local folder")
_register("sd-img2img", "img2img", "image-to-image (needs real init images)")
_register("sd-inpaint", "inpaint", "inpainting; the mask is saved with each item")
_register("instruct-pix2pix", "instruct", "instruction editing (InstructPix2Pix)")
_register("sd-upscale", "upscale", "x4 diffusion upscaler")
_register(
    "text2video", "text2video", "text-to-video diffusers pipeline (TextToVideoSD, AnimateDiff)"
)
