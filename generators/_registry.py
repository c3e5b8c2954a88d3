"""The generator registry: ``@register_generator`` on a factory, then create/list by name.

Built on the core :class:`~deepaudit.registry.Registry` that detectors use too; the entry
modules (diffusion, pretrained, video) register themselves and the package imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deepaudit.registry import Registry, RegistryEntry

__all__ = [
    "GeneratorEntry",
    "create_generator",
    "generator_entry",
    "list_generators",
    "register_generator",
]

GeneratorEntry = RegistryEntry
GENERATORS = Registry("generator")


def register_generator(
    name: str,
    *,
    family: str,
    kind: str = "image",
    description: str = "",
    **defaults: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``factory(**cfg) -> Generator`` under ``name`` (defaults merged into cfg)."""
    return GENERATORS.register(name, kind=kind, family=family, description=description, **defaults)


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
