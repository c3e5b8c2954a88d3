"""The detector registry: ``@register_detector``, ``create_detector``, ``load_detector``.

Built on the core :class:`~deepaudit.registry.Registry` that generators use too; the entry
modules (features, networks, video) register their classes and the package imports them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepaudit.errors import DeepauditError
from deepaudit.registry import Registry, RegistryEntry, runtime_options

__all__ = [
    "create_detector",
    "detector_entry",
    "list_detectors",
    "load_detector",
    "register_detector",
]

DETECTORS = Registry("detector")
CONFIG_NAME = "config.json"


def register_detector(name: str, **metadata: Any) -> Callable[[type], type]:
    """Register a Detector subclass under ``name`` (its ``name`` attribute is set to it);
    ``metadata`` (paper, source, licence, ...) is shown by ``detectors list``."""

    def wrap(cls: type) -> type:
        cls.name = name
        DETECTORS.register(name, kind=getattr(cls, "kind", "image"), metadata=metadata)(cls)
        return cls

    return wrap


def list_detectors(pattern: str = "*") -> list[str]:
    return DETECTORS.names(pattern)


def detector_entry(name: str) -> RegistryEntry:
    return DETECTORS.entry(name)


def create_detector(
    name: str, *, device: str | None = None, precision: str | None = None, **cfg: Any
) -> Any:
    """A fresh (untrained) detector; unknown names and options raise clear errors.

    ``device`` and ``precision`` go to the detectors that run on one and are ignored by the
    others, so callers need not know which detector needs what.
    """
    return DETECTORS.create(name, device=device, precision=precision, **cfg)


def load_detector(
    path: str | os.PathLike[str],
    *,
    device: str | None = None,
    precision: str | None = None,
    engine: str | None = None,
    calibrated: bool = True,
    **overrides: Any,
) -> Any:
    """Load a trained detector folder (``config.json`` + weights); never unpickles.

    ``device``/``precision``/``engine`` apply where the detector takes them (as in
    create_detector; ``engine``: auto, torch or onnx, see :mod:`deepaudit.detectors.engine`).
    ``calibrated``: apply the folder's ``calibration.json`` when it has one (False: the
    detector's own scores, e.g. to fit a new calibration).
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
        cls = DETECTORS.entry(name).factory
    except ValueError as exc:
        raise DeepauditError(f"{cfg_path}: {exc}") from None
    det = cls.from_pretrained(
        root, config, **overrides, **runtime_options(cls, device, precision, engine)
    )
    if calibrated:
        from deepaudit.detectors.calibration import read_calibration

        det.calibration = read_calibration(root)
    return det
