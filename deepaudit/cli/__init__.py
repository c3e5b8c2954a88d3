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
generators_app = typer.Typer(
    help="The generator suite: list generators, train the diffusion models made here.",
    no_args_is_help=True,
)
app.add_typer(generators_app, name="generators")
detectors_app = typer.Typer(help="Detector models: list what can be trained.", no_args_is_help=True)
app.add_typer(detectors_app, name="detectors")
audit_app = typer.Typer(
    help="Responsible-AI audits: detector fairness, generative models, model/dataset cards, "
    "explanations.",
    no_args_is_help=True,
)
app.add_typer(audit_app, name="audit")

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
    from deepaudit.audit.metadata import read_ai_metadata
    from deepaudit.errors import MediaError

    files = _expand_paths(paths)
    reports: list[dict[str, Any]] = []
    with _progress("reading metadata", enabled=len(files) > 20) as update:
        for done, f in enumerate(files, start=1):
            try:
                reports.append(read_ai_metadata(f).to_json())
            except MediaError as exc:
                from deepaudit.errors import error_record

                reports.append({"path": str(f), "error": error_record(exc, f)})
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


# --------------------------------------------------------------------------- provenance

AnchorsOpt = Annotated[
    Path | None,
    typer.Option(
        "--trust-anchors",
        help="PEM file or folder of root certificates to trust. Without it every valid "
        "signature is reported as 'untrusted' (valid but the signer is unknown).",
    ),
]


@app.command()
def provenance(
    paths: Annotated[
        list[Path], typer.Argument(help="Files or folders (walked recursively).", exists=True)
    ],
    trust_anchors: AnchorsOpt = None,
    tree: Annotated[
        bool, typer.Option("--tree", help="Show the manifest and its ingredients as a tree.")
    ] = False,
    no_watermark: Annotated[
        bool, typer.Option("--no-watermark", help="Skip invisible-watermark decoding.")
    ] = False,
    as_json: JsonOpt = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Exit 1 when a manifest is invalid or malformed, or a file unreadable."
        ),
    ] = False,
) -> None:
    """Where files say they came from: C2PA manifest state (trusted / untrusted / invalid /
    absent / remote / malformed), signer, AI declaration and ingredients, plus AI metadata
    and Stable Diffusion invisible watermarks. Offline: remote manifests are not fetched."""
    from deepaudit.audit.provenance import audit_file
    from deepaudit.c2pa_layer import make_context

    with _errors_to_exit():
        ctx = make_context(trust_anchors)
    files = [f for f in _expand_paths(paths) if f.suffix.lower() != ".c2pa" or f in paths]
    records: list[dict[str, Any]] = []
    with _progress("reading provenance", enabled=len(files) > 20) as update:
        for done, f in enumerate(files, start=1):
            records.append(audit_file(f, context=ctx, check_watermark=not no_watermark))
            update(done, len(files))
    states: dict[str, int] = {}
    for r in records:
        states[r["state"]] = states.get(r["state"], 0) + 1
    if as_json:
        _print_json({"files": records, "summary": {"files": len(records), "states": states}})
    else:
        for r in records:
            _print_provenance(r, tree)
        if len(records) > 1:
            counts = ", ".join(f"{n} {k}" for k, n in sorted(states.items()))
            _stdout().print(f"{len(records)} files: {counts}", markup=False)
    if strict and (states.get("invalid") or states.get("malformed")):
        raise typer.Exit(EXIT_FINDINGS)


