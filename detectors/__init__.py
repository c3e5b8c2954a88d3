"""Detector models of synthetic media: train, score, evaluate.

Detectors read dataset folders through :mod:`deepaudit.manifest`; they do not import
``generators`` or ``audit``.
"""
