"""Importers for datasets that come as tables: Parquet / Hugging Face ``datasets`` files read
from disk, and DiffusionDB-style prompt tables joined to image folders.

- :func:`import_table`: rows holding an image (bytes, an HF ``Image`` struct, or a path) and a
  label, with optional generator, prompt and split columns. That is how Community Forensics
  and most datasets on the Hugging Face hub are published (``data/train-00000-of-00004.parquet``
  or a ``save_to_disk`` folder of ``.arrow`` files). Embedded images are written out once,
  byte for byte (their format is part of what a detector may learn, so it is kept), under
  ``OUT/files/<split>/``.
- :func:`import_prompt_table`: a table of prompts and sampling settings (DiffusionDB's
  ``metadata.parquet`` or its per-part ``part-000001.json``) joined by file name to the
  images on disk; every image becomes a synthetic item with its prompt, seed, steps,
  guidance and sampler in ``generator``.

Nothing is downloaded: tables are read with pyarrow from local files. A table without the
columns asked for stops the import with a one-line error before anything is written; a bad
row is reported with its number and skipped. Publishing goes through
:func:`deepaudit.manifest_import.run_import` (staged, atomic, resumable).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from deepaudit.errors import DatasetLayoutError, DeepauditError, DependencyError
from deepaudit.manifest import AttributeValue, GeneratorInfo, Label, Split
from deepaudit.manifest_import import (
    LABEL_WORDS,
    ImportJob,
    ImportReport,
    Progress,
    claims_media,
    iter_files,
    run_import,
)

__all__ = ["TABLE_SUFFIXES", "import_prompt_table", "import_table", "read_table_rows"]

logger = logging.getLogger(__name__)

TABLE_SUFFIXES = (".parquet", ".arrow")
_PROMPT_SUFFIXES = (*TABLE_SUFFIXES, ".json", ".jsonl", ".csv")
_SPLIT_WORDS: dict[str, Split] = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
_IMAGE_NAMES = ("image", "img", "image_data", "image_bytes", "path", "file", "file_name")
_GENERATOR_NAMES = ("generator", "model_name", "model", "generator_name")
# DiffusionDB's column names, then the short keys of its per-part JSON files
_PROMPT_KEYS = {
    "prompt": ("prompt", "p"),
    "seed": ("seed", "se"),
    "steps": ("step", "steps", "st"),
    "guidance": ("cfg", "guidance", "guidance_scale", "c"),
    "sampler": ("sampler", "sa"),
    "negative_prompt": ("negative_prompt",),
}


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:  # pragma: no cover - pyarrow comes with mlflow
        raise DependencyError(
            "reading Parquet/Arrow tables needs pyarrow: pip install pyarrow"
        ) from exc
    return pyarrow


def _table_files(path: Path, suffixes: Sequence[str]) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DatasetLayoutError(path, "no such file or folder")
    files = [f for f in iter_files(path) if f.suffix.lower() in suffixes]
    if not files:
        raise DatasetLayoutError(path, f"no table files ({', '.join(suffixes)}) in this folder")
    return files


def _arrow_batches(file: Path, *, schema_only: bool = False) -> Any:
    """(schema, iterator of record batches) of a Parquet or Arrow file, read batch by batch
    so a shard of embedded images is never held whole in memory."""
    pa = _pyarrow()
    try:
        if file.suffix.lower() == ".parquet":
            pf = pa.parquet.ParquetFile(file)
            return pf.schema_arrow, (iter(()) if schema_only else pf.iter_batches(batch_size=256))
        source = pa.memory_map(str(file))
        try:
            reader = pa.ipc.open_stream(source)  # what datasets.save_to_disk writes
            batches = iter(reader)
        except pa.ArrowInvalid:
            source.seek(0)
            reader = pa.ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        return reader.schema, batches
    except (OSError, pa.ArrowException) as exc:
        raise DatasetLayoutError(file, f"cannot read as a table ({exc})") from exc


def _arrow_rows(file: Path) -> Iterator[dict[str, Any]]:
    pa = _pyarrow()
    _, batches = _arrow_batches(file)
    try:
        for batch in batches:
            yield from batch.to_pylist()
    except (OSError, pa.ArrowException) as exc:
        raise DatasetLayoutError(file, f"cannot read as a table ({exc})") from exc


def _class_names(schema: Any, file: Path, column: str) -> list[str] | None:
    """A ``datasets`` ClassLabel's names (label 0 = names[0] ...), from the schema or the
    ``dataset_info.json`` that ``save_to_disk`` writes beside its ``.arrow`` files."""
    infos = []
    meta = schema.metadata or {}
    if b"huggingface" in meta:
        infos.append(json.loads(meta[b"huggingface"]).get("info", {}))
    beside = file.parent / "dataset_info.json"
    if beside.is_file():
        infos.append(json.loads(beside.read_text()))
    for info in infos:
        feature = (info.get("features") or {}).get(column) or {}
        if isinstance(feature.get("names"), list):
            return [str(n) for n in feature["names"]]
    return None


def read_table_rows(file: str | os.PathLike[str]) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """(column names, rows as dicts) of a Parquet, Arrow, JSON, JSON Lines or CSV table.

    A JSON object of objects (DiffusionDB's ``part-000001.json``: image name → settings)
    gives one row per key, the key in ``image_name``.
    """
    f = Path(file)
    suffix = f.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        schema, _ = _arrow_batches(f, schema_only=True)
        return list(schema.names), _arrow_rows(f)
    try:
        if suffix == ".csv":
            with open(f, newline="", encoding="utf-8-sig") as fh:
                rows = list(csv.DictReader(fh))
        elif suffix == ".jsonl":
            with open(f, encoding="utf-8") as fh:
                rows = [json.loads(line) for line in fh if line.strip()]
        else:
            data = json.loads(f.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                rows = [{"image_name": k, **v} for k, v in data.items() if isinstance(v, dict)]
            elif isinstance(data, list):
                rows = data
            else:
                raise DatasetLayoutError(f, "JSON must hold a list of rows or an object of rows")
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise DatasetLayoutError(f, f"cannot read as a table ({exc})") from exc
    rows = [r for r in rows if isinstance(r, dict)]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return columns, iter(rows)


def _split_of(file: Path, root: Path) -> Split | None:
    """``train-00000-of-00004.parquet``, ``test/data-00000-of-00001.arrow``, ``val/x.parquet``."""
    head = file.name.split("-")[0].split("_")[0].split(".")[0].lower()
    if head in _SPLIT_WORDS:
        return _SPLIT_WORDS[head]
    for part in reversed(file.relative_to(root).parts[:-1] if root.is_dir() else ()):
        if part.lower() in _SPLIT_WORDS:
            return _SPLIT_WORDS[part.lower()]
    return None


def _label_of(value: Any, names: list[str] | None) -> Label | None:
    if isinstance(value, bool):
        return "synthetic" if value else "real"
    if isinstance(value, int) and names is not None and 0 <= value < len(names):
        value = names[value]
    return LABEL_WORDS.get(str(value).strip().lower()) if value is not None else None


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _attributes(row: Mapping[str, Any], reserved: set[str | None]) -> dict[str, AttributeValue]:
    """A row's scalar columns; NaN and infinity (JSON has neither) become null."""
    out: dict[str, AttributeValue] = {}
    for k, v in row.items():
        if k in reserved or not _scalar(v):
            continue
        out[k] = None if isinstance(v, float) and not math.isfinite(v) else v
    return out


def _pick(columns: Sequence[str], wanted: str | None, guesses: Sequence[str]) -> str | None:
    if wanted is not None:
        return wanted
    lowered = {c.lower(): c for c in columns}
    return next((lowered[g] for g in guesses if g in lowered), None)


def _write_bytes(data: bytes, target: Path) -> None:
    if target.is_file() and target.stat().st_size == len(data):
        return  # written by an earlier, interrupted run
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def _extension(data: bytes) -> str | None:
    from deepaudit.media_formats import IMAGE_FORMATS, sniff_bytes

    guess = sniff_bytes(data[:4096])
    entry = IMAGE_FORMATS.get(guess.format) if guess.kind == "image" else None
    return entry[1][0] if entry else None


def import_table(
    table: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    image_column: str | None = None,
    label_column: str | None = None,
    label: Label | None = None,
    generator_column: str | None = None,
    prompt_column: str | None = None,
    split_column: str | None = None,
    root: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Rows of Parquet/Arrow tables (a file, or every one under a folder) as manifest items.

    Columns are guessed when not named: the image is an HF ``Image`` struct, a binary column
    or a path column (``image``, ``path``, ``file_name`` ...), resolved against ``root``
    (default: the table's folder); the label ``label`` (0/1, real/fake, a ClassLabel's
    names, or a boolean "is fake"); the generator ``generator``/``model_name``/``model``;
    the prompt ``prompt``. The split comes from ``split_column``, else from the file's name
    or folder (``train-0000.parquet``, ``test/``). Other scalar columns become attributes.
    """
    src = Path(table)
    dest = Path(out)
    if label is not None and label not in ("real", "synthetic"):
        raise ValueError(f"label must be 'real' or 'synthetic', got {label!r}")
    files = _table_files(src, TABLE_SUFFIXES)
    plans = []
    for f in files:  # check every table's columns before writing anything
        schema, _ = _arrow_batches(f, schema_only=True)
        columns = list(schema.names)
        img = _pick(columns, image_column, _IMAGE_NAMES) or next(
            (
                c
                for c in columns
                if str(schema.field(c).type) in ("binary", "large_binary")
                or "bytes" in str(schema.field(c).type)
            ),
            None,
        )
        lab = None if label is not None else _pick(columns, label_column, ("label", "is_fake"))
        gen = _pick(columns, generator_column, _GENERATOR_NAMES)
        prompt = _pick(columns, prompt_column, ("prompt", "caption"))
        for name, what in ((img, "image"), (lab, "label"), (split_column, "split")):
            if name is not None and name not in columns:
                raise DatasetLayoutError(
                    f, f"no {what} column {name!r}; the columns are {', '.join(columns)}"
                )
        if img is None:
            raise DatasetLayoutError(
                f, f"no image column found (give image_column); columns: {', '.join(columns)}"
            )
        if lab is None and label is None:
            raise DatasetLayoutError(
                f,
                f"no label column found (give label_column or label); columns {', '.join(columns)}",
            )
        plans.append((f, schema, img, lab, gen, prompt))
    base = Path(root) if root is not None else None
    jobs: list[ImportJob] = []
    problems: list[DeepauditError] = []
    for f, schema, img, lab, gen, prompt in plans:
        names = _class_names(schema, f, lab) if lab else None
        file_split = _split_of(f, src)
        reserved = {img, lab, gen, prompt, split_column}
        for row_no, row in enumerate(_arrow_rows(f)):
            where = f"{f}: row {row_no}"
            row_label = label or _label_of(row.get(lab), names)
            if row_label is None:
                problems.append(
                    DatasetLayoutError(where, f"label {row.get(lab)!r} is not real/fake or 0/1")
                )
                continue
            split = file_split
            if split_column is not None:
                split = _SPLIT_WORDS.get(str(row.get(split_column) or "").lower())
            value = row.get(img)
            raw: bytes | None = None
            path_text: str | None = None
            if isinstance(value, dict):
                raw, path_text = value.get("bytes"), value.get("path")
            elif isinstance(value, bytes):
                raw = value
            elif isinstance(value, str):
                path_text = value
            if raw:
                ext = _extension(raw)
                if ext is None:
                    problems.append(DatasetLayoutError(where, "the image bytes are not an image"))
                    continue
                file = dest / "files" / (split or "all") / f"{f.stem}-{row_no:07d}{ext}"
                _write_bytes(raw, file)
            elif path_text:
                file = (base or f.parent) / path_text
            else:
                problems.append(DatasetLayoutError(where, f"column {img!r} holds no image"))
                continue
            attributes = _attributes(row, reserved)
            if path_text and raw:
                attributes["original_name"] = Path(path_text).name
            generator_name = str(row.get(gen) or "").strip() if gen else ""
            text = row.get(prompt) if prompt else None
            info = None
            if row_label == "synthetic":
                info = GeneratorInfo(
                    model=generator_name or f.parent.name or "unknown",
                    prompt=text if isinstance(text, str) else None,
                )
            elif isinstance(text, str):
                attributes["caption"] = text
            source = generator_name or (f.parent.resolve().name if row_label == "real" else "")
            jobs.append(
                ImportJob(
                    file,
                    row_label,
                    source or "unknown",
                    attributes,
                    generator=info,
                    split=split,
                )
            )
    return run_import(dest, jobs, progress=progress, problems=problems)


def _first(row: Mapping[str, Any], keys: Sequence[str]) -> Any:
    return next((row[k] for k in keys if row.get(k) is not None), None)


def _number(value: Any, kind: type) -> Any:
    try:
        number = kind(value) if value not in (None, "") else None
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number is None or math.isfinite(number) else None


def import_prompt_table(
    tables: Sequence[str | os.PathLike[str]],
    *,
    images: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    name_column: str = "image_name",
    model: str | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Images under ``images`` joined by file name to rows of prompt tables (DiffusionDB).

    ``tables``: Parquet/Arrow/JSON/JSONL/CSV files or folders of them (DiffusionDB's
    ``metadata.parquet``, or its ``part-*/part-*.json``). Each image becomes a synthetic item
    whose ``generator`` holds the row's prompt, seed, steps (``step``), guidance (``cfg``) and
    sampler; the model is ``model``, else the row's ``model`` column, else
    "stable-diffusion" (what DiffusionDB was made with). Other scalar columns become
    attributes. Rows whose image is not on disk (a partial download) are counted in
    ``absent``; an image with no row is reported as a problem.
    """
    img_root = Path(images)
    if not img_root.is_dir():
        raise DatasetLayoutError(img_root, "is not a folder of images")
    rows: dict[str, dict[str, Any]] = {}
    for t in tables:
        for f in _table_files(Path(t), _PROMPT_SUFFIXES):
            columns, it = read_table_rows(f)
            if name_column not in columns:
                raise DatasetLayoutError(
                    f, f"no column {name_column!r} to join on; the columns are {', '.join(columns)}"
                )
            for row in it:
                name = str(row.get(name_column) or "").strip()
                if name:
                    rows.setdefault(name, row)
    if not rows:
        raise DatasetLayoutError(Path(tables[0]) if tables else img_root, "the tables hold no rows")
    by_stem = {Path(n).stem: n for n in rows}
    reserved = {name_column, "model", *(k for keys in _PROMPT_KEYS.values() for k in keys)}
    jobs: list[ImportJob] = []
    problems: list[DeepauditError] = []
    matched: set[str] = set()
    for f in iter_files(img_root):
        if not claims_media(f):
            continue
        key = f.name if f.name in rows else by_stem.get(f.stem)
        if key is None:
            problems.append(
                DatasetLayoutError(f, f"no row for this image in the table(s) ({name_column})")
            )
            continue
        matched.add(key)
        row = rows[key]
        prompt = _first(row, _PROMPT_KEYS["prompt"])
        negative = _first(row, _PROMPT_KEYS["negative_prompt"])
        sampler = _first(row, _PROMPT_KEYS["sampler"])
        name = model or str(row.get("model") or "stable-diffusion")
        info = GeneratorInfo(
            model=name,
            sampler=str(sampler) if sampler is not None else None,
            steps=_number(_first(row, _PROMPT_KEYS["steps"]), int),
            guidance=_number(_first(row, _PROMPT_KEYS["guidance"]), float),
            seed=_number(_first(row, _PROMPT_KEYS["seed"]), int),
            prompt=str(prompt) if prompt is not None else None,
            negative_prompt=str(negative) if negative is not None else None,
        )
        attributes = _attributes(row, reserved)
        jobs.append(ImportJob(f, "synthetic", name, attributes, generator=info))
    if not jobs and problems:
        raise DatasetLayoutError(
            img_root, f"no image matches a row of the table(s) by {name_column}"
        )
    dest = Path(out) if out is not None else img_root
    report = run_import(dest, jobs, progress=progress, problems=problems)
    return replace(report, absent=len(rows) - len(matched))