def _print_provenance(r: dict[str, Any], tree: bool) -> None:
    from rich.text import Text
    from rich.tree import Tree

    out = _stdout()
    out.print(Text(f"{r['path']}: {r['state']} - {r['conclusion']}"))
    out.print(Text(f"  {r['reason']}"))
    if r.get("signer") and r["signer"].get("not_after"):
        s = r["signer"]
        out.print(Text(f"  certificate valid {s.get('not_before')} to {s.get('not_after')}"))
    if r.get("digital_source_types"):
        out.print(Text("  digital source type: " + ", ".join(r["digital_source_types"])))
    if tree and (r.get("actions") or r.get("ingredients")):
        root = Tree(
            Text(f"{r.get('title') or r['path']} [{r['state']}] {r.get('claim_generator')}")
        )
        _provenance_branch(root, r)
        out.print(root)
    meta = r.get("metadata") or {}
    for sig in meta.get("signals", []):
        out.print(Text(f"  metadata: {sig['claim']} ({sig['strength']}) {sig['summary']}"))
    if "error" in meta:
        out.print(Text(f"  metadata: error: {meta['error']['message']}"))
    wm = r.get("watermark")
    if wm and wm.get("detected"):
        b = wm["best"]
        out.print(
            Text(
                f"  watermark: {b['scheme']} found ({b['matched_bits']}/{b['n_bits']} bits, "
                f"p={wm['p_value']:.2g})"
            )
        )
    elif wm and wm.get("tried"):
        schemes = ", ".join(dict.fromkeys(m["scheme"] for m in wm["tried"]))
        out.print(Text(f"  watermark: none found ({schemes} checked)"))


def _provenance_branch(node: Any, m: dict[str, Any]) -> None:
    from rich.text import Text

    for a in m.get("actions") or []:
        dst = f" [{a['digital_source_type']}]" if a.get("digital_source_type") else ""
        node.add(Text(f"action {a['action']}{dst}"))
    for ing in m.get("ingredients") or []:
        codes = f" {', '.join(ing['codes'])}" if ing.get("codes") else ""
        child = node.add(
            Text(
                f"ingredient {ing.get('title')} ({ing.get('relationship')}): {ing['state']}{codes}"
            )
        )
        _provenance_branch(child, ing)


