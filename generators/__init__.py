"""The generator suite: diffusion images and videos as the synthetic class.

Generators write dataset folders through :mod:`deepaudit.manifest`; they do not import
``detectors`` or ``audit``. The registry follows timm: ``list_generators()``,
``create_generator(name, **cfg)``, and ``load_generator(dir)`` for a model folder trained
here; a generator turns :class:`GenerationRequest` batches into :class:`GeneratedItem` s,
and :func:`run_suite` turns a TOML spec into a dataset.
:func:`train_generator` trains the diffusion models made here, any family.
"""

from deepaudit.generators._registry import (
    create_generator,
    generator_entry,
    list_generators,
    load_generator,
    register_generator,
)
from deepaudit.generators.base import GeneratedItem, GenerationRequest, Generator
from deepaudit.generators.families import GENERATOR_FAMILIES, GeneratorFamily, train_generator

# The entry modules register themselves on import (timm's direction: entries import the
# registry, the package imports the entries; the registry imports nothing back).
from deepaudit.generators import (  # noqa: F401  isort: skip
    autoencoders,
    diffusion,
    personalize,
    pretrained,
    restyle,
    self_inpaint,
    video,
)

__all__ = [
    "GENERATOR_FAMILIES",
    "GeneratedItem",
    "GenerationRequest",
    "Generator",
    "GeneratorFamily",
    "create_generator",
    "generator_entry",
    "list_generators",
    "load_generator",
    "register_generator",
    "train_generator",
]
