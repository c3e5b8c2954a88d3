"""The ``deepaudit`` command line: one typer app, layers imported only inside commands.

Exit codes: 0 done; 1 the data had problems (unreadable files with ``--strict``, an invalid
manifest) or a command could not do its job on its input; 2 usage errors.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from deepaudit import __version__

# Users opt in to hub downloads; otherwise a missing local path retries the hub for ~25 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HELP = (
    "deepaudit: deepfake detection and provenance auditing.\n\n"
    "Inspect media by content, build and check dataset manifests, and track runs; "
    "generators, detectors and the provenance scan plug into the same commands."
)

app = typer.Typer(
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)
manifest_app = typer.Typer(
    help="Build, check, split and filter dataset manifests (folder + manifest.jsonl).",
    no_args_is_help=True,
)
app.add_typer(manifest_app, name="manifest")

EXIT_FINDINGS = 1
EXIT_USAGE = 2

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document for machines.")]
StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Exit 1 when any file is unreadable or any check fails.")
]


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
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs.")] = 0,
) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("mlflow", "alembic", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


# --------------------------------------------------------------------------- output helpers


def _stdout():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


@contextmanager
def _progress(description: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
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
        console=_stderr(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _expand_paths(paths: list[Path]) -> list[Path]:
    """Files as given, folders walked recursively (sorted, hidden entries skipped)."""
    from deepaudit.manifest_import import iter_files

    files: list[Path] = []
    for p in paths:
        files.extend(iter_files(p) if p.is_dir() else [p])
    return files


@contextmanager
def _errors_to_exit() -> Iterator[None]:
    """A DeepauditError ends the command with its one-line message and exit code 1."""
    from deepaudit.errors import DeepauditError

    try:
        yield
    except DeepauditError as exc:
        _stderr().print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_FINDINGS) from None
    except ValueError as exc:  # bad option values found by the library (e.g. ratios)
        _stderr().print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None


# --------------------------------------------------------------------------- inspect


@app.command()
def inspect(
    paths: Annotated[
        list[Path], typer.Argument(help="Files or folders (walked recursively).", exists=True)
    ],
    hashes: Annotated[bool, typer.Option("--hash", help="Add each file's SHA-256.")] = False,
    as_json: JsonOpt = False,
    strict: StrictOpt = False,
) -> None:
    """Identify media files by content: kind, format, size, frames, fps; name broken ones.

    Every file is opened by its bytes, not its name. Unreadable files are listed with a
    one-line reason and do not stop the run.
    """
    from deepaudit.media import probe_files

    files = _expand_paths(paths)
    with _progress("inspecting", enabled=len(files) > 20) as update:
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
        _print_json({"files": rows, "summary": summary})
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
    out = _stdout()
    out.print(table)
    out.print(
        f"{summary['files']} files: {summary['images']} images, {summary['videos']} videos, "
        f"{summary['errors']} unreadable, {summary['extension_mismatches']} with a "
        "misleading extension"
    )


@app.command()
def metadata(
    paths: Annotated[
        list[Path], typer.Argument(help="Files or folders (walked recursively).", exists=True)
    ],
    as_json: JsonOpt = False,
    strict: StrictOpt = False,
) -> None:
    """AI-generation signals in image metadata (not C2PA): A1111/ComfyUI/InvokeAI/NovelAI
    records, IPTC digital source type in XMP, EXIF Software and camera fields."""
    from audit.metadata import read_ai_metadata
    from deepaudit.errors import MediaError

    files = _expand_paths(paths)
    reports: list[dict[str, Any]] = []
    with _progress("reading metadata", enabled=len(files) > 20) as update:
        for done, f in enumerate(files, start=1):
            try:
                reports.append(read_ai_metadata(f).to_json())
            except MediaError as exc:
                reports.append(
                    {"path": str(f), "error": {"class": type(exc).__name__, "message": exc.reason}}
                )
            update(done, len(files))
    errors = sum("error" in r for r in reports)
    if as_json:
        _print_json(
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
        out = _stdout()
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


# --------------------------------------------------------------------------- manifest


def _report_import(report: Any, as_json: bool, strict: bool) -> None:
    data = {
        "manifest": str(report.manifest.path),
        "added": report.added,
        "skipped": report.skipped,
        "ignored": report.ignored,
        "problems": [str(p) for p in report.problems],
        "summary": report.manifest.summary().to_json(),
    }
    if as_json:
        _print_json(data)
    else:
        out = _stdout()
        out.print(
            f"{data['manifest']}: added {report.added}, already present {report.skipped}, "
            f"not media {report.ignored}, unreadable {len(report.problems)}; "
            f"{len(report.manifest)} items in all",
            markup=False,
        )
        for p in report.problems:
            _stderr().print(f"  unreadable: {p}", markup=False)
    if strict and report.problems:
        raise typer.Exit(EXIT_FINDINGS)


OutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Folder for manifest.jsonl (default: the source folder)."),
]


@manifest_app.command("import-folder")
def manifest_import_folder(
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Media folder.")],
    out: OutOpt = None,
    label: Annotated[str, typer.Option(help="Label of every file: real or synthetic.")] = "real",
    source: Annotated[
        str | None, typer.Option(help="Source name (default: the folder's name).")
    ] = None,
    as_json: JsonOpt = False,
    strict: StrictOpt = False,
) -> None:
    """Record every media file under FOLDER (any depth) with one label. Resumable."""
    from deepaudit.manifest_import import import_folder

    with _errors_to_exit(), _progress("importing") as update:
        report = import_folder(folder, out=out, label=label, source=source, progress=update)
    _report_import(report, as_json, strict)


@manifest_app.command("import-cnnspot")
def manifest_import_cnnspot(
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Dataset root.")],
    out: OutOpt = None,
    as_json: JsonOpt = False,
    strict: StrictOpt = False,
) -> None:
    """Import a CNNSpot-layout tree: 0_real/ is real, 1_fake/ synthetic, at any depth."""
    from deepaudit.manifest_import import import_cnnspot

    with _errors_to_exit(), _progress("importing") as update:
        report = import_cnnspot(folder, out=out, progress=update)
    _report_import(report, as_json, strict)


@manifest_app.command("import-csv")
def manifest_import_csv(
    csv_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The CSV.")],
    path_column: Annotated[str, typer.Option(help="Column holding file paths.")] = "path",
    label: Annotated[str | None, typer.Option(help="One label for all rows.")] = None,
    label_column: Annotated[
        str | None, typer.Option(help="Column with real/fake (or 0/1) per row.")
    ] = None,
    source: Annotated[str | None, typer.Option(help="Source name for all rows.")] = None,
    root: Annotated[
        Path | None, typer.Option(help="Folder the paths are relative to (default: CSV's).")
    ] = None,
    attribute: Annotated[
        list[str] | None,
        typer.Option("--attribute", "-a", help="Attribute column to keep (default: all others)."),
    ] = None,
    out: OutOpt = None,
    as_json: JsonOpt = False,
    strict: StrictOpt = False,
) -> None:
    """Import rows of a CSV (path + attribute columns such as gender, age, race)."""
    from deepaudit.manifest_import import import_csv

    if (label is None) == (label_column is None):
        raise typer.BadParameter("give exactly one of --label or --label-column")
    with _errors_to_exit(), _progress("importing") as update:
        report = import_csv(
            csv_file,
            out=out,
            root=root,
            path_column=path_column,
            label=label,  # type: ignore[arg-type]
            label_column=label_column,
            source=source,
            attribute_columns=attribute or None,
            progress=update,
        )
    _report_import(report, as_json, strict)


@manifest_app.command("builtin")
def manifest_builtin(
    out: Annotated[Path, typer.Argument(help="Dataset folder to write into.")],
    grayscale: Annotated[bool, typer.Option(help="Also the grey photographs.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write the real photographs bundled with scikit-image/scikit-learn as a dataset."""
    from deepaudit.photos import write_builtin_photos

    with _errors_to_exit():
        manifest = write_builtin_photos(out, include_grayscale=grayscale)
    _print_summary(manifest, as_json)