@app.command()
def sign(
    paths: Annotated[list[Path], typer.Argument(help="Images or videos to sign.", exists=True)],
    cert: Annotated[
        Path, typer.Option("--cert", help="PEM certificate chain: end-entity first, no root.")
    ],
    key: Annotated[Path, typer.Option("--key", help="PEM private key of that certificate.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output file (one input) or folder (several)."),
    ] = None,
    in_place: Annotated[
        bool, typer.Option("--in-place", help="Replace each input with its signed version.")
    ] = False,
    ai_generated: Annotated[
        bool,
        typer.Option(
            "--ai-generated",
            help="Declare the content AI-generated (digitalSourceType trainedAlgorithmicMedia).",
        ),
    ] = False,
    source_type: Annotated[
        str | None,
        typer.Option(
            "--source-type",
            help="IPTC digital source type, e.g. digitalCapture, "
            "compositeWithTrainedAlgorithmicMedia (default: digitalCreation).",
        ),
    ] = None,
    parent: Annotated[
        Path | None,
        typer.Option(
            "--parent", help="The file this one was edited from (an ingredient).", exists=True
        ),
    ] = None,
    sidecar: Annotated[
        bool,
        typer.Option("--sidecar", help="Write the manifest to <name>.c2pa; leave the media as is."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Attach a signed C2PA manifest (no thumbnail, no network) declaring how each file was made."""
    from deepaudit.c2pa_layer import load_signing_credentials, sign_file

    if out is None and not in_place:
        _stderr().print("error: give --out FILE/DIR or --in-place", markup=False)
        raise typer.Exit(EXIT_USAGE)
    if ai_generated and source_type and source_type != "trainedAlgorithmicMedia":
        _stderr().print("error: --ai-generated and --source-type disagree", markup=False)
        raise typer.Exit(EXIT_USAGE)
    dst = "trainedAlgorithmicMedia" if ai_generated else (source_type or "digitalCreation")
    results = []
    with _errors_to_exit():
        creds = load_signing_credentials(cert, key)
        for p in paths:
            if in_place:
                target = p
            elif len(paths) == 1 and not (out.exists() and out.is_dir()):
                target = out
            else:
                target = out / p.name
            signed = sign_file(
                p, creds, target, digital_source_type=dst, parent=parent, sidecar=sidecar
            )
            results.append({"path": str(p), "signed": str(signed), "digital_source_type": dst})
    if as_json:
        _print_json({"files": results, "signer": creds.subject})
    else:
        for r in results:
            _stdout().print(f"signed {r['signed']} ({r['digital_source_type']})", markup=False)


@app.command("demo-cert")
def demo_cert(
    out_dir: Annotated[Path, typer.Argument(help="Folder for ca.pem, signer.pem, signer.key.pem.")],
    organization: Annotated[str, typer.Option(help="Organisation in the certificates.")] = (
        "deepaudit demo"
    ),
) -> None:
    """Make a throwaway CA and signing certificate to try `sign` and `provenance` with.
    Not for real use: anyone holding these files can sign as you."""
    from deepaudit.c2pa_layer import make_demo_credentials

    paths = make_demo_credentials(out_dir, organization=organization)
    out = _stdout()
    out.print(f"trust anchor: {paths['ca']}", markup=False)
    out.print(f"certificate:  {paths['chain']}", markup=False)
    out.print(f"private key:  {paths['key']}", markup=False)
    out.print(
        f"try: deepaudit sign IMG --cert {paths['chain']} --key {paths['key']} --ai-generated "
        f"-o signed.png && deepaudit provenance signed.png --trust-anchors {paths['ca']}",
        markup=False,
    )


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


# --------------------------------------------------------------------------- generators


@generators_app.command("list")
def generators_list(
    pattern: Annotated[str, typer.Argument(help="Glob over names, e.g. 'pixel-*'.")] = "*",
    as_json: JsonOpt = False,
) -> None:
    """Registered generators: name, family, image or video, what it is."""
    from deepaudit.generators import generator_entry, list_generators

    rows = []
    for name in list_generators(pattern):
        e = generator_entry(name)
        rows.append(
            {"name": name, "family": e.family, "kind": e.kind, "description": e.description}
        )
    if as_json:
        _print_json(rows)
        return
    out = _stdout()
    for r in rows:
        out.print(f"{r['name']:<18} {r['kind']:<6} {r['description']}", markup=False)


@generators_app.command("train")
def generators_train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write (resumes).")],
    family: Annotated[
        str, typer.Option(help="pixel (DDPM in pixel space), latent (autoencoder + UNet), video.")
    ] = "pixel",
    data: Annotated[
        Path | None,
        typer.Option(help="Real images: a manifest folder or a folder (default: built-in photos)."),
    ] = None,
    steps: Annotated[
        int, typer.Option(help="Optimisation steps (the reproducible budget).")
    ] = 1000,
    minutes: Annotated[
        float | None, typer.Option(help="Stop after this many minutes even if steps remain.")
    ] = None,
    size: Annotated[int, typer.Option(help="Image side in pixels (multiple of 8).")] = 32,
    channels: Annotated[
        str | None, typer.Option(help="UNet widths, e.g. 32,64,64 (default by family).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 32,
    class_attribute: Annotated[
        str | None, typer.Option(help="Train class-conditional on this manifest attribute.")
    ] = None,
    frames: Annotated[int, typer.Option(help="Video family: frames per clip.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed for weights and data order.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    track: Annotated[bool, typer.Option(help="Record the run in mlflow.")] = True,
) -> None:
    """Train a small diffusion model on real photos (nothing is downloaded). Interrupt it
    any time: rerunning the same command resumes from the last checkpoint."""
    from deepaudit.tracking import Tracker

    widths = tuple(int(c) for c in channels.split(",")) if channels else None
    tracker = Tracker() if track else None
    with _errors_to_exit(), _progress(f"training {family} diffusion") as update:

        def progress(step: int, total: int, loss: float) -> None:
            update(step, total)

        if family == "video":
            from deepaudit.generators.video import (
                VideoTrainConfig,
                load_training_clips,
                train_video_diffusion,
            )

            cfg = VideoTrainConfig(
                frames=frames,
                image_size=size,
                channels=widths or (16, 32),
                steps=steps,
                batch_size=min(batch_size, 8),
                seed=seed,
            )
            clips = load_training_clips(data, frames=frames, size=size)
            path = train_video_diffusion(
                cfg,
                out,
                clips=clips,
                device=device,
                minutes=minutes,
                tracker=tracker,
                progress=progress,
            )
        elif family in ("pixel", "latent"):
            from deepaudit.generators.training import (
                TrainConfig,
                load_training_images,
                train_diffusion,
            )

            cfg = TrainConfig(
                family=family,
                image_size=size,
                steps=steps,
                batch_size=batch_size,
                seed=seed,
                class_attribute=class_attribute,
                **({"channels": widths} if widths else {}),
            )
            images = load_training_images(data, class_attribute=class_attribute)
            path = train_diffusion(
                cfg,
                out,
                data=images,
                device=device,
                minutes=minutes,
                tracker=tracker,
                progress=progress,
            )
        else:
            _stderr().print(f"error: unknown family {family!r}; use pixel, latent or video")
            raise typer.Exit(EXIT_USAGE)
    meta = json.loads((path / "deepaudit.json").read_text())
    _stdout().print(
        f"model written to {path} ({meta['steps_done']} steps, {meta['seconds']} s on "
        f'{meta["device"]}); sample it with e.g. generator = "{family}-ddim", model = "{path}"',
        markup=False,
    )


@app.command()
def generate(
    suite: Annotated[Path, typer.Option("--suite", help="Suite spec (TOML).", exists=True)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder (resumes).")],
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Generate a synthetic dataset from a suite spec: media files + manifest.jsonl, each
    item with generator, sampler, seed, prompt and post-processing. Rerun to resume."""
    from deepaudit.generators.suite import load_suite, run_suite

    with _errors_to_exit():
        spec = load_suite(suite)
        with _progress("generating") as update:
            report = run_suite(spec, out, device=device, progress=update)
    data = report.to_json()
    if as_json:
        _print_json(data)
    else:
        _stdout().print(
            f"{data['generated']} generated, {data['skipped']} already there, "
            f"{len(data['failed'])} failed -> {out / 'manifest.jsonl'}",
            markup=False,
        )
        for f in data["failed"][:10]:
            _stderr().print(f"failed: {f['id']}: {f['error']}", markup=False)
    if data["failed"]:
        raise typer.Exit(EXIT_FINDINGS)


# --------------------------------------------------------------------------- detectors


def _parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``key=value`` pairs; values parsed as JSON when they can be (numbers, true, null)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not key=value")
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out


@detectors_app.command("list")
def detectors_list(as_json: JsonOpt = False) -> None:
    """Registered detectors and what each one is."""
    from deepaudit.detectors import detector_entry, list_detectors

    rows = []
    for name in list_detectors():
        e = detector_entry(name)
        rows.append({"name": name, "kind": e.kind, "description": e.description})
    if as_json:
        _print_json(rows)
        return
    for r in rows:
        _stdout().print(f"{r['name']:<15} {r['kind']:<6} {r['description']}", markup=False)


@app.command()
def train(
    data: Annotated[
        Path, typer.Option("--data", help="Manifest folder with real + synthetic.", exists=True)
    ],
    detector: Annotated[
        str, typer.Option("--detector", help="Registry name: see `detectors list`.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Detector folder to write (resumes).")],
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Detector option key=value, e.g. --set model=resnet50 --set epochs=20."
        ),
    ] = None,
    input_size: Annotated[int, typer.Option(help="Crop side the detector sees.")] = 32,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    target_fpr: Annotated[
        float, typer.Option(help="Calibrate the threshold to this FPR on val.")
    ] = 0.05,
    register: Annotated[
        str | None, typer.Option(help="Register the detector in mlflow under this model name.")
    ] = None,
    track: Annotated[bool, typer.Option(help="Record the run in mlflow.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Train a detector on a manifest (train split; threshold calibrated on val; metrics on
    test) and save it as a folder (config.json + weights). Rerun to resume after a kill."""
    from deepaudit.detectors import create_detector
    from deepaudit.detectors.data import load_items
    from deepaudit.detectors.train import train_detector
    from deepaudit.tracking import Tracker

    opts = _parse_options(option)
    with _errors_to_exit():
        items = load_items(data)
        if not {i.split for i in items} - {"train"}:
            _stderr().print(
                "note: no val/test split in the manifest; run `deepaudit manifest split` "
                "for calibrated thresholds and test metrics",
                markup=False,
            )
        cfg = {"input_size": input_size, "device": device, **opts}
        det = create_detector(detector, **cfg)
        with _progress(f"training {detector}") as update:
            metrics = train_detector(
                det,
                items,
                out,
                target_fpr=target_fpr,
                tracker=Tracker() if track else None,
                register_as=register,
                progress=update,
            )
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun, rank 0 reports
    if as_json:
        _print_json({"detector": str(out), "threshold": det.threshold, "metrics": metrics})
        return
    o = _stdout()
    o.print(
        f"detector written to {out} (threshold {det.threshold:.4f} for FPR {target_fpr:g})",
        markup=False,
    )
    for split, m in metrics.items():
        if isinstance(m, dict):
            lo, hi = m["ci95"].get("auc", [None, None])
            o.print(
                f"  {split}: AUC {m['auc']} [{lo}, {hi}]  AP {m['ap']}  EER {m['eer']}  "
                f"acc {m['accuracy']}  TPR@5%FPR {m['tpr_at_fpr_5']}",
                markup=False,
            )


@app.command()
def evaluate(
    detector: Annotated[
        Path, typer.Option("--detector", help="Trained detector folder.", exists=True)
    ],
    data: Annotated[Path, typer.Option("--data", help="Manifest folder.", exists=True)],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for metrics.json, predictions.jsonl, plots.")
    ],
    split: Annotated[
        str, typer.Option(help="Which split to score: test, val, train or all.")
    ] = "test",
    robustness: Annotated[
        bool, typer.Option(help="Robustness sweep (JPEG, resize, blur, noise).")
    ] = True,
    cross_generator: Annotated[
        bool, typer.Option(help="Also train one detector per generator and test on each.")
    ] = False,
    track: Annotated[bool, typer.Option(help="Record the evaluation in mlflow.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a detector: overall and per-generator metrics with 95% CIs, robustness,
    a format-shortcut check, predictions.jsonl (for the fairness audit) and plots."""
    from deepaudit.detectors import load_detector
    from deepaudit.detectors.data import load_items
    from deepaudit.detectors.evaluate import DEFAULT_ROBUSTNESS, evaluate_detector
    from deepaudit.tracking import Tracker

    with _errors_to_exit():
        det = load_detector(detector)
        items = load_items(data, kinds=("image", "video") if det.kind == "video" else ("image",))
        chosen = items if split == "all" else items.split(split)
        if not len(chosen):
            raise typer.BadParameter(f"no items in split {split!r} of {data}")
        with _progress("evaluating") as update:
            result = evaluate_detector(
                det,
                chosen,
                out,
                robustness=DEFAULT_ROBUSTNESS if robustness else (),
                tracker=Tracker() if track else None,
                progress=update,
            )
            if cross_generator:
                from deepaudit.detectors.evaluate import cross_generator as cross

                result["cross_generator"] = cross(det.name, dict(det.params()), items, out)
    if as_json:
        _print_json(result)
        return
    o = _stdout()
    ov = result["overall"]
    o.print(
        f"{len(chosen)} items: AUC {ov['auc']} AP {ov['ap']} EER {ov['eer']} "
        f"acc {ov['accuracy']} (threshold {result['threshold']:.4f})",
        markup=False,
    )
    for g, m in result["per_generator"].items():
        o.print(f"  {g}: AUC {m['auc']} TPR@5%FPR {m['tpr_at_fpr_5']}", markup=False)
    for p, m in result.get("robustness", {}).items():
        o.print(f"  {p}: AUC {m['auc']}", markup=False)
    fs = result.get("format_shortcut")
    if fs and fs["shortcut_suspected"]:
        o.print(
            f"  warning: AUC drops by {fs['auc_drop']:.3f} when every file is re-encoded "
            "as JPEG: the detector may be reading the file format",
            markup=False,
        )
    o.print(f"written: {out / 'metrics.json'}, {out / 'predictions.jsonl'}, plots", markup=False)


# --------------------------------------------------------------------------- scan


@app.command()
def scan(
    paths: Annotated[list[str], typer.Argument(help="Files, folders (recursive) or globs.")],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder for results.jsonl, summary.json, report.html."),
    ] = Path("scan-output"),
    detector: Annotated[
        list[Path] | None,
        typer.Option("--detector", "-d", help="Trained detector folder (repeatable).", exists=True),
    ] = None,
    trust_anchors: AnchorsOpt = None,
    workers: Annotated[
        int | None, typer.Option(help="Decode/provenance worker processes (default: cores - 1).")
    ] = None,
    frames: Annotated[int, typer.Option(help="Frames sampled per video.")] = 8,
    csv: Annotated[bool, typer.Option("--csv", help="Also write results.csv.")] = False,
    device: Annotated[str, typer.Option(help="Detector device: auto, cpu, cuda.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Files per detector batch (and per flush).")] = 32,
    precision: Annotated[
        str,
        typer.Option(
            help="Network detectors: auto (bf16/fp16 on CUDA, fp32 on CPU), fp32, bf16 "
            "(CPUs with bf16 units: ~2x faster, scores differ by ~0.01)."
        ),
    ] = "auto",
    restart: Annotated[
        bool, typer.Option("--restart", help="Forget earlier results in --out and scan everything.")
    ] = False,
    as_json: JsonOpt = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Exit 1 if any file is synthetic, likely synthetic, needs review or unreadable.",
        ),
    ] = False,
) -> None:
    """Scan media for synthetic content: per file provenance (C2PA), AI metadata, invisible
    watermarks and detector scores, combined into a verdict with its reasons. Writes
    results.jsonl (one line per file, as it goes), summary.json and report.html. Rerun the
    same command to resume: unchanged files are skipped."""
    from deepaudit.audit.scan import run_scan

    with _errors_to_exit(), _progress("scanning") as update:
        summary = run_scan(
            paths,
            out,
            detectors=detector or [],
            trust_anchors=trust_anchors,
            workers=workers,
            frames=frames,
            csv=csv,
            device=device,
            batch_size=batch_size,
            restart=restart,
            precision=precision,
            progress=lambda n, total: update(n, total or 0),
        )
    data = summary.to_json()
    if as_json:
        _print_json(data)
    else:
        from rich.table import Table

        table = Table(
            title=f"{data['files']} files ({data['skipped_unchanged']} unchanged, "
            f"{data['scanned_now']} scanned at {data['files_per_s'] or '-'} files/s)"
        )
        table.add_column("verdict")
        table.add_column("files", justify="right")
        for v, n in data["by_verdict"].items():
            if n:
                table.add_row(v, str(n))
        o = _stdout()
        o.print(table)
        o.print(
            "provenance: " + ", ".join(f"{k} {n}" for k, n in data["by_provenance_state"].items()),
            markup=False,
        )
        for e in data["walk_errors"][:10]:
            _stderr().print(f"warning: {e}", markup=False)
        o.print(f"results: {out / 'results.jsonl'}   report: {out / 'report.html'}", markup=False)
    if strict and summary.attention:
        raise typer.Exit(EXIT_FINDINGS)


