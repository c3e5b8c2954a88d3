"""``python -m deepaudit`` is the ``deepaudit`` command."""

from deepaudit.cli import main

main()
