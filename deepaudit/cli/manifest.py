"""``deepaudit manifest ...``: build, check, split and filter dataset manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from deepaudit.cli.console import (
    EXIT_FINDINGS,
    JsonOpt,
    StrictOpt,
    errors_to_exit,
    print_json,
    progress_bar,
    stderr,
    stdout,
)

__all__ = ["app"]

app = typer.Typer(
    help="Build, check, split and filter dataset manifests.\n\n"
    "A dataset is a folder of media files plus manifest.jsonl, one line per item (path, "
    "sha256, label real/synthetic, source, generator, split, attributes). Imports record "
    "files already on disk and resume; split assigns train/val/test by a hash of each id, "
    "so it stays stable as items are added.",
    no_args_is_help=True,
)


def _report_import(report: Any, as_json: bool, strict: bool) -> None:
    data = {
        "manifest": str(report.manifest.path),
        "added": report.added,
        "skipped": report.skipped,
        "ignored": report.ignored,
        "problems": [str(p) for p in report.problems],
        "absent": report.absent,
        "summary": report.manifest.summary().to_json(),
    }
    if as_json:
        print_json(data)
    else:
        out = stdout()
        out.print(
            f"{data['manifest']}: added {report.added}, already present {report.skipped}, "
            f"not media {report.ignored}, unreadable {len(report.problems)}"
            + (f", table rows without a file {report.absent}" if report.absent else "")
            + "; "
            f"{len(report.manifest)} items in all",
            markup=False,
        )
        for p in report.problems:
            stderr().print(f"  unreadable: {p}", markup=False)
    if strict and report.problems:
        raise typer.Exit(EXIT_FINDINGS)


OutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Folder for manifest.jsonl (default: the source folder)."),
]


@app.command("import-folder")
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

    with errors_to_exit(), progress_bar("importing") as update:
        report = import_folder(folder, out=out, label=label, source=source, progress=update)
    _report_import(report, as_json, strict)


@app.command("import-cnnspot")
def manifest_import_cnnspot(
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Dataset root.")],
    out: OutOpt = None,
    as_json: JsonOpt = False,
    strict: StrictOpt = False,
) -> None:
    """Import a CNNSpot-layout tree: 0_real/ is real, 1_fake/ synthetic, at any depth."""
    from deepaudit.manifest_import import import_cnnspot

    with errors_to_exit(), progress_bar("importing") as update:
        report = import_cnnspot(folder, out=out, progress=update)
    _report_import(report, as_json, strict)


@app.command("import-csv")
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
    with errors_to_exit(), progress_bar("importing") as update:
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


@app.command("import-feedback")
def manifest_import_feedback(
    scan_dir: Annotated[
        Path, typer.Argument(exists=True, file_okay=False, help="A reviewed scan's folder.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for manifest.jsonl.")],
    as_json: JsonOpt = False,
) -> None:
    """Turn an analyst's decisions (SCAN_DIR/feedback.jsonl, from `deepaudit review`) into
    a dataset: real and synthetic files are kept, unsure ones, files reviewers disagree
    about and files changed since the decision are left out and counted. Appends; run
    `deepaudit manifest split` before training."""
    from deepaudit.audit.feedback import import_feedback

    with errors_to_exit():
        report = import_feedback(scan_dir, out)
    data = report.to_json()
    if as_json:
        print_json(data)
        return
    labels = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items())) or "none"
    left = ", ".join(f"{k} {v}" for k, v in report.left_out.items() if v) or "nothing"
    stdout().print(
        f"{data['manifest']}: added {report.added} (already present {report.already_present}); "
        f"decisions: {labels}; left out: {left}; {len(report.manifest)} items in all",
        markup=False,
    )


@app.command("import-genimage")
def manifest_import_genimage(
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="GenImage root.")],
    out: OutOpt = None,
    as_json: JsonOpt = False,
    strict: StrictOpt = False,
) -> None:
    """Import GenImage: <generator>/[...]/{train,val}/{ai,nature}/. train stays train, val
    becomes test (what the paper reports on); every item gets subset=<generator>."""
    from deepaudit.public_datasets import import_genimage

    with errors_to_exit(), progress_bar("importing") as update:
        report = import_genimage(folder, out=out, progress=update)
    _report_import(report, as_json, strict)


@app.command("import-synthbuster")
def manifest_import_synthbuster(
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Synthbuster root.")],
    raise_dir: Annotated[
        Path | None,
        typer.Option(
            "--raise", exists=True, file_okay=False, help="RAISE-1k photos (TIFF/PNG/JPEG)."
        ),
    ] = None,
    out: OutOpt = None,
    as_json: JsonOpt = False,
    strict: StrictOpt = False,
) -> None:
    """Import Synthbuster: one folder per generator plus the RAISE reals; pair=<RAISE name>
    on every item (split with --group-by pair)."""
    from deepaudit.public_datasets import import_synthbuster

    with errors_to_exit(), progress_bar("importing") as update:
        report = import_synthbuster(folder, raise_dir=raise_dir, out=out, progress=update)
    _report_import(report, as_json, strict)


@app.command("import-real-fake")
def manifest_import_real_fake(
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Dataset root.")],
    out: OutOpt = None,
    as_json: JsonOpt = False,
    strict: StrictOpt = False,
) -> None:
    """Import a real/ fake/ tree (WildRF, Chameleon): label folders at any depth, train/val/
    test folders set the split, the other folders name the source."""
    from deepaudit.public_datasets import import_real_fake

    with errors_to_exit(), progress_bar("importing") as update:
        report = import_real_fake(folder, out=out, progress=update)
    _report_import(report, as_json, strict)


@app.command("import-table")
def manifest_import_table(
    table: Annotated[
        Path, typer.Argument(exists=True, help="A .parquet/.arrow file or a folder of them.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for manifest.jsonl + files.")],
    image_column: Annotated[
        str | None, typer.Option(help="Image bytes / HF Image / path column (default: guessed).")
    ] = None,
    label_column: Annotated[
        str | None, typer.Option(help="real/fake, 0/1 or ClassLabel column (default: label).")
    ] = None,
    label: Annotated[str | None, typer.Option(help="One label for all rows instead.")] = None,
    generator_column: Annotated[
        str | None, typer.Option(help="Generator name column (default: generator/model_name).")
    ] = None,
    split_column: Annotated[
        str | None, typer.Option(help="Split column (default: from file or folder names).")
    ] = None,
    as_json: JsonOpt = False,
    strict: StrictOpt = False,
) -> None:
    """Import Parquet / Hugging Face datasets files from disk (Community Forensics, ...):
    embedded images are written once under OUT/files/, byte for byte."""
    from deepaudit.table_import import import_table

    with errors_to_exit(), progress_bar("importing") as update:
        report = import_table(
            table,
            out=out,
            image_column=image_column,
            label_column=label_column,
            label=label,  # type: ignore[arg-type]
            generator_column=generator_column,
            split_column=split_column,
            progress=update,
        )
    _report_import(report, as_json, strict)


@app.command("import-prompts")
def manifest_import_prompts(
    tables: Annotated[
        list[Path], typer.Argument(exists=True, help="Prompt tables (.parquet/.json/...).")
    ],
    images: Annotated[
        Path, typer.Option("--images", exists=True, file_okay=False, help="Image folder.")
    ],
    out: OutOpt = None,
    name_column: Annotated[str, typer.Option(help="Column holding image file names.")] = (
        "image_name"
    ),
    model: Annotated[
        str | None, typer.Option(help="Generator name (default: the table's, or stable-diffusion).")
    ] = None,
    as_json: JsonOpt = False,
    strict: StrictOpt = False,
) -> None:
    """Import DiffusionDB-style images joined by file name to their prompt table: prompt,
    seed, steps, guidance and sampler go into each item's generator record."""
    from deepaudit.table_import import import_prompt_table

    with errors_to_exit(), progress_bar("importing") as update:
        report = import_prompt_table(
            tables, images=images, out=out, name_column=name_column, model=model, progress=update
        )
    _report_import(report, as_json, strict)


