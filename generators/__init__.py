"""The generator suite: diffusion images and videos as the synthetic class.

Generators write dataset folders through :mod:`deepaudit.manifest`; they do not import
``detectors`` or ``audit``. The registry follows timm: ``list_generators()``,
``create_generator(name, **cfg)``; a generator turns :class:`GenerationRequest` batches
into :class:`GeneratedItem` s, and :func:`run_suite` turns a TOML spec into a dataset.
"""

from generators._registry import (
    create_generator,
    generator_entry,
    list_generators,
    register_generator,
)
from generators.base import GeneratedItem, GenerationRequest, Generator

__all__ = [
    "GeneratedItem",
    "GenerationRequest",
    "Generator",
    "create_generator",
    "generator_entry",
    "list_generators",
    "register_generator",
]
