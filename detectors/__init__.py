"""Detector models, trained and scored on GPU when there is one, CPU otherwise.

Registry as in timm: ``list_detectors()``, ``create_detector(name, **cfg)``,
``load_detector(dir)``. A detector has ``fit``, ``save_pretrained`` and the inference
contract of :mod:`deepaudit.detectors.inference` (``input_spec``, ``score_inputs``,
``reduce``; ``predict_proba`` for in-memory images); :func:`train.train_detector` runs the
whole training job with mlflow tracking, and :mod:`evaluate` the evaluation grids.
"""

from deepaudit.detectors._registry import (
    create_detector,
    detector_entry,
    list_detectors,
    load_detector,
    register_detector,
)
from deepaudit.detectors.base import Detector

# Entry modules register themselves on import; the registry imports nothing back.
from deepaudit.detectors import features, localize, networks, video, zoo  # noqa: F401  isort: skip

__all__ = [
    "Detector",
    "create_detector",
    "detector_entry",
    "list_detectors",
    "load_detector",
    "register_detector",
]
