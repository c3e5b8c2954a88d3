"""Published detectors: ``deepaudit detectors import KIND FILES --out DIR``.

Each module here is one paper's detector (a :class:`~deepaudit.detectors.zoo.base.ZooKind`):
its exact architecture and preprocessing, how the authors' released files map onto it, and
its licence. See docs/zoo.md for where each is published and what it was trained on.
"""

from deepaudit.detectors.zoo.base import (
    KINDS,
    ImportedDetector,
    Preprocessing,
    ZooKind,
    import_detector,
    read_checkpoint,
    zoo_kind,
)

# Kind modules register themselves on import.
from deepaudit.detectors.zoo import cnndetection  # noqa: F401  isort: skip
from deepaudit.detectors.zoo import npr  # noqa: F401  isort: skip
from deepaudit.detectors.zoo import univfd  # noqa: F401  isort: skip
from deepaudit.detectors.zoo import aide  # noqa: F401  isort: skip
from deepaudit.detectors.zoo import aeroblade  # noqa: F401  isort: skip

__all__ = [
    "KINDS",
    "ImportedDetector",
    "Preprocessing",
    "ZooKind",
    "import_detector",
    "read_checkpoint",
    "zoo_kind",
]