@manifest_app.command("validate")
def manifest_validate(
    manifest: Annotated[Path, typer.Argument(help="Manifest folder or manifest.jsonl.")],
    check_files: Annotated[bool, typer.Option(help="Check that every file exists.")] = True,
    check_hashes: Annotated[bool, typer.Option(help="Re-hash every file (slow).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check every line of a manifest; each problem names its line. Exit 1 on errors."""
    from deepaudit.manifest import validate_manifest

    with _errors_to_exit():
        problems = validate_manifest(manifest, check_files=check_files, check_hashes=check_hashes)
    errors = [p for p in problems if p.severity == "error"]
    if as_json:
        _print_json(
            {
                "manifest": str(manifest),
                "valid": not errors,
                "problems": [
                    {"line": p.line, "severity": p.severity, "message": p.message} for p in problems
                ],
            }
        )
    else:
        for p in problems:
            _stdout().print(f"{manifest}: {p}", markup=False)
        _stdout().print(
            f"{manifest}: {'invalid' if errors else 'valid'} "
            f"({len(errors)} errors, {len(problems) - len(errors)} warnings)",
            markup=False,
        )
    if errors:
        raise typer.Exit(EXIT_FINDINGS)


def _parse_ratios(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"ratios must be three numbers like 0.8,0.1,0.1: {text}") from None
    if len(parts) != 3:
        raise typer.BadParameter(f"ratios must be three numbers like 0.8,0.1,0.1: {text}")
    return parts  # type: ignore[return-value]


@manifest_app.command("split")
def manifest_split(
    manifest: Annotated[Path, typer.Argument(help="Manifest folder or manifest.jsonl.")],
    ratios: Annotated[str, typer.Option(help="train,val,test fractions.")] = "0.8,0.1,0.1",
    seed: Annotated[str, typer.Option(help="Salt of the hash; change it to reshuffle.")] = (
        "deepaudit"
    ),
    group_by: Annotated[
        str | None,
        typer.Option(help="Keep items sharing this attribute (person, video) in one split."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Reassign items that have a split.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Assign train/val/test by a hash of each id: stable when items are added later."""
    from deepaudit.manifest import read_manifest

    with _errors_to_exit():
        m = read_manifest(manifest).with_splits(
            ratios=_parse_ratios(ratios), seed=seed, group_by=group_by, overwrite=overwrite
        )
        m.write()
    _print_summary(m, as_json)


@manifest_app.command("stats")
def manifest_stats(
    manifest: Annotated[Path, typer.Argument(help="Manifest folder or manifest.jsonl.")],
    as_json: JsonOpt = False,
) -> None:
    """Counts by label, kind, split and source."""
    from deepaudit.manifest import read_manifest

    with _errors_to_exit():
        m = read_manifest(manifest)
    _print_summary(m, as_json)


def _parse_attrs(pairs: list[str] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise typer.BadParameter(f"--attr takes KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out.setdefault(key, []).append(value)
    return out


@manifest_app.command("filter")
def manifest_filter(
    manifest: Annotated[Path, typer.Argument(help="Manifest folder or manifest.jsonl.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the new manifest.")],
    label: Annotated[list[str] | None, typer.Option(help="real / synthetic.")] = None,
    kind: Annotated[list[str] | None, typer.Option(help="image / video.")] = None,
    split: Annotated[list[str] | None, typer.Option(help="train / val / test.")] = None,
    generator: Annotated[list[str] | None, typer.Option(help="Generator or source name.")] = None,
    sampler: Annotated[list[str] | None, typer.Option(help="Sampler name.")] = None,
    attr: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE; repeat a key for 'any of'.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the matching items to a new manifest (paths rebased; files are not copied)."""
    from deepaudit.manifest import read_manifest

    with _errors_to_exit():
        m = read_manifest(manifest).filter(
            label=label or None,
            kind=kind or None,
            split=split or None,
            generator=generator or None,
            sampler=sampler or None,
            attributes=_parse_attrs(attr),
        )
        new = m.rebased(out)
        new.write()
    _print_summary(new, as_json)


def _print_summary(m: Any, as_json: bool) -> None:
    s = m.summary().to_json()
    if as_json:
        _print_json({"manifest": str(m.path), **s})
        return
    out = _stdout()
    out.print(f"{m.path}: {s['items']} items", markup=False)
    for axis in ("by_label", "by_kind", "by_split", "by_source"):
        parts = ", ".join(f"{k} {v}" for k, v in s[axis].items())
        out.print(f"  {axis[3:]:<7} {parts}", markup=False)


# --------------------------------------------------------------------------- env, runs


@app.command()
def env(as_json: JsonOpt = False) -> None:
    """Versions, CPU/GPU, default device and tracking store (for bug reports)."""
    from deepaudit.devices import describe_environment
    from deepaudit.tracking import default_tracking_uri

    data = describe_environment()
    data["tracking_uri"] = default_tracking_uri()
    data["hf_hub_offline"] = os.environ.get("HF_HUB_OFFLINE")
    if as_json:
        _print_json(data)
        return
    out = _stdout()
    for key, value in data.items():
        if key == "versions":
            for dist, ver in value.items():
                out.print(f"  {dist:<24} {ver or 'not installed'}", markup=False)
        else:
            out.print(f"{key:<16} {value}", markup=False)


@app.command()
def runs(
    experiment: Annotated[str | None, typer.Option(help="Only this experiment.")] = None,
    limit: Annotated[int, typer.Option(help="Newest N runs.", min=1)] = 20,
    tracking_uri: Annotated[
        str | None, typer.Option(help="mlflow store (default: $MLFLOW_TRACKING_URI, ./mlflow.db).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List tracked runs with their status and latest metrics."""
    from deepaudit.tracking import Tracker, default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        records = []
    else:
        try:
            records = Tracker(uri).list_runs(experiment, max_results=limit)
        except Exception as exc:  # mlflow's own errors: bad URI, unreachable server
            _stderr().print(f"error: {uri}: {str(exc).splitlines()[0]}", markup=False)
            raise typer.Exit(EXIT_FINDINGS) from None
    if as_json:
        _print_json({"tracking_uri": uri, "runs": [r.to_json() for r in records]})
        return
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False, title=uri)
    for col in ("run", "experiment", "name", "status", "metrics"):
        table.add_column(col, overflow="fold")
    for r in records:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(r.metrics.items())[:6])
        table.add_row(r.run_id[:8], r.experiment, r.name or "", r.status, metrics)
    _stdout().print(table)
    if not records:
        _stdout().print("no runs yet", markup=False)


# --------------------------------------------------------------------------- demo


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for everything it makes.")] = (
        Path("demo-output")
    ),
    as_json: JsonOpt = False,
) -> None:
    """Run what deepaudit can do today, end to end, on built-in real photos.

    Builds a dataset (photos, JPEG copies, video clips), inspects an inbox with broken
    files, splits and validates the manifest, and records the run in mlflow.
    """
    from deepaudit.demo import run_demo

    console = _stderr()
    with _errors_to_exit():
        result = run_demo(out, on_step=lambda msg: console.print(f"• {msg}", markup=False))
    if as_json:
        _print_json(result)
        return
    out_console = _stdout()
    out_console.print(json.dumps(result["summary"], indent=2), markup=False)
    out_console.print(f"demo written to {out}", markup=False)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
