"""``deepaudit review SCAN_DIR``: a local web app where an analyst checks a scan's files."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated

import typer

from deepaudit.cli.console import errors_to_exit, stdout

__all__ = ["review"]


def review(
    scan_dir: Annotated[
        Path,
        typer.Argument(exists=True, file_okay=False, help="A scan's --out folder (results.jsonl)."),
    ],
    reviewer: Annotated[
        str | None,
        typer.Option(help="Your name in feedback.jsonl (default: $USER)."),
    ] = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: a free one).")] = 0,
    open_browser: Annotated[
        bool, typer.Option("--open/--no-open", help="Open the app in the default browser.")
    ] = True,
) -> None:
    """Review a scan in the browser: the files in the report's "look at these first" order,
    each with its picture (frames for a video), verdict, reasons, detector scores,
    provenance tree and heatmap. Mark each real (r), synthetic (s) or unsure (u) with a
    note (n); decisions are appended to SCAN_DIR/feedback.jsonl, and `deepaudit manifest
    import-feedback` turns them into a dataset. Serves 127.0.0.1 only, behind a random
    token in the URL; Ctrl-C stops it."""
    try:
        from deepaudit.audit.review_app import ReviewServer
    except ImportError as exc:
        raise typer.BadParameter(
            f"the review app needs FastAPI and uvicorn ({exc.name} is missing): "
            "pip install 'deepaudit[review]'"
        ) from None
    from deepaudit.audit.review import ReviewQueue

    name = reviewer or os.environ.get("USER") or getpass.getuser()
    with errors_to_exit():
        queue = ReviewQueue(scan_dir, reviewer=name)
        server = ReviewServer(queue, port=port)
    out = stdout()
    out.print(
        f"reviewing {len(queue)} files of {scan_dir} as {name}; decisions go to "
        f"{queue.scan_dir / 'feedback.jsonl'}",
        markup=False,
    )
    out.print(f"open {server.url}  (Ctrl-C to stop)", markup=False)
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    server.run()
