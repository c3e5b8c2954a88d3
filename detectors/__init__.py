"""Detector models, trained and scored on GPU when there is one, CPU otherwise.

Registry as in timm: ``list_detectors()``, ``create_detector(name, **cfg)``,
``load_detector(dir)``. A detector has ``fit``, ``predict_proba`` (P(synthetic) per image)
and ``save_pretrained``; :func:`detectors.train.train_detector` runs the whole training
job with mlflow tracking, and :mod:`detectors.evaluate` the evaluation grids.
"""

from detectors._registry import create_detector, list_detectors, load_detector, register_detector
from detectors.base import Detector

__all__ = ["Detector", "create_detector", "list_detectors", "load_detector", "register_detector"]
