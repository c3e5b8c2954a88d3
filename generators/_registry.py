"""The generator registry: ``@register_generator`` on a factory, then create/list by name.

Built on the core :class:`~deepaudit.registry.Registry` that detectors use too; the entry
modules (diffusion, pretrained, video) register themselves and the package imports them.
:func:`load_generator` opens a model folder trained here, as ``load_detector`` does for
detector folders.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepaudit.errors import DeepauditError
from deepaudit.registry import Registry, RegistryEntry

__all__ = [
    "GeneratorEntry",
    "create_generator",
    "generator_entry",
    "list_generators",
    "load_generator",
    "register_generator",
]

GeneratorEntry = RegistryEntry
GENERATORS = Registry("generator")
# Every family trained here (pixel, latent, video) registers DDIM: deterministic and quick.
DEFAULT_SAMPLER = "ddim"


def register_generator(
    name: str,
    *,
    family: str,
    kind: str = "image",
    description: str = "",
    metadata: dict[str, Any] | None = None,
    **defaults: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``factory(**cfg) -> Generator`` under ``name`` (defaults merged into cfg).

    ``metadata``: the paper it follows, and ``paired=True`` for generators that make a twin
    of each real photo (the suite then writes the pair and matches the twin's format).
    """
    return GENERATORS.register(
        name, kind=kind, family=family, description=description, metadata=metadata, **defaults
    )


def list_generators(pattern: str = "*") -> list[str]:
    """Registered generator names matching a glob pattern, sorted."""
    return GENERATORS.names(pattern)


def generator_entry(name: str) -> GeneratorEntry:
    return GENERATORS.entry(name)


def create_generator(
    name: str, *, device: str | None = None, precision: str | None = None, **cfg: Any
) -> Any:
    """Build a registered generator; unknown names raise ValueError listing the valid ones."""
    return GENERATORS.create(name, device=device, precision=precision, **cfg)


def load_generator(
    path: str | os.PathLike[str],
    sampler: str | None = None,
    *,
    device: str | None = None,
    precision: str | None = None,
    **options: Any,
) -> Any:
    """The generator for a model folder trained here, sampled with ``sampler``.

    The folder's ``deepaudit.json`` names its family (pixel, latent, video), so callers need
    not know which ``<family>-<sampler>`` entry fits; ``sampler`` defaults to DDIM and
    ``options`` (steps, guidance, batch_size, ...) go to the generator.
    """
    from deepaudit.generators.training import META_NAME  # the folder's format lives there

    root = Path(path)
    meta_path = root / META_NAME
    if not meta_path.is_file():
        why = "no such folder" if not root.is_dir() else f"no {META_NAME}"
        raise DeepauditError(
            f"{root}: not a generator model folder ({why}); train one with "
            "`deepaudit generators train`"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DeepauditError(f"{meta_path}: unreadable model metadata ({exc})") from None
    family = meta.get("family") if isinstance(meta, dict) else None
    names = [n for n in list_generators(f"{family}-*") if generator_entry(n).family == family]
    if not isinstance(family, str) or not names:
        raise DeepauditError(
            f"{meta_path}: unknown model family {family!r}; a model trained here is "
            "pixel, latent or video"
        )
    sampler = sampler or DEFAULT_SAMPLER
    name = f"{family}-{sampler}"
    if name not in names:
        valid = ", ".join(n[len(family) + 1 :] for n in names)
        raise ValueError(f"{root}: a {family} model has no sampler {sampler!r}; valid: {valid}")
    return create_generator(name, device=device, precision=precision, model=root, **options)
