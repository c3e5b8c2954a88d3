"""The generator registry: ``@register_generator`` on a factory, then create/list by name."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["GeneratorEntry", "create_generator", "list_generators", "register_generator"]


@dataclass(frozen=True)
class GeneratorEntry:
    name: str
    factory: Callable[..., Any]
    family: str
    kind: str  # "image" | "video"
    description: str
    defaults: dict[str, Any]


_REGISTRY: dict[str, GeneratorEntry] = {}


def register_generator(
    name: str,
    *,
    family: str,
    kind: str = "image",
    description: str = "",
    **defaults: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``factory(**cfg) -> Generator`` under ``name`` (defaults merged into cfg)."""

    def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ValueError(f"generator {name!r} is registered twice")
        doc = description or (factory.__doc__ or "").strip().splitlines()[0]
        _REGISTRY[name] = GeneratorEntry(name, factory, family, kind, doc, dict(defaults))
        return factory

    return wrap


def _ensure_loaded() -> None:
    # Importing the family modules runs their @register_generator decorators.
    from generators import diffusion, pretrained, video  # noqa: F401


def list_generators(pattern: str = "*") -> list[str]:
    """Registered generator names matching a glob pattern, sorted."""
    _ensure_loaded()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def generator_entry(name: str) -> GeneratorEntry:
    _ensure_loaded()
    if name not in _REGISTRY:
        close = [n for n in _REGISTRY if n.split("-")[0] == name.split("-")[0]]
        hint = f" (did you mean {', '.join(close[:5])}?)" if close else ""
        raise ValueError(f"unknown generator {name!r}{hint}; valid: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_generator(name: str, **cfg: Any) -> Any:
    """Build a registered generator; unknown names raise ValueError listing the valid ones."""
    entry = generator_entry(name)
    return entry.factory(**{**entry.defaults, **cfg})
