"""The ``deepaudit`` command line: typer sub-apps, one module per command group.

:mod:`deepaudit.cli.app` builds the tree; the group modules hold the commands and no
library logic; :mod:`deepaudit.cli.demo` is the demo pipeline on top of the layers.
"""

from deepaudit.cli.app import app, main

__all__ = ["app", "main"]