# --------------------------------------------------------------------------- audit


@audit_app.command("fairness")
def audit_fairness(
    predictions: Annotated[
        Path,
        typer.Option(
            help="predictions.jsonl from `evaluate`, or a scan's results.jsonl.", exists=True
        ),
    ],
    attributes: Annotated[str, typer.Option(help="Comma-separated attributes, e.g. gender,race.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for fairness.json and report.html.")
    ],
    manifest: Annotated[
        Path | None,
        typer.Option(help="Manifest with labels and attributes (matched by id or path)."),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="Decision threshold (default: the detector's calibrated one, else 0.5)."),
    ] = None,
    detector: Annotated[
        str | None, typer.Option(help="Which detector's scores, when a scan has several.")
    ] = None,
    min_n: Annotated[int, typer.Option(help="Warn for groups smaller than this.")] = 30,
    as_json: JsonOpt = False,
) -> None:
    """Per-group and intersectional detector metrics (AUC, AP, EER, FPR, FNR, accuracy, with
    95% CIs) and gap metrics (equalized odds, demographic parity, F_FPR, F_EO, F_MEO, F_DP,
    F_OAE, worst-group AUC). Undefined metrics are shown as n/a with the reason."""
    from deepaudit.audit.fairness import fairness_audit, load_predictions
    from deepaudit.audit.report import write_fairness_report

    with _errors_to_exit():
        data = load_predictions(predictions, manifest, detector=detector)
        thr = threshold if threshold is not None else _threshold_near(predictions, detector)
        report = fairness_audit(
            data,
            [a.strip() for a in attributes.split(",") if a.strip()],
            threshold=thr,
            min_n=min_n,
        )
        paths = write_fairness_report(report, out, data=data)
    if as_json:
        _print_json(report.to_json())
        return
    o = _stdout()
    for key, gap in report.gaps.items():
        o.print(
            f"{key}: FPR gap {gap['fpr_max_minus_min']}, FNR gap {gap['fnr_max_minus_min']}, "
            f"worst-group AUC {gap['worst_group_auc']} ({gap['worst_group']}), "
            f"F_FPR {gap['F_FPR']}, F_DP {gap['F_DP']}",
            markup=False,
        )
    for w in report.warnings[:10]:
        _stderr().print(f"warning: {w}", markup=False)
    o.print(f"written: {paths['json']}, {paths['html']}", markup=False)


