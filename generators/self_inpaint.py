"""``self-inpaint``: B-Free's twins, a real photo regenerated from itself by an inpainting model.

Guillaro et al. (CVPR 2025, "B-Free") make the synthetic class from the real one with Stable
Diffusion's inpainting pipeline, so content is shared between the classes:

- content augmentation: a region of the photo (a rectangle, or an object's shape) is
  regenerated; the pipeline's output passes whole through the autoencoder, so every pixel
  carries the generator's trace, and ``restore_background=True`` pastes the real pixels
  back outside the region (their second variant, the localisation case);
- self-conditioning (``whole=True``): the pipeline gets an empty mask, so the model keeps the
  whole photo as its condition and regenerates every pixel of it. The saved mask is then
  all 255: the ground truth says every pixel is synthetic.

The pipeline is loaded as ``sd-inpaint`` loads it (a local diffusers folder, nothing is
downloaded); the mask is saved beside each twin and named in the manifest.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np

from deepaudit.generators._registry import register_generator
from deepaudit.generators.base import BatchedGenerator, GeneratedItem, GenerationRequest
from deepaudit.generators.pretrained import PretrainedPipelineGenerator, default_inpaint_mask

__all__ = ["SelfInpaintGenerator", "object_mask"]

MaskShape = Literal["rectangle", "object"]
logger = logging.getLogger(__name__)


def object_mask(image: np.ndarray, seed: int, *, min_area: float = 0.05) -> np.ndarray:
    """A mask that follows one region of the photo's own segmentation (an object's outline,
    as B-Free's object masks do), chosen by ``seed`` among regions covering 5-40% of it.

    Falls back to the seeded rectangle when no region has that size (a flat image).
    """
    from scipy import ndimage
    from skimage import graph
    from skimage.segmentation import felzenszwalb

    h, w = image.shape[:2]
    rgb = image[..., :3]
    scale = max(50.0, 0.5 * (h * w) ** 0.5)  # coarser segments for larger photos
    labels = felzenszwalb(rgb, scale=scale, sigma=0.8, min_size=max(16, h * w // 200))
    # felzenszwalb splits one object along its soft edges: merge neighbours of like colour
    labels = graph.cut_threshold(labels, graph.rag_mean_color(rgb, labels), 30)
    areas = np.bincount(labels.ravel()) / float(h * w)
    fitting = np.flatnonzero((areas >= min_area) & (areas <= 0.4))
    if fitting.size == 0:
        return default_inpaint_mask(h, w, seed)
    chosen = int(np.random.default_rng(seed).choice(fitting))
    region = ndimage.binary_fill_holes(labels == chosen)
    region = ndimage.binary_dilation(region, iterations=max(1, min(h, w) // 64))
    return np.where(region, 255, 0).astype(np.uint8)


class SelfInpaintGenerator(BatchedGenerator):
    """Each request's ``init_image`` regenerated, in a region or whole, at its own size."""

    kind = "image"
    task = "self-inpaint"

    def __init__(
        self,
        *,
        model: str | os.PathLike[str] | None = None,
        mask: MaskShape = "rectangle",
        whole: bool = False,
        restore_background: bool = False,
        strength: float = 1.0,
        steps: int = 30,
        guidance: float = 7.5,
        sampler: str | None = None,
        batch_size: int = 1,
        device: str = "auto",
        precision: str = "auto",
    ) -> None:
        if mask not in ("rectangle", "object"):
            raise ValueError(f"mask must be 'rectangle' or 'object', got {mask!r}")
        if whole and restore_background:
            raise ValueError("whole=true regenerates every pixel: nothing to restore")
        self.pipeline = PretrainedPipelineGenerator(
            name="self-inpaint",
            task="inpaint",
            model=model,
            sampler=sampler,
            steps=steps,
            guidance=guidance,
            strength=strength,
            batch_size=batch_size,
            device=device,
            precision=precision,
        )
        self.name = "self-inpaint"
        self.mask, self.whole = mask, bool(whole)
        self.restore_background = bool(restore_background)
        self.batch_size = max(1, int(batch_size))
        # the pipeline rounds sizes down to its autoencoder's multiple: pad up to it instead
        self.multiple = int(getattr(self.pipeline.pipe, "vae_scale_factor", 8))

    def describe(self) -> dict[str, Any]:
        return {
            **self.pipeline.describe(),
            "name": self.name,
            "task": self.task,
            "mask": "whole" if self.whole else self.mask,
            "restore_background": self.restore_background,
            "strength": self.pipeline.strength,
        }

    def _mask_for(self, image: np.ndarray, seed: int) -> np.ndarray:
        h, w = image.shape[:2]
        if self.whole:
            return np.full((h, w), 255, np.uint8)
        if self.mask == "object":
            return object_mask(image, seed)
        return default_inpaint_mask(h, w, seed)

    def _batch(self, requests: Sequence[GenerationRequest]) -> list[GeneratedItem]:
        started = time.perf_counter()
        out: list[GeneratedItem | None] = [None] * len(requests)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for k, r in enumerate(requests):
            if r.init_image is None:
                raise ValueError("self-inpaint: every request needs an init_image (a real photo)")
            by_shape.setdefault(r.init_image.shape[:2], []).append(k)
        for (h, w), idx in by_shape.items():  # the pipeline takes one size per call
            pad_h, pad_w = -h % self.multiple, -w % self.multiple
            reals = [np.asarray(requests[k].init_image)[..., :3] for k in idx]
            masks = [
                r.mask if r.mask is not None else self._mask_for(img, int(r.seed))
                for r, img in zip((requests[k] for k in idx), reals, strict=True)
            ]
            padded = []
            for k, img, m in zip(idx, reals, masks, strict=True):
                # B-Free's self-conditioning: an empty mask keeps the whole photo as the
                # condition, and the diffusion steps regenerate all of it.
                cond = np.zeros_like(m) if self.whole else m
                padded.append(
                    replace(
                        requests[k],
                        init_image=np.pad(img, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge"),
                        mask=np.pad(cond, ((0, pad_h), (0, pad_w)), mode="edge"),
                    )
                )
            made = self.pipeline.generate(padded)
            for k, img, m, item in zip(idx, reals, masks, made, strict=True):
                px = item.pixels[:h, :w]
                if px.shape[:2] != (h, w):  # a pipeline that rounds sizes its own way
                    from PIL import Image

                    logger.warning("self-inpaint: output %s resized to %dx%d", px.shape, w, h)
                    px = np.asarray(Image.fromarray(item.pixels).resize((w, h), Image.LANCZOS))
                if self.restore_background:
                    px = np.where(m[..., None] > 127, px, img)
                params = {
                    **item.info.params,
                    "task": "self-inpaint",
                    "mask": "whole" if self.whole else self.mask,
                    "restore_background": self.restore_background,
                    "mask_fraction": round(float((m > 127).mean()), 4),
                }
                out[k] = GeneratedItem(
                    np.ascontiguousarray(px),
                    replace(item.info, params=params),
                    mask=m,
                    seconds=(time.perf_counter() - started) / len(requests),
                )
        return out  # type: ignore[return-value]


@register_generator(
    "self-inpaint",
    family="pretrained",
    description="a real photo's twin regenerated from itself by a local inpainting pipeline",
    metadata={
        "paired": True,
        "paper": "Guillaro et al., A Bias-Free Training Paradigm for More General "
        "AI-generated Image Detection (B-Free), CVPR 2025",
    },
)
def _self_inpaint(**cfg: Any) -> SelfInpaintGenerator:
    return SelfInpaintGenerator(**cfg)
