"""Importers for the folder layouts of the public datasets detectors are trained and tested on.

- GenImage (Zhu et al., NeurIPS 2023): ``<generator>/[...]/{train,val}/{ai,nature}/``;
- Synthbuster (Bammey 2023): one folder per generator, named after RAISE-1k photos, plus the
  RAISE reals the user downloads separately;
- ``real``/``fake`` trees such as WildRF and Chameleon: label folders at any depth, optional
  ``train``/``val``/``test`` folders, the other folders naming the source.

Each keeps the dataset's generator names (``source``, ``generator.model``) and splits, and
checks the whole tree before hashing a file: a media file where the layout has no place for
it stops the import with a one-line error naming that file, before anything is written. The
import itself goes through :func:`deepaudit.manifest_import.run_import` (staged, published
atomically, resumable).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from deepaudit.errors import DatasetLayoutError
from deepaudit.manifest import AttributeValue, GeneratorInfo, Label, Split
from deepaudit.manifest_import import (
    ImportJob,
    ImportReport,
    Progress,
    claims_media,
    iter_files,
    run_import,
)

__all__ = [
    "GENIMAGE_REAL_SOURCE",
    "RAISE_SOURCE",
    "import_genimage",
    "import_real_fake",
    "import_synthbuster",
]

logger = logging.getLogger(__name__)

GENIMAGE_REAL_SOURCE = "imagenet"
"""GenImage's ``nature`` images are ImageNet photographs."""
RAISE_SOURCE = "RAISE"

_GENIMAGE_SPLITS: dict[str, Split] = {"train": "train", "val": "test"}
_GENIMAGE_CLASSES: dict[str, Label] = {"ai": "synthetic", "nature": "real"}
_REAL_WORDS = {"real", "reals", "0_real", "nature", "authentic", "pristine"}
_FAKE_WORDS = {"fake", "fakes", "1_fake", "ai", "synthetic", "generated"}
_SPLIT_WORDS: dict[str, Split] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def _media_files(root: Path) -> Iterable[tuple[Path, tuple[str, ...]]]:
    """(file, its folders below ``root``) for every file that claims to be media."""
    for f in iter_files(root):
        if claims_media(f):
            yield f, f.relative_to(root).parts[:-1]