def _threshold_near(predictions: Path, detector: str | None) -> float:
    """The calibrated threshold recorded beside the predictions (evaluate or scan), else 0.5."""
    for name in ("metrics.json", "summary.json"):
        p = predictions.parent / name
        if p.is_file():
            data = json.loads(p.read_text())
            if "threshold" in data:
                return float(data["threshold"])
            dets = data.get("detectors") or {}
            if dets:
                key = detector or next(iter(dets))
                if key in dets and "threshold" in dets[key]:
                    return float(dets[key]["threshold"])
    return 0.5


@audit_app.command("generator")
def audit_generator_cmd(
    dataset: Annotated[
        Path, typer.Argument(help="Dataset folder (manifest) holding the outputs.", exists=True)
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for generator_audit.json.")],
    source: Annotated[
        str | None,
        typer.Option(help="Generator (manifest source) to audit; default all synthetic."),
    ] = None,
    real: Annotated[
        Path | None, typer.Option(help="Manifest with real images (default: the same one).")
    ] = None,
    detector: Annotated[
        list[Path] | None, typer.Option("--detector", "-d", help="Detector folder (repeatable).")
    ] = None,
    trust_anchors: AnchorsOpt = None,
    attribute: Annotated[
        str | None, typer.Option(help="Representation from this manifest attribute.")
    ] = None,
    clip: Annotated[
        Path | None, typer.Option(help="Local CLIP folder for a zero-shot attribute classifier.")
    ] = None,
    labels: Annotated[
        str | None, typer.Option(help="Comma-separated groups for --clip, e.g. 'man,woman'.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Audit a generator through its outputs: provenance coverage (C2PA, declarations,
    watermarks, metadata), detectability (AUC per detector), diversity, representation."""
    from deepaudit.audit.generative import ManifestAttribute, ZeroShotCLIP, audit_generator

    with _errors_to_exit():
        classifier = None
        if clip is not None:
            if not labels:
                raise typer.BadParameter("--clip needs --labels")
            classifier = ZeroShotCLIP(clip, [x.strip() for x in labels.split(",")])
        elif attribute:
            classifier = ManifestAttribute(attribute)
        with _progress("auditing generator") as update:
            result = audit_generator(
                dataset,
                source=source,
                real=real,
                detectors=detector or [],
                trust_anchors=trust_anchors,
                classifier=classifier,
                progress=update,
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / "generator_audit.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    if as_json:
        _print_json(result)
        return
    o = _stdout()
    o.print(f"{result['source']}: {result['items']} items", markup=False)
    o.print(
        "provenance coverage: "
        + ", ".join(f"{k} {v:.0%}" for k, v in result["provenance_coverage"].items()),
        markup=False,
    )
    d = result["diversity"]
    o.print(
        f"diversity: mean pairwise distance {d['mean_pairwise_distance']}, "
        f"near-duplicates {d['near_duplicate_rate']}",
        markup=False,
    )
    for name, v in (result.get("detectability") or {}).items():
        o.print(f"detectability by {name}: AUC {v['auc']}", markup=False)
    if "representation" in result:
        r = result["representation"]["overall"]
        o.print(
            f"representation: {r['counts']} (MAD from uniform {r['mad_from_uniform']})",
            markup=False,
        )
    o.print(f"written: {out / 'generator_audit.json'}", markup=False)


@audit_app.command("model-card")
def audit_model_card(
    detector: Annotated[Path, typer.Argument(help="Trained detector folder.", exists=True)],
    evaluation: Annotated[
        Path | None, typer.Option(help="Folder written by `deepaudit evaluate`.")
    ] = None,
    fairness: Annotated[
        Path | None, typer.Option(help="fairness.json from `audit fairness`.")
    ] = None,
    track: Annotated[bool, typer.Option(help="Log the card to mlflow.")] = True,
) -> None:
    """Write MODEL_CARD.md and model_card.json next to a detector."""
    from deepaudit.audit.transparency import write_model_card
    from deepaudit.tracking import Tracker

    with _errors_to_exit():
        paths = write_model_card(
            detector,
            evaluation_dir=evaluation,
            fairness_json=fairness,
            tracker=Tracker() if track else None,
        )
    _stdout().print(f"written: {paths['markdown']}, {paths['json']}", markup=False)


@audit_app.command("dataset-card")
def audit_dataset_card(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (manifest).", exists=True)],
) -> None:
    """Write DATASET_CARD.md and dataset_card.json (a datasheet) into a dataset folder."""
    from deepaudit.audit.transparency import write_dataset_card

    with _errors_to_exit():
        paths = write_dataset_card(dataset)
    _stdout().print(f"written: {paths['markdown']}, {paths['json']}", markup=False)


@audit_app.command("explain")
def audit_explain(
    detector: Annotated[
        Path, typer.Option("--detector", "-d", help="Detector folder.", exists=True)
    ],
    images: Annotated[list[Path], typer.Argument(help="Images to explain.", exists=True)],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the PNG explanations.")
    ] = Path("explanations"),
) -> None:
    """Why a detector scored images as it did: Grad-CAM heatmaps (timm, NPR) or the
    spectrum (spectral), saved as PNGs beside the crop the detector saw."""
    from deepaudit.audit.transparency import explain, save_explanation
    from deepaudit.detectors import load_detector
    from deepaudit.media import read_image

    with _errors_to_exit():
        det = load_detector(detector)
        for img in images:
            e = explain(det, read_image(img))
            p = save_explanation(
                e, out / f"{img.stem}.explain.png", title=f"{img.name} · {det.name}"
            )
            _stdout().print(f"{img}: P(synthetic) {e.score:.3f} -> {p}", markup=False)


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
    quick: Annotated[
        bool, typer.Option("--quick", help="Tiny sizes: a minute instead of ~10 (for tests).")
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    as_json: JsonOpt = False,
) -> None:
    """The whole toolkit end to end on built-in photos, nothing downloaded: train tiny
    generators, generate a signed synthetic set, train and evaluate detectors, then scan an
    inbox of real, generated, signed, stripped, tampered and broken files. Rerun to resume."""
    from deepaudit.cli.demo import run_demo

    console = _stderr()
    with _errors_to_exit():
        result = run_demo(
            out, quick=quick, device=device, on_step=lambda m: console.print(f"• {m}", markup=False)
        )
    if as_json:
        _print_json(result)
        return
    o = _stdout()
    o.print(f"demo finished in {result['seconds']} s", markup=False)
    for k, v in result["outputs"].items():
        o.print(f"  {k}: {v}", markup=False)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
