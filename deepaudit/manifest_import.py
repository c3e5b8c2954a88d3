"""Turn existing media folders and CSV tables into dataset manifests.

Three layouts: a plain folder (one label for all), the CNNSpot layout (``0_real/`` and
``1_fake/`` folders at any depth), and a CSV with a path column plus attribute columns.
Every importer (these and :mod:`deepaudit.public_datasets`, :mod:`deepaudit.table_import`)
goes through :func:`run_import`: items are staged in a hidden folder next to the manifest and
published with one atomic rewrite at the end, so a failed or interrupted import never leaves a
partial ``manifest.jsonl`` behind, and a rerun resumes from the staged items. Ids already in
the manifest are skipped. Files that are not readable media are reported, never silently
dropped.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import shutil
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepaudit.errors import DeepauditError, ManifestError, MediaError
from deepaudit.manifest import (
    MANIFEST_NAME,
    AttributeValue,
    GeneratorInfo,
    Label,
    Manifest,
    ManifestItem,
    ManifestWriter,
    Split,
    read_manifest,
)

__all__ = [
    "LABEL_WORDS",
    "STAGING_DIR",
    "ImportJob",
    "ImportReport",
    "claims_media",
    "import_cnnspot",
    "import_csv",
    "import_folder",
    "item_from_file",
    "iter_files",
    "run_import",
]

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (files done, files in total) after each file."""

STAGING_DIR = ".deepaudit-import"
"""Hidden folder beside the manifest where an import stages its items until it publishes."""

_REAL_DIRS = {"0_real"}
_FAKE_DIRS = {"1_fake"}
LABEL_WORDS: dict[str, Label] = {
    "real": "real",
    "0": "real",
    "false": "real",
    "authentic": "real",
    "pristine": "real",
    "synthetic": "synthetic",
    "fake": "synthetic",
    "1": "synthetic",
    "true": "synthetic",
    "generated": "synthetic",
    "ai": "synthetic",
}


@dataclass(frozen=True)
class ImportReport:
    """What an import did: the manifest now on disk and what it added, skipped or refused."""

    manifest: Manifest
    added: int
    skipped: int  # already in the manifest (a resumed import)
    ignored: int  # files that are not media and do not claim to be (README.txt, ...)
    problems: tuple[DeepauditError, ...]  # files that claim to be media but cannot be read
    absent: int = 0  # table rows whose file is not on disk (a partial download)


def item_from_file(
    file: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str],
    label: Label,
    source: str,
    attributes: Mapping[str, AttributeValue] | None = None,
    generator: GeneratorInfo | None = None,
    item_id: str | None = None,
    split: Split | None = None,
    transforms: tuple[str, ...] = (),
) -> ManifestItem:
    """Probe a media file and describe it as a manifest item (path relative to ``root``)."""
    from deepaudit.media import file_sha256, probe

    p = Path(file)
    info = probe(p)
    rel = Path(os.path.relpath(p.resolve(), Path(root).resolve())).as_posix()
    return ManifestItem(
        id=item_id or rel,
        path=rel,
        sha256=file_sha256(p),
        kind=info.kind,
        label=label,
        source=source,
        generator=generator,
        split=split,
        attributes=dict(attributes or {}),
        width=info.width,
        height=info.height,
        frames=info.frames,
        fps=info.fps,
        transforms=transforms,
    )


