"""``deepaudit demo``: the command around the demo pipeline in :mod:`deepaudit.cli.demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepaudit.cli.console import JsonOpt, errors_to_exit, print_json, stderr, stdout

__all__ = ["demo"]


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for everything it makes.")] = (
        Path("demo-output")
    ),
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="The whole pipeline: train generators (latent diffusion too) -> generate -> "
            "train -> evaluate (per generator, cross-generator, robustness) -> scan; ~5-15 min.",
        ),
    ] = False,
    quick: Annotated[
        bool, typer.Option("--quick", help="Tiny sizes of the whole pipeline (for tests).")
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    as_json: JsonOpt = False,
) -> None:
    """The main job end to end on built-in photos, nothing downloaded: make a signed synthetic
    set and two detectors in seconds, then scan an inbox of real, generated, signed, stripped,
    tampered, watermarked, video and broken files (about a minute on 2 cores). --full runs
    the whole pipeline with evaluation. Rerun to resume."""
    from deepaudit.cli.demo import run_demo

    console = stderr()
    with errors_to_exit():
        result = run_demo(
            out,
            quick=quick,
            full=full,
            device=device,
            on_step=lambda m: console.print(f"• {m}", markup=False),
        )
    if as_json:
        print_json(result)
        return
    o = stdout()
    o.print(f"demo finished in {result['seconds']} s", markup=False)
    for k, v in result["outputs"].items():
        o.print(f"  {k}: {v}", markup=False)
