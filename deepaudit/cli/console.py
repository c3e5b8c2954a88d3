"""The terminal side every command shares: consoles, JSON output, progress bars, error
exits, exit codes and the options several commands take.

Only the CLI writes to the terminal; library code reports through the ``progress``
callbacks and the errors made here into one-line messages and exit codes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "EXIT_FINDINGS",
    "EXIT_USAGE",
    "AnchorsOpt",
    "JsonOpt",
    "LegacyAnchorsOpt",
    "NoDefaultTrustOpt",
    "PrecisionOpt",
    "StrictOpt",
    "errors_to_exit",
    "expand_paths",
    "print_json",
    "progress_bar",
    "stderr",
    "stdout",
]

EXIT_FINDINGS = 1
EXIT_USAGE = 2

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document for machines.")]
StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Exit 1 when any file is unreadable or any check fails.")
]
AnchorsOpt = Annotated[
    Path | None,
    typer.Option(
        "--trust-anchors",
        help="PEM file or folder of root certificates to trust, in addition to the official "
        "C2PA Trust List (see `deepaudit trust-list show`). A valid signature whose signer "
        "chains to neither is reported as 'untrusted'.",
    ),
]
LegacyAnchorsOpt = Annotated[
    Path | None,
    typer.Option(
        "--legacy-trust-anchors",
        help="PEM file or folder of a superseded trust list you still accept (e.g. the "
        "interim list frozen on 2026-01-01): its signers are trusted and reported as "
        "'trusted (legacy list)'.",
    ),
]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        help="Network detectors: auto (AMP on CUDA; bf16 on CPUs with bf16 units, ~2x faster, "
        "scores within ~0.01; fp32 on other CPUs), fp32, or bf16 (refused on CPUs without "
        "bf16 units, where it is ~5x slower). Scan, calibrate and evaluate resolve it alike."
    ),
]
NoDefaultTrustOpt = Annotated[
    bool,
    typer.Option(
        "--no-default-trust",
        help="Do not trust the official C2PA Trust List: only --trust-anchors count.",
    ),
]


def stdout() -> Console:
    """Results: plain text that pipes and redirects keep intact (no highlighting, no wrap)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def stderr() -> Console:
    """Notes, warnings and errors, so that stdout stays the result."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """One JSON document on stdout, written directly: rich would wrap and colour it."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


@contextmanager
def progress_bar(description: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr; yields the (done, total) callback library code takes."""
    if not enabled:
        yield lambda done, total: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files under ``paths`` by the walker the scan uses (:mod:`deepaudit.walk`: globs,
    folders sorted, hidden entries skipped, links followed once); what cannot be walked is
    reported on stderr, one line each."""
    from deepaudit.walk import walk_files

    errors: list[str] = []
    files = list(walk_files(paths, errors=errors))
    for line in errors:
        stderr().print(f"warning: {line}", markup=False)
    return files


@contextmanager
def errors_to_exit() -> Iterator[None]:
    """A DeepauditError ends the command with its one-line message and exit code 1."""
    from deepaudit.errors import DeepauditError

    try:
        yield
    except DeepauditError as exc:
        stderr().print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_FINDINGS) from None
    except ValueError as exc:  # bad option values found by the library (e.g. ratios)
        stderr().print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
