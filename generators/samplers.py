"""Samplers as named variants: the same trained model sampled with different schedulers.

Each name maps to a diffusers scheduler built from the model's own scheduler config, so
``pixel-ddim`` and ``pixel-dpmpp`` share weights and differ only in how they sample —
what cross-sampler detector tests need.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["SAMPLERS", "make_scheduler", "step_accepts_generator"]

# name → (diffusers class name, extra config, default steps)
SAMPLERS: dict[str, tuple[str, dict[str, Any], int]] = {
    "ddpm": ("DDPMScheduler", {}, 250),
    "ddim": ("DDIMScheduler", {}, 50),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}, 50),
    "dpmpp": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}, 25),
    "euler": ("EulerDiscreteScheduler", {}, 50),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}, 50),
    "heun": ("HeunDiscreteScheduler", {}, 25),
    "unipc": ("UniPCMultistepScheduler", {}, 25),
    "lms": ("LMSDiscreteScheduler", {}, 50),
    "deis": ("DEISMultistepScheduler", {}, 25),
}


def make_scheduler(sampler: str, base_config: Any) -> Any:
    """A scheduler for ``sampler`` configured like the model's training scheduler."""
    import diffusers

    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
    cls_name, extra, _ = SAMPLERS[sampler]
    cls = getattr(diffusers, cls_name)
    return cls.from_config(base_config, **extra)


def step_accepts_generator(scheduler: Any) -> bool:
    return "generator" in inspect.signature(scheduler.step).parameters
