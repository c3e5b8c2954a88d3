"""What every generator takes and gives back: requests in, media + manifest metadata out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from deepaudit.manifest import GeneratorInfo

__all__ = ["GeneratedItem", "GenerationRequest", "Generator"]


@dataclass(frozen=True)
class GenerationRequest:
    """One item to make. ``seed`` alone fixes the result for a given model and settings."""

    seed: int
    prompt: str | None = None
    negative_prompt: str | None = None
    class_label: str | None = None  # for class-conditional models: a value of the attribute
    init_image: np.ndarray | None = None  # img2img / inpaint / edit / upscale input (RGB uint8)
    mask: np.ndarray | None = None  # inpainting: (H, W) uint8, 255 = repaint
    init_video: np.ndarray | None = None  # video-to-video input: (T, H, W, 3) uint8 RGB
    init_fps: float | None = None  # its frame rate, which the output keeps


@dataclass
class GeneratedItem:
    """Pixels (H, W, 3) or frames (T, H, W, 3), uint8 RGB, with how they were made."""

    pixels: np.ndarray
    info: GeneratorInfo
    attributes: Mapping[str, Any] = field(default_factory=dict)
    fps: float | None = None
    mask: np.ndarray | None = None  # the inpainting mask: ground truth for localisation
    seconds: float = 0.0

    @property
    def kind(self) -> str:
        return "video" if self.pixels.ndim == 4 else "image"


class Generator(Protocol):
    """A generator makes a batch of items; the suite handles files, manifest and resume."""

    name: str
    kind: str  # "image" | "video"

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GeneratedItem]: ...

    def describe(self) -> dict[str, Any]: ...


class BatchedGenerator:
    """Base for generators that sample ``batch_size`` requests at a time in ``_batch``."""

    batch_size: int = 16

    def _batch(self, requests: Sequence[GenerationRequest]) -> list[GeneratedItem]:
        raise NotImplementedError

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GeneratedItem]:
        out: list[GeneratedItem] = []
        for i in range(0, len(requests), self.batch_size):
            out.extend(self._batch(requests[i : i + self.batch_size]))
        return out
