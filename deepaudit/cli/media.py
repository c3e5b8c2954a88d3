"""``deepaudit inspect`` and ``deepaudit metadata``: what files are, by their bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from deepaudit.cli.console import (
    EXIT_FINDINGS,
    JsonOpt,
    StrictOpt,
    expand_paths,
    print_json,
    progress_bar,
    stdout,
)

__all__ = ["inspect", "metadata"]

PathsArg = Annotated[
    list[Path], typer.Argument(help="Files or folders (walked recursively).", exists=True)
]


def inspect(
    paths: PathsArg,
    hashes: Annotated[bool, typer.Option("--hash", help="Add each file's SHA-256.")] = False,
    as_json: JsonOpt = False,
    strict: StrictOpt = False,
) -> None:
    """Identify media files by content: kind, format, size, frames, fps; name broken ones.

    Every file is opened by its bytes, not its name. Unreadable files are listed with a
    one-line reason and do not stop the run.
    """
    from deepaudit.media import probe_files

    files = expand_paths(paths)
    with progress_bar("inspecting", enabled=len(files) > 20) as update:
        rows = [r.to_json() for r in probe_files(files, hashes=hashes, progress=update)]
    errors = [r for r in rows if "error" in r]
    summary = {
        "files": len(rows),
        "images": sum(r.get("kind") == "image" for r in rows),
        "videos": sum(r.get("kind") == "video" for r in rows),
        "errors": len(errors),
        "extension_mismatches": sum(r.get("extension_matches") is False for r in rows),
    }
    if as_json:
        print_json({"files": rows, "summary": summary})
    else:
        _print_inspect_table(rows, summary)
    if strict and errors:
        raise typer.Exit(EXIT_FINDINGS)


def _print_inspect_table(rows: list[dict[str, Any]], summary: dict[str, int]) -> None:
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for col in ("path", "kind", "format", "size", "frames", "fps", "note"):
        table.add_column(col, overflow="fold")
    for r in rows:
        if "error" in r:
            table.add_row(r["path"], "[red]error[/red]", "", "", "", "", r["error"]["message"])
            continue
        note = "" if r["extension_matches"] else "extension does not match content"
        table.add_row(
            r["path"],
            r["kind"],
            r["format"],
            f"{r['width']}×{r['height']}",
            str(r["frames"]),
            f"{r['fps']:g}" if r["fps"] else "",
            note,
        )
    out = stdout()
    out.print(table)
    out.print(
        f"{summary['files']} files: {summary['images']} images, {summary['videos']} videos, "
        f"{summary['errors']} unreadable, {summary['extension_mismatches']} with a "
        "misleading extension"
    )


def metadata(
    paths: PathsArg,
    as_json: JsonOpt = False,
    strict: StrictOpt = False,
) -> None:
    """AI-generation signals in metadata (not C2PA): A1111/ComfyUI/InvokeAI/NovelAI
    records, IPTC digital source type in XMP, EXIF Software and camera fields; in videos and
    audio, the container tags (MP4/MOV udta/meta keys and XMP, Matroska/WebM tags, WAV INFO,
    MP3 ID3)."""
    from deepaudit.audit.metadata import read_ai_metadata
    from deepaudit.errors import MediaError, error_record

    files = expand_paths(paths)
    reports: list[dict[str, Any]] = []
    with progress_bar("reading metadata", enabled=len(files) > 20) as update:
        for done, f in enumerate(files, start=1):
            try:
                reports.append(read_ai_metadata(f).to_json())
            except MediaError as exc:
                reports.append({"path": str(f), "error": error_record(exc, f)})
            update(done, len(files))
    errors = sum("error" in r for r in reports)
    if as_json:
        print_json(
            {
                "files": reports,
                "summary": {
                    "files": len(reports),
                    "declares_ai": sum(bool(r.get("declares_ai")) for r in reports),
                    "claims_capture": sum(bool(r.get("claims_capture")) for r in reports),
                    "errors": errors,
                },
            }
        )
    else:
        out = stdout()
        for r in reports:
            if "error" in r:
                out.print(f"{r['path']}: error: {r['error']['message']}", markup=False)
                continue
            if not r["signals"]:
                out.print(f"{r['path']}: no AI metadata", markup=False)
            for sig in r["signals"]:
                out.print(
                    f"{r['path']}: {sig['claim']} ({sig['strength']}) {sig['summary']}",
                    markup=False,
                )
    if strict and errors:
        raise typer.Exit(EXIT_FINDINGS)
