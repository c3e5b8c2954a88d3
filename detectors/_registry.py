"""The detector registry: ``@register_detector``, ``create_detector``, ``load_detector``."""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepaudit.errors import DeepauditError

__all__ = ["create_detector", "list_detectors", "load_detector", "register_detector"]

_REGISTRY: dict[str, type] = {}
CONFIG_NAME = "config.json"


def register_detector(name: str) -> Callable[[type], type]:
    """Register a Detector subclass under ``name`` (its ``name`` attribute is set to it)."""

    def wrap(cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"detector {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _ensure_loaded() -> None:
    from detectors import features, networks, video  # noqa: F401


def list_detectors(pattern: str = "*") -> list[str]:
    _ensure_loaded()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def detector_class(name: str) -> type:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ValueError(f"unknown detector {name!r}; valid: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def _runtime(cls: type, device: str | None, precision: str | None) -> dict[str, Any]:
    """``device``/``precision`` for the classes that take them (spectral runs anywhere)."""
    import inspect

    accepted = inspect.signature(cls.__init__).parameters
    given = {"device": device, "precision": precision}
    return {k: v for k, v in given.items() if v is not None and k in accepted}


def create_detector(
    name: str, *, device: str | None = None, precision: str | None = None, **cfg: Any
) -> Any:
    """A fresh (untrained) detector; unknown names and options raise clear errors.

    ``device`` and ``precision`` go to the detectors that run on one and are ignored by the
    others, so callers need not know which detector needs what.
    """
    cls = detector_class(name)
    try:
        return cls(**cfg, **_runtime(cls, device, precision))
    except TypeError as exc:
        raise ValueError(f"detector {name!r}: {exc}") from None


def load_detector(
    path: str | os.PathLike[str],
    *,
    device: str | None = None,
    precision: str | None = None,
    **overrides: Any,
) -> Any:
    """Load a trained detector folder (``config.json`` + weights); never unpickles.

    ``device``/``precision`` apply where the detector takes them (as in create_detector).
    """
    root = Path(path)
    cfg_path = root / CONFIG_NAME
    if not cfg_path.is_file():
        raise DeepauditError(f"{root}: not a detector folder (no {CONFIG_NAME})")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DeepauditError(f"{cfg_path}: unreadable detector config ({exc})") from exc
    name = config.get("detector")
    if not isinstance(name, str):
        raise DeepauditError(f"{cfg_path}: no 'detector' name in the config")
    try:
        cls = detector_class(name)
    except ValueError as exc:
        raise DeepauditError(f"{cfg_path}: {exc}") from None
    return cls.from_pretrained(root, config, **overrides, **_runtime(cls, device, precision))