def import_genimage(
    folder: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """A GenImage tree: ``<generator>/[subset folder/]{train,val}/{ai,nature}/<files>``.

    ``ai`` files are synthetic with the top folder as generator (``ADM``, ``Midjourney``);
    ``nature`` files are real (source "imagenet"). Every item carries ``subset`` = that
    generator, so leave-one-generator-out folds drop the held-out subset's reals with its
    fakes. ``train`` stays train; ``val`` becomes test, because it is the set the GenImage
    paper reports on (its original name is kept in the ``genimage_split`` attribute). The
    folder of one generator (``train/`` and ``val/`` at its top) is read as that generator.
    """
    src = Path(folder)
    dest = Path(out) if out is not None else src
    jobs: list[ImportJob] = []
    for f, parts in _media_files(src):
        at = next(
            (
                i
                for i in range(len(parts) - 1)
                if parts[i] in _GENIMAGE_SPLITS and parts[i + 1] in _GENIMAGE_CLASSES
            ),
            None,
        )
        if at is None:
            raise DatasetLayoutError(
                f, "not under <generator>/{train,val}/{ai,nature}/ (the GenImage layout)"
            )
        generator = parts[0] if at > 0 else src.resolve().name
        label = _GENIMAGE_CLASSES[parts[at + 1]]
        attributes: dict[str, AttributeValue] = {
            "subset": generator,
            "genimage_split": parts[at],
        }
        if len(parts) > at + 2:
            attributes["subfolder"] = "/".join(parts[at + 2 :])
        jobs.append(
            ImportJob(
                f,
                label,
                generator if label == "synthetic" else GENIMAGE_REAL_SOURCE,
                attributes,
                generator=GeneratorInfo(model=generator) if label == "synthetic" else None,
                split=_GENIMAGE_SPLITS[parts[at]],
            )
        )
    if not jobs:
        raise DatasetLayoutError(src, "no media files under {train,val}/{ai,nature}/ folders")
    return run_import(dest, jobs, progress=progress)


def import_synthbuster(
    folder: str | os.PathLike[str],
    *,
    raise_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Synthbuster: one folder per generator (``dalle2``, ``midjourney-v5`` ...) of images
    named after the RAISE-1k photos their prompts describe, plus those RAISE photos.

    The reals come from ``raise_dir`` or, failing that, a folder under ``folder`` whose name
    starts with "raise" (any case); decode-able formats only (convert RAISE's NEF to TIFF or
    PNG first). Every item carries ``pair`` = the RAISE file stem, so ``manifest split
    --group-by pair`` keeps a photo and its synthetic versions in one split. Synthbuster is a
    test set: items have no split.
    """
    src = Path(folder)
    dest = Path(out) if out is not None else src
    reals = Path(raise_dir) if raise_dir is not None else None
    inside = [d for d in sorted(src.iterdir()) if d.is_dir() and d.name.lower().startswith("raise")]
    if reals is None and inside:
        reals = inside[0]
    jobs: list[ImportJob] = []
    skip = [d.resolve() for d in inside] + ([reals.resolve()] if reals is not None else [])
    for f, parts in _media_files(src):
        if any(f.resolve().is_relative_to(d) for d in skip):
            continue  # the reals, or a RAISE folder left beside the one given
        if not parts:
            raise DatasetLayoutError(
                f, "sits at the top of a Synthbuster folder; images belong in a generator folder"
            )
        generator = parts[0]
        jobs.append(
            ImportJob(
                f,
                "synthetic",
                generator,
                {"pair": f.stem},
                generator=GeneratorInfo(model=generator),
            )
        )
    if not jobs:
        raise DatasetLayoutError(src, "no generator folders with images (not a Synthbuster tree)")
    if reals is None:
        logger.warning(
            "%s: no RAISE folder given or found; importing the synthetic images only", src
        )
    else:
        real_files = [f for f, _ in _media_files(reals)]
        if not real_files:
            raise DatasetLayoutError(reals, "no RAISE images in this folder")
        jobs.extend(ImportJob(f, "real", RAISE_SOURCE, {"pair": f.stem}) for f in real_files)
    return run_import(dest, jobs, progress=progress)


def import_real_fake(
    folder: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """A tree with ``real``/``fake`` label folders at any depth (WildRF, Chameleon, ...).

    Label folders: real, 0_real, nature, authentic / fake, 1_fake, ai, synthetic, generated.
    A ``train``/``val``/``test`` folder on the way sets the split; the remaining folders name
    the source (``reddit``, ``twitter``; the root's name when there are none). Synthetic items
    get no generator (these datasets do not say which made them). A media file with no label
    folder above it, or with two, or with two split folders, is refused with its path.
    """
    src = Path(folder)
    dest = Path(out) if out is not None else src
    jobs: list[ImportJob] = []
    for f, parts in _media_files(src):
        lowered = [p.lower() for p in parts]
        labels = [i for i, p in enumerate(lowered) if p in _REAL_WORDS | _FAKE_WORDS]
        splits = [i for i, p in enumerate(lowered) if p in _SPLIT_WORDS]
        if not labels:
            raise DatasetLayoutError(f, "has no real/ or fake/ folder above it")
        if len({lowered[i] in _REAL_WORDS for i in labels}) > 1:
            raise DatasetLayoutError(f, "lies under both a real and a fake folder")
        if len({lowered[i] for i in splits}) > 1:
            raise DatasetLayoutError(f, "lies under two split folders")
        label: Label = "real" if lowered[labels[-1]] in _REAL_WORDS else "synthetic"
        split = _SPLIT_WORDS[lowered[splits[0]]] if splits else None
        first = labels[-1]
        source_parts = [p for i, p in enumerate(parts[:first]) if i not in splits]
        attributes: dict[str, AttributeValue] = {}
        if len(parts) > first + 1:
            attributes["subfolder"] = "/".join(parts[first + 1 :])
        jobs.append(
            ImportJob(
                f,
                label,
                "/".join(source_parts) or src.resolve().name,
                attributes,
                split=split,
            )
        )
    if not jobs:
        raise DatasetLayoutError(src, "no media files under real/ or fake/ folders")
    return run_import(dest, jobs, progress=progress)
