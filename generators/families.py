"""One entry point that trains any family of diffusion model made here.

The image families (``pixel``, ``latent``) and the video family have their own configs,
data loaders and training loops; callers (the CLI, the demo, scripts) name a family and its
sizes and get a model folder back, instead of each writing the same dispatch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

__all__ = ["GENERATOR_FAMILIES", "GeneratorFamily", "train_generator"]

logger = logging.getLogger(__name__)

GeneratorFamily = Literal["pixel", "latent", "video"]
GENERATOR_FAMILIES: tuple[str, ...] = get_args(GeneratorFamily)

# A clip batch holds `frames` images each: beyond 8 clips the video UNet's activations
# outgrow a laptop's memory long before the batch helps the loss.
VIDEO_MAX_BATCH = 8


def train_generator(
    family: GeneratorFamily,
    out: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | None = None,
    steps: int = 1000,
    size: int = 32,
    channels: Sequence[int] | None = None,
    batch_size: int = 32,
    seed: int = 0,
    class_attribute: str | None = None,
    frames: int = 8,
    ae_steps: int | None = None,
    name: str | None = None,
    device: str = "auto",
    minutes: float | None = None,
    tracker: Any = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> Path:
    """Train a ``family`` model into ``out`` (resuming its checkpoint) and return the folder.

    data: real images (pixel, latent) or videos (video) as a manifest folder or a plain
        folder; None trains on the built-in photos (camera pans across them for video).
    channels: UNet widths; None keeps the family's default.
    batch_size: video batches are capped at ``VIDEO_MAX_BATCH`` clips.
    class_attribute: pixel and latent only: train class-conditional on this attribute.
    frames: video only: frames per clip.
    ae_steps: latent only: autoencoder steps (default: half of ``steps``).
    """
    if family not in GENERATOR_FAMILIES:
        raise ValueError(
            f"unknown family {family!r}; use {', '.join(GENERATOR_FAMILIES[:-1])} "
            f"or {GENERATOR_FAMILIES[-1]}"
        )
    widths = {"channels": tuple(channels)} if channels else {}
    if family == "video":
        from deepaudit.generators.video import (
            VideoTrainConfig,
            load_training_clips,
            train_video_diffusion,
        )

        if class_attribute is not None:
            raise ValueError("class_attribute applies to the pixel and latent families, not video")
        if batch_size > VIDEO_MAX_BATCH:
            logger.info("video batch size %d capped at %d clips", batch_size, VIDEO_MAX_BATCH)
        video_cfg = VideoTrainConfig(
            frames=frames,
            image_size=size,
            steps=steps,
            batch_size=min(batch_size, VIDEO_MAX_BATCH),
            seed=seed,
            name=name,
            **widths,
        )
        return train_video_diffusion(
            video_cfg,
            out,
            clips=load_training_clips(data, frames=frames, size=size),
            device=device,
            minutes=minutes,
            tracker=tracker,
            progress=progress,
        )
    from deepaudit.generators.training import TrainConfig, load_training_images, train_diffusion

    cfg = TrainConfig(
        family=family,
        image_size=size,
        steps=steps,
        batch_size=batch_size,
        seed=seed,
        class_attribute=class_attribute,
        ae_steps=ae_steps,
        name=name,
        **widths,
    )
    return train_diffusion(
        cfg,
        out,
        data=load_training_images(data, class_attribute=class_attribute),
        device=device,
        minutes=minutes,
        tracker=tracker,
        progress=progress,
    )
