"""The root of the ``deepaudit`` command: version, logging, and the tree of commands.

Each command group lives in its own module and imports the layers only inside its
commands, so ``deepaudit --help`` never imports torch. Exit codes: 0 done; 1 the data had
problems (unreadable files with ``--strict``, an invalid manifest) or a command could not
do its job on its input; 2 usage errors.
"""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from deepaudit import __version__
from deepaudit.cli import (
    audit,
    detectors,
    generators,
    manifest,
    media,
    provenance,
    review,
    runs,
    scan,
    trust,
)
from deepaudit.cli.anonymize import anonymize
from deepaudit.cli.demo_command import demo

__all__ = ["app", "main"]

# Users opt in to hub downloads; otherwise a missing local path retries the hub for ~25 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HELP = (
    "deepaudit: deepfake detection and provenance auditing.\n\n"
    "Inspect media by content and read what it says about itself (inspect, metadata, "
    "provenance); sign files (sign); build datasets (manifest, generators, generate); "
    "train and evaluate detectors (detectors); scan files for synthetic content (scan); "
    "check a scan's files by hand in the browser (review); "
    "audit detectors, generators and datasets (audit); track runs (env, runs). "
    "`deepaudit demo` shows all of it end to end. Add --help to any command."
)

app = typer.Typer(
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"deepaudit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show version."),
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose", "-v", count=True, help="More logs, third-party warnings included."
        ),
    ] = 0,
) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("mlflow", "alembic", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    # Warnings from libraries (Pillow's "Corrupt EXIF data", torch/diffusers UserWarnings)
    # speak of their internals with a source line: noise next to the command's own report,
    # which already names unreadable files. They go to the log, shown with -v.
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.WARNING if verbose else logging.ERROR)


# The command tree, in the order `deepaudit --help` lists it.
app.command("inspect")(media.inspect)
app.command("metadata")(media.metadata)
app.command("provenance")(provenance.provenance)
app.command("sign")(provenance.sign)
app.command("demo-cert")(provenance.demo_cert)
app.add_typer(trust.app, name="trust-list")
app.add_typer(manifest.app, name="manifest")
app.add_typer(generators.app, name="generators")
app.command("generate")(generators.generate)
app.add_typer(detectors.app, name="detectors")
app.command("scan")(scan.scan)
app.command("anonymize")(anonymize)
app.command("review")(review.review)
app.add_typer(audit.app, name="audit")
app.command("env")(runs.env)
app.command("runs")(runs.runs)
app.command("demo")(demo)


def main() -> None:
    """Console-script entry point."""
    app()
