"""deepaudit: deepfake detection and provenance auditing.

The core package holds the CLI and the plumbing every layer shares (media I/O, dataset
manifests, devices, tracking). It imports no layer and no heavy library at import time.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