def iter_files(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Every regular file under ``folder`` by the one walker (:mod:`deepaudit.walk`: sorted,
    hidden entries skipped, links followed once), leaving out dataset manifests."""
    from deepaudit.walk import walk_files

    root = Path(folder)
    if not root.is_dir():
        raise MediaError(root, "is not a folder")
    errors: list[str] = []
    for path in walk_files([root], errors=errors, skip_names={MANIFEST_NAME}):
        try:
            regular = stat.S_ISREG(path.stat().st_mode)
        except OSError:
            regular = True  # let the reader report a file gone since listing
        if not regular:  # reading a FIFO would block forever
            logger.warning("%s: skipped, not a regular file", path)
            continue
        yield path
    for line in errors:
        logger.warning("%s", line)


def claims_media(path: Path) -> bool:
    """Whether a file's extension says it is an image or a video we read."""
    from deepaudit.media_formats import IMAGE_FORMATS, VIDEO_CONTAINERS

    ext = path.suffix.lower()
    return any(ext in exts for _, exts in (*IMAGE_FORMATS.values(), *VIDEO_CONTAINERS.values()))


@dataclass(frozen=True)
class ImportJob:
    """One file to record: its label, source and whatever the layout says about it."""

    file: Path
    label: Label
    source: str
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    generator: GeneratorInfo | None = None
    split: Split | None = None
    item_id: str | None = None  # default: the path relative to the manifest


def run_import(
    out: str | os.PathLike[str],
    jobs: Sequence[ImportJob],
    *,
    progress: Progress | None = None,
    problems: Sequence[DeepauditError] = (),
) -> ImportReport:
    """Probe and hash each job's file and publish the items into ``out/manifest.jsonl``.

    Items are staged in ``out/.deepaudit-import/`` (one flushed line each) and the manifest is
    rewritten atomically once every job is done: a crash leaves the old manifest (or none)
    untouched, and a rerun resumes from the staged lines instead of re-hashing them.
    ``problems`` are ones the caller found before (bad CSV rows) and are reported with these.
    """
    from deepaudit.media_formats import sniff_bytes

    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    existing = read_manifest(dest) if (dest / MANIFEST_NAME).exists() else Manifest(dest, [])
    staging = dest / STAGING_DIR
    found: list[DeepauditError] = list(problems)
    skipped = ignored = 0
    with ManifestWriter(staging) as writer:
        for done, job in enumerate(jobs, start=1):
            rel = Path(os.path.relpath(job.file.resolve(), dest.resolve())).as_posix()
            item_id = job.item_id or rel
            if item_id in existing:
                skipped += 1
            elif item_id not in writer:  # staged by an interrupted run: kept as it is
                try:
                    item = item_from_file(
                        job.file,
                        root=dest,
                        label=job.label,
                        source=job.source,
                        attributes=job.attributes,
                        generator=job.generator,
                        split=job.split,
                        item_id=item_id,
                    )
                    writer.write(item)
                except MediaError as exc:
                    head = _head(job.file)
                    if head and sniff_bytes(head).kind == "other" and not claims_media(job.file):
                        ignored += 1  # a README or a CSV next to the photos: not a problem
                    else:
                        found.append(exc)
            if progress is not None:
                progress(done, len(jobs))
    staged = [i for i in read_manifest(staging).items if i.id not in existing]
    merged = Manifest(dest, [*existing.items, *staged])
    merged.write()
    shutil.rmtree(staging, ignore_errors=True)
    for exc in found:
        logger.warning("%s", exc)
    return ImportReport(
        manifest=merged,
        added=len(staged),
        skipped=skipped,
        ignored=ignored,
        problems=tuple(found),
    )


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(4096)
    except OSError:
        return b""


def import_folder(
    folder: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    label: Label = "real",
    source: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Every media file under ``folder`` (any depth) as items with one label and source."""
    src = Path(folder)
    if label not in ("real", "synthetic"):
        raise ValueError(f"label must be 'real' or 'synthetic', got {label!r}")
    dest = Path(out) if out is not None else src
    jobs = [
        ImportJob(f, label, source or src.resolve().name, dict(attributes or {}))
        for f in iter_files(src)
    ]
    return run_import(dest, jobs, progress=progress)


def import_cnnspot(
    folder: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """A CNNSpot-layout tree: files under ``0_real/`` are real, under ``1_fake/`` synthetic.

    The folders above them name the source, e.g. ``progan/airplane/1_fake/x.png`` gets
    source "progan/airplane" (the root folder's name when the class folders sit at the top).
    """
    src = Path(folder)
    dest = Path(out) if out is not None else src
    jobs: list[ImportJob] = []
    for f in iter_files(src):
        parts = f.relative_to(src).parts[:-1]
        marks = [i for i, part in enumerate(parts) if part in _REAL_DIRS | _FAKE_DIRS]
        if not marks:
            continue
        i = marks[-1]
        label: Label = "real" if parts[i] in _REAL_DIRS else "synthetic"
        source = "/".join(parts[:i]) or src.resolve().name
        attributes: dict[str, AttributeValue] = {}
        if len(parts) > i + 1:
            attributes["subfolder"] = "/".join(parts[i + 1 :])
        jobs.append(ImportJob(f, label, source, attributes))
    if not jobs:
        raise MediaError(src, "no 0_real/ or 1_fake/ folders found (not a CNNSpot layout)")
    return run_import(dest, jobs, progress=progress)


def _coerce(value: str) -> AttributeValue:
    text = value.strip()
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text  # "nan"/"inf" stay words


def import_csv(
    csv_path: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    path_column: str = "path",
    label: Label | None = None,
    label_column: str | None = None,
    source: str | None = None,
    source_column: str | None = None,
    attribute_columns: list[str] | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Rows of a CSV as items: a path column, a label (a column or one for all), attributes.

    Paths are relative to ``root`` (default: the CSV's folder). Every column that is not the
    path, label or source column becomes an attribute unless ``attribute_columns`` picks some;
    numbers stay numbers. A row with a bad label or a missing file is reported with its line.
    """
    csv_file = Path(csv_path)
    base = Path(root) if root is not None else csv_file.parent
    dest = Path(out) if out is not None else base
    if (label is None) == (label_column is None):
        raise ValueError("give exactly one of label (one for all rows) or label_column")
    try:
        with open(csv_file, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
    except FileNotFoundError as exc:
        raise ManifestError(csv_file, "no such CSV file") from exc
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(csv_file, f"cannot read CSV ({exc})") from exc
    for needed in (path_column, label_column, source_column):
        if needed is not None and needed not in columns:
            raise ManifestError(
                csv_file, f"no column {needed!r}; the columns are {', '.join(columns)}", line=1
            )
    reserved = {path_column, label_column, source_column}
    if attribute_columns is None:
        attribute_columns = [c for c in columns if c not in reserved]
    else:
        missing = [c for c in attribute_columns if c not in columns]
        if missing:
            raise ManifestError(csv_file, f"no attribute column(s) {missing}", line=1)
    problems: list[DeepauditError] = []
    jobs: list[ImportJob] = []
    for line, row in enumerate(rows, start=2):
        raw_path = (row.get(path_column) or "").strip()
        if not raw_path:
            problems.append(ManifestError(csv_file, f"empty {path_column!r}", line=line))
            continue
        if label_column is not None:
            word = (row.get(label_column) or "").strip().lower()
            row_label = LABEL_WORDS.get(word)
            if row_label is None:
                problems.append(
                    ManifestError(
                        csv_file,
                        f"label {word!r} is not one of {sorted(LABEL_WORDS)}",
                        line=line,
                    )
                )
                continue
        else:
            row_label = label
        row_source = (row.get(source_column) or "").strip() if source_column else ""
        attrs: dict[str, Any] = {c: _coerce(row.get(c) or "") for c in attribute_columns}
        jobs.append(
            ImportJob(base / raw_path, row_label, row_source or source or csv_file.stem, attrs)
        )
    return run_import(dest, jobs, progress=progress, problems=problems)
