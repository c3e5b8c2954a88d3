"""Splits that test generalisation to generators a detector has not seen.

- leave-one-generator-out: train on every generator but one, test on the one left out;
- train on older, test on newer (AI-GenBench's protocol): generators released before a
  cut-off date train, those released on or after it are only tested.

Both hold out a set of generators. A fold keeps the manifest's own splits where it has them
(GenImage's train/test) and drops the training part of what it holds out, so a held-out
generator is never seen in training; items with no split get one by the usual hash (held-out
ones all go to test). An item's generator is its ``source`` for synthetic items; a real item
belongs to a generator only through an attribute (``subset``: GenImage's reals come with the
generator whose folder they sit in) and is otherwise shared by every fold.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from collections.abc import Collection, Mapping
from dataclasses import replace
from pathlib import Path

from deepaudit.errors import ManifestError
from deepaudit.manifest import Manifest, ManifestItem, assign_split

__all__ = [
    "REAL_GROUP",
    "RELEASE_DATE",
    "generators_of",
    "hold_out",
    "leave_one_out",
    "newer_than",
    "parse_release_date",
    "read_release_dates",
]

REAL_GROUP = "subset"
"""Attribute that ties a real item to a generator's subset (GenImage's ``nature`` folders)."""
RELEASE_DATE = "release_date"
"""Attribute holding a generator's release date (ISO: 2022-08-22, 2022-08 or 2022)."""


def _generator(item: ManifestItem, real_group: str | None) -> str | None:
    if item.label == "synthetic":
        return item.source
    value = item.attributes.get(real_group) if real_group else None
    return str(value) if value is not None else None


def generators_of(manifest: Manifest) -> list[str]:
    """The generators of a manifest's synthetic items, sorted."""
    return sorted({i.source for i in manifest if i.label == "synthetic"})


def hold_out(
    manifest: Manifest,
    held_out: Collection[str],
    *,
    real_group: str | None = REAL_GROUP,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: str = "deepaudit",
) -> Manifest:
    """The fold that never trains on ``held_out`` generators (see the module docstring)."""
    known = generators_of(manifest)
    unknown = sorted(set(held_out) - set(known))
    if unknown:
        raise ValueError(f"no synthetic items from {unknown}; the generators are {known}")
    if set(held_out) >= set(known):
        raise ValueError("every generator is held out: nothing would be left to train on")
    out = []
    for item in manifest:
        held = _generator(item, real_group) in held_out
        if held:
            if item.split in ("train", "val"):
                continue  # never seen in training
            out.append(replace(item, split="test"))
        elif item.split is None:
            out.append(replace(item, split=assign_split(item.id, ratios=ratios, seed=seed)))
        else:
            out.append(item)
    return Manifest(manifest.root, out)


def leave_one_out(
    manifest: Manifest,
    *,
    real_group: str | None = REAL_GROUP,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: str = "deepaudit",
) -> dict[str, Manifest]:
    """One fold per generator, keyed by the generator it holds out."""
    return {
        g: hold_out(manifest, {g}, real_group=real_group, ratios=ratios, seed=seed)
        for g in generators_of(manifest)
    }


def parse_release_date(text: object) -> dt.date:
    """``2022-08-22``, ``2022-08`` (the 1st) or ``2022`` (1 January); ValueError otherwise."""
    s = str(text).strip()
    parts = s.split("-")
    try:
        if len(parts) == 1:
            return dt.date(int(parts[0]), 1, 1)
        if len(parts) == 2:
            return dt.date(int(parts[0]), int(parts[1]), 1)
        return dt.date.fromisoformat(s)
    except ValueError:
        raise ValueError(f"release date {s!r} is not YYYY-MM-DD, YYYY-MM or YYYY") from None


def read_release_dates(path: str | os.PathLike[str]) -> dict[str, dt.date]:
    """Generator → release date from a JSON object or a CSV (generator, release_date)."""
    p = Path(path)
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ManifestError(p, "must hold a JSON object: generator -> release date")
            pairs = list(data.items())
        else:
            with open(p, newline="", encoding="utf-8-sig") as fh:
                rows = list(csv.reader(fh))
            if rows and rows[0] and not rows[0][-1][:1].isdigit():
                rows = rows[1:]  # a header
            pairs = [(r[0], r[1]) for r in rows if len(r) >= 2]
    except FileNotFoundError as exc:
        raise ManifestError(p, "no such release-date file") from exc
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise ManifestError(p, f"cannot read release dates ({exc})") from exc
    out: dict[str, dt.date] = {}
    for number, (name, date) in enumerate(pairs, start=1):
        try:
            out[str(name).strip()] = parse_release_date(date)
        except ValueError as exc:
            raise ManifestError(p, f"entry {number} ({name}): {exc}") from None
    return out


def newer_than(
    manifest: Manifest,
    cutoff: str | dt.date,
    *,
    dates: Mapping[str, dt.date] | None = None,
    real_group: str | None = REAL_GROUP,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: str = "deepaudit",
) -> Manifest:
    """Train on generators released before ``cutoff``, test on those released on or after.

    Dates come from ``dates`` (generator → date) or else each synthetic item's
    ``release_date`` attribute; they are written into the fold's synthetic items (and the
    reals of a generator's subset) so ``detectors evaluate`` can order its report by them.
    """
    when = cutoff if isinstance(cutoff, dt.date) else parse_release_date(cutoff)
    known: dict[str, dt.date] = dict(dates or {})
    for item in manifest:
        if item.label == "synthetic" and item.source not in known:
            value = item.attributes.get(RELEASE_DATE)
            if value is not None:
                try:
                    known[item.source] = parse_release_date(value)
                except ValueError as exc:
                    raise ManifestError(manifest.path, f"item {item.id!r}: {exc}") from None
    missing = [g for g in generators_of(manifest) if g not in known]
    if missing:
        raise ManifestError(
            manifest.path,
            f"no release date for generator(s) {missing}: give a dates file or set the "
            f"{RELEASE_DATE!r} attribute",
        )
    held = {g for g in generators_of(manifest) if known[g] >= when}
    if not held:
        raise ValueError(f"no generator was released on or after {when.isoformat()}")
    fold = hold_out(manifest, held, real_group=real_group, ratios=ratios, seed=seed)
    dated = []
    for item in fold:
        g = _generator(item, real_group)
        if g in known:
            attrs = {**item.attributes, RELEASE_DATE: known[g].isoformat()}
            item = replace(item, attributes=attrs)
        dated.append(item)
    return Manifest(fold.root, dated)