@app.command("builtin")
def manifest_builtin(
    out: Annotated[Path, typer.Argument(help="Dataset folder to write into.")],
    grayscale: Annotated[bool, typer.Option(help="Also the grey photographs.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write the real photographs bundled with scikit-image/scikit-learn as a dataset."""
    from deepaudit.photos import write_builtin_photos

    with errors_to_exit():
        manifest = write_builtin_photos(out, include_grayscale=grayscale)
    _print_summary(manifest, as_json)


@app.command("validate")
def manifest_validate(
    manifest: Annotated[Path, typer.Argument(help="Manifest folder or manifest.jsonl.")],
    check_files: Annotated[bool, typer.Option(help="Check that every file exists.")] = True,
    check_hashes: Annotated[bool, typer.Option(help="Re-hash every file (slow).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check every line of a manifest; each problem names its line. Exit 1 on errors."""
    from deepaudit.manifest import validate_manifest

    with errors_to_exit():
        problems = validate_manifest(manifest, check_files=check_files, check_hashes=check_hashes)
    errors = [p for p in problems if p.severity == "error"]
    if as_json:
        print_json(
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
            stdout().print(f"{manifest}: {p}", markup=False)
        stdout().print(
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


@app.command("split")
def manifest_split(
    manifest: Annotated[Path, typer.Argument(help="Manifest folder or manifest.jsonl.")],
    ratios: Annotated[str, typer.Option(help="train,val,test fractions.")] = "0.8,0.1,0.1",
    seed: Annotated[str, typer.Option(help="Salt of the hash; change it to reshuffle.")] = (
        "deepaudit"
    ),
    group_by: Annotated[
        str | None,
        typer.Option(
            help="Keep items sharing this attribute (person, video) in one split; 'pair' keeps "
            "each real photo with its synthetic twins."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Reassign items that have a split.")] = False,
    leave_out: Annotated[
        str | None,
        typer.Option(help="Hold this generator out of training: a fold written to --out."),
    ] = None,
    leave_one_out: Annotated[
        bool, typer.Option(help="One fold per generator, written to --out/<generator>/.")
    ] = False,
    newer_than: Annotated[
        str | None,
        typer.Option(
            help="Train on generators released before this date, test on the newer "
            "(AI-GenBench); a fold written to --out."
        ),
    ] = None,
    release_dates: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="JSON or CSV: generator -> release date."),
    ] = None,
    real_group: Annotated[
        str, typer.Option(help="Attribute tying a real item to a generator's subset.")
    ] = "subset",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for the fold(s).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Assign train/val/test by a hash of each id: stable when items are added later.

    With --leave-out, --leave-one-out or --newer-than, write folds that never train on the
    held-out generators: their train/val items are left out, the rest of the manifest keeps
    its splits (items without one get one by hash), and `detectors evaluate` on a fold
    reports seen and held-out generators apart."""
    from deepaudit.manifest import read_manifest

    folding = leave_out is not None or leave_one_out or newer_than is not None
    if folding and out is None:
        raise typer.BadParameter("--leave-out, --leave-one-out and --newer-than need --out")
    if sum([leave_out is not None, leave_one_out, newer_than is not None]) > 1:
        raise typer.BadParameter("give one of --leave-out, --leave-one-out, --newer-than")
    with errors_to_exit():
        m = read_manifest(manifest)
        if not folding:
            m = m.with_splits(
                ratios=_parse_ratios(ratios), seed=seed, group_by=group_by, overwrite=overwrite
            )
            m.write()
            _print_summary(m, as_json)
            return
        from deepaudit import generator_folds as gf

        opts = {"real_group": real_group or None, "ratios": _parse_ratios(ratios), "seed": seed}
        if leave_one_out:
            folds = {g.replace("/", "_"): f for g, f in gf.leave_one_out(m, **opts).items()}
        elif leave_out is not None:
            folds = {"": gf.hold_out(m, {leave_out}, **opts)}
        else:
            dates = gf.read_release_dates(release_dates) if release_dates else None
            folds = {"": gf.newer_than(m, newer_than, dates=dates, **opts)}
        written = []
        for name, fold in folds.items():
            new = fold.rebased(out / name if name else out)
            new.write()
            written.append(new)
    if len(written) == 1:
        _print_summary(written[0], as_json)
    elif as_json:
        print_json({"folds": {str(w.root): w.summary().to_json() for w in written}})
    else:
        for w in written:
            _print_summary(w, False)


@app.command("stats")
def manifest_stats(
    manifest: Annotated[Path, typer.Argument(help="Manifest folder or manifest.jsonl.")],
    as_json: JsonOpt = False,
) -> None:
    """Counts by label, kind, split and source."""
    from deepaudit.manifest import read_manifest

    with errors_to_exit():
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


@app.command("filter")
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

    with errors_to_exit():
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
        print_json({"manifest": str(m.path), **s})
        return
    out = stdout()
    out.print(f"{m.path}: {s['items']} items", markup=False)
    for axis in ("by_label", "by_kind", "by_split", "by_source"):
        parts = ", ".join(f"{k} {v}" for k, v in s[axis].items())
        out.print(f"  {axis[3:]:<7} {parts}", markup=False)
