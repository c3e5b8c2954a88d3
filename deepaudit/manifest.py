"""The dataset manifest: a folder of media files plus ``manifest.jsonl``, one item per line.

The format is the contract between generators, detectors and the audit layer (see
docs/manifest.md). Writers append and flush each line, so an interrupted writer loses at
most the line in flight and a rerun resumes by skipping ids already present.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from deepaudit.errors import ManifestError

__all__ = [
    "LABELS",
    "MANIFEST_NAME",
    "SPLITS",
    "GeneratorInfo",
    "Manifest",
    "ManifestItem",
    "ManifestProblem",
    "ManifestWriter",
    "assign_split",
    "read_manifest",
    "validate_manifest",
]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"
Label = Literal["real", "synthetic"]
Split = Literal["train", "val", "test"]
Kind = Literal["image", "video"]
LABELS: tuple[str, ...] = ("real", "synthetic")
SPLITS: tuple[str, ...] = ("train", "val", "test")
KINDS: tuple[str, ...] = ("image", "video")
AttributeValue = str | int | float | bool | None

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class GeneratorInfo:
    """How a synthetic item was made; enough to make it again."""

    model: str
    sampler: str | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["params"] = dict(self.params)
        return out

    @classmethod
    def from_json(cls, data: Any) -> GeneratorInfo:
        if not isinstance(data, dict):
            raise ValueError(f"'generator' must be an object or null, got {_type(data)}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"'generator' has unknown keys {sorted(unknown)}; put them in params")
        if not isinstance(data.get("model"), str) or not data["model"]:
            raise ValueError("'generator.model' must be a non-empty string")
        for key in ("steps", "seed"):
            if data.get(key) is not None and not _is_int(data[key]):
                raise ValueError(f"'generator.{key}' must be an integer, got {data[key]!r}")
        if data.get("guidance") is not None and not _is_number(data["guidance"]):
            raise ValueError(f"'generator.guidance' must be a number, got {data['guidance']!r}")
        for key in ("sampler", "prompt", "negative_prompt"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise ValueError(f"'generator.{key}' must be a string, got {_type(data[key])}")
        params = data.get("params") or {}
        if not isinstance(params, dict):
            raise ValueError("'generator.params' must be an object")
        return cls(**{**data, "params": params})


@dataclass(frozen=True)
class ManifestItem:
    """One media file of a dataset; ``path`` is relative to the manifest's folder."""

    id: str
    path: str
    sha256: str
    kind: Kind
    label: Label
    source: str
    generator: GeneratorInfo | None = None
    split: Split | None = None
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    fps: float | None = None
    transforms: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)  # unknown keys, kept on rewrite

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", MappingProxyType(dict(self.attributes)))
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))
        object.__setattr__(self, "transforms", tuple(self.transforms))
        _check_item(self)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "path": self.path,
            "sha256": self.sha256,
            "kind": self.kind,
            "label": self.label,
            "source": self.source,
            "generator": self.generator.to_json() if self.generator else None,
            "split": self.split,
            "attributes": dict(self.attributes),
            "width": self.width,
            "height": self.height,
            "frames": self.frames,
            "fps": self.fps,
            "transforms": list(self.transforms),
        }
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    @classmethod
    def from_json(cls, data: Any) -> ManifestItem:
        """Build an item from a decoded JSON object; ValueError says what is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"a line must hold a JSON object, got {_type(data)}")
        missing = [k for k in ("id", "path", "sha256", "kind", "label", "source") if k not in data]
        if missing:
            raise ValueError(f"missing required key(s) {', '.join(map(repr, missing))}")
        known = {f.name for f in fields(cls)} - {"extra"}
        gen = data.get("generator")
        transforms = data.get("transforms") or []
        if not isinstance(transforms, list):
            raise ValueError(f"'transforms' must be a list, got {_type(transforms)}")
        attributes = data.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise ValueError(f"'attributes' must be an object, got {_type(attributes)}")
        return cls(
            **{k: data[k] for k in known if k in data and k not in _SPECIAL},
            generator=GeneratorInfo.from_json(gen) if gen is not None else None,
            attributes=attributes,
            transforms=tuple(transforms),
            extra={k: v for k, v in data.items() if k not in known},
        )


_SPECIAL = {"generator", "attributes", "transforms"}


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _check_item(item: ManifestItem) -> None:
    def need(cond: bool, message: str) -> None:
        if not cond:
            raise ValueError(message)

    for key in ("id", "path", "source"):
        value = getattr(item, key)
        need(isinstance(value, str) and value != "", f"'{key}' must be a non-empty string")
    need(
        not os.path.isabs(item.path) and not item.path.startswith(("/", "\\")),
        f"'path' must be relative to the manifest's folder, got {item.path!r}",
    )
    need(
        isinstance(item.sha256, str) and bool(_SHA256.match(item.sha256)),
        f"'sha256' must be 64 lowercase hex digits, got {item.sha256!r}",
    )
    need(item.kind in KINDS, f"'kind' must be one of {KINDS}, got {item.kind!r}")
    need(item.label in LABELS, f"'label' must be one of {LABELS}, got {item.label!r}")
    need(
        item.split is None or item.split in SPLITS,
        f"'split' must be one of {SPLITS} or null, got {item.split!r}",
    )
    need(
        item.generator is None or isinstance(item.generator, GeneratorInfo),
        "'generator' must be a GeneratorInfo or null",
    )
    need(
        not (item.label == "real" and item.generator is not None),
        "a real item cannot have a 'generator' (it must be null)",
    )
    for key, value in item.attributes.items():
        need(
            value is None or isinstance(value, str | int | float | bool),
            f"attribute {key!r} must be a string, number, boolean or null, got {_type(value)}",
        )
    for key in ("width", "height", "frames"):
        value = getattr(item, key)
        need(
            value is None or (_is_int(value) and value > 0),
            f"'{key}' must be a positive integer or null, got {value!r}",
        )
    need(
        item.fps is None or (_is_number(item.fps) and item.fps > 0),
        f"'fps' must be a positive number or null, got {item.fps!r}",
    )
    need(all(isinstance(t, str) for t in item.transforms), "'transforms' must be a list of strings")


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ManifestProblem:
    """One thing wrong in a manifest: where (1-based line, or None for the whole file) and what."""

    line: int | None
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "manifest"
        return f"{where}: {self.severity}: {self.message}"


def manifest_path(path: str | os.PathLike[str]) -> Path:
    """Accept a manifest folder or its ``manifest.jsonl`` and return the file's path."""
    p = Path(path)
    return p / MANIFEST_NAME if p.is_dir() or not p.suffix else p


def _iter_lines(path: Path) -> Iterator[tuple[int, str | None, bool]]:
    """Yield (line number, text or None if not UTF-8, ends with newline) for every line."""
    try:
        with open(path, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                # Decode line by line: a bad byte (or a character cut by a killed writer)
                # spoils one line, reported with its number, not the whole file.
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    text = None
                yield number, text, raw.endswith(b"\n")
    except FileNotFoundError as exc:
        raise ManifestError(path, "no such manifest file") from exc
    except OSError as exc:
        raise ManifestError(path, f"cannot read: {exc.strerror or exc}") from exc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a manifest")


def _parse(path: Path) -> Iterator[tuple[int, ManifestItem | None, ManifestProblem | None]]:
    seen: dict[str, int] = {}
    for number, line, complete in _iter_lines(path):
        if line is not None and not line.strip():
            continue
        try:
            if line is None:
                raise ValueError("not UTF-8 text")
            data = json.loads(line, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            if not complete:
                yield (
                    number,
                    None,
                    ManifestProblem(
                        number, "incomplete last line (an interrupted write?); ignored", "warning"
                    ),
                )
            else:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)[:120]
                yield number, None, ManifestProblem(number, f"not valid JSON ({reason})")
            continue
        try:
            item = ManifestItem.from_json(data)
        except (ValueError, TypeError) as exc:
            yield number, None, ManifestProblem(number, str(exc))
            continue
        if item.id in seen:
            yield (
                number,
                None,
                ManifestProblem(
                    number, f"duplicate id {item.id!r} (first on line {seen[item.id]})"
                ),
            )
            continue
        seen[item.id] = number
        yield number, item, None


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read a manifest (its folder or its file); the first bad line raises ManifestError."""
    file = manifest_path(path)
    items = []
    for number, item, problem in _parse(file):
        if problem is not None:
            if problem.severity == "warning":
                logger.warning("%s:%d: %s", file, number, problem.message)
                continue
            raise ManifestError(file, problem.message, line=number)
        items.append(item)
    return Manifest(file.parent, items)


def validate_manifest(
    path: str | os.PathLike[str], *, check_files: bool = False, check_hashes: bool = False
) -> list[ManifestProblem]:
    """Every problem of a manifest, each with its line; optionally check files and hashes."""
    file = manifest_path(path)
    problems: list[ManifestProblem] = []
    root = file.parent
    for number, item, problem in _parse(file):
        if problem is not None:
            problems.append(problem)
            continue
        if not (check_files or check_hashes):
            continue
        target = root / item.path
        if not target.is_file():
            problems.append(ManifestProblem(number, f"file {item.path!r} does not exist"))
        elif check_hashes:
            from deepaudit.media import file_sha256

            actual = file_sha256(target)
            if actual != item.sha256:
                problems.append(
                    ManifestProblem(
                        number,
                        f"file {item.path!r} has sha256 {actual[:12]}…, manifest says "
                        f"{item.sha256[:12]}… (changed since it was recorded)",
                    )
                )
    return problems


# --------------------------------------------------------------------------- splits


def assign_split(
    key: str,
    *,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: str = "deepaudit",
) -> Split:
    """train/val/test from a hash of ``key``: the same key always lands in the same split."""
    if len(ratios) != 3 or not all(math.isfinite(r) and r >= 0 for r in ratios) or sum(ratios) <= 0:
        raise ValueError(f"ratios must be three non-negative numbers (train, val, test): {ratios}")
    total = float(sum(ratios))
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    edge = 0.0
    for name, ratio in zip(SPLITS, ratios, strict=True):
        edge += ratio / total
        if u < edge:
            return name  # type: ignore[return-value]
    return "test"


# --------------------------------------------------------------------------- the manifest


@dataclass(frozen=True)
class DatasetSummary:
    """Counts of a manifest's items along the axes people ask about first."""

    items: int
    by_label: Mapping[str, int]
    by_kind: Mapping[str, int]
    by_split: Mapping[str, int]
    by_source: Mapping[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "by_label": dict(self.by_label),
            "by_kind": dict(self.by_kind),
            "by_split": dict(self.by_split),
            "by_source": dict(self.by_source),
        }


def _matches(value: Any, wanted: str | Collection[str] | None) -> bool:
    if wanted is None:
        return True
    if isinstance(wanted, str):
        return value == wanted
    return value in wanted


class Manifest:
    """The items of a dataset folder, in file order; immutable (methods return new ones)."""

    def __init__(self, root: str | os.PathLike[str], items: Iterable[ManifestItem]) -> None:
        self.root = Path(root)
        self.items: tuple[ManifestItem, ...] = tuple(items)
        self._by_id = {item.id: item for item in self.items}
        if len(self._by_id) != len(self.items):
            dupes = [k for k, n in Counter(i.id for i in self.items).items() if n > 1]
            raise ManifestError(self.path, f"duplicate ids: {dupes[:5]}")

    @property
    def path(self) -> Path:
        return self.root / MANIFEST_NAME

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ManifestItem]:
        return iter(self.items)

    def __getitem__(self, index: int) -> ManifestItem:
        return self.items[index]

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._by_id

    def __repr__(self) -> str:
        return f"Manifest(root={str(self.root)!r}, items={len(self)})"

    def get(self, item_id: str) -> ManifestItem:
        try:
            return self._by_id[item_id]
        except KeyError:
            raise KeyError(f"no item with id {item_id!r} in {self.path}") from None

    def resolve(self, item: ManifestItem) -> Path:
        """The file of an item on disk."""
        return self.root / item.path

    def filter(
        self,
        *,
        label: str | Collection[str] | None = None,
        kind: str | Collection[str] | None = None,
        split: str | Collection[str] | None = None,
        source: str | Collection[str] | None = None,
        generator: str | Collection[str] | None = None,
        sampler: str | Collection[str] | None = None,
        attributes: Mapping[str, Any] | None = None,
        where: Callable[[ManifestItem], bool] | None = None,
    ) -> Manifest:
        """Items matching every given condition; a collection means "any of these".

        ``generator`` matches the item's source or its generator's model name; attribute
        values are compared as strings, so ``{"gender": "1"}`` matches 1 and "1".
        """

        def keep(item: ManifestItem) -> bool:
            if not (
                _matches(item.label, label)
                and _matches(item.kind, kind)
                and _matches(item.split, split)
                and _matches(item.source, source)
            ):
                return False
            if generator is not None:
                model = item.generator.model if item.generator else None
                if not (_matches(item.source, generator) or _matches(model, generator)):
                    return False
            if sampler is not None and (
                item.generator is None or not _matches(item.generator.sampler, sampler)
            ):
                return False
            for key, wanted in (attributes or {}).items():
                have = item.attributes.get(key)
                wanted_set = (
                    {str(w) for w in wanted}
                    if isinstance(wanted, list | tuple | set | frozenset)
                    else {str(wanted)}
                )
                if have is None or str(have) not in wanted_set:
                    return False
            return where is None or bool(where(item))

        return Manifest(self.root, [i for i in self.items if keep(i)])

    def with_splits(
        self,
        *,
        ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
        seed: str = "deepaudit",
        group_by: str | None = None,
        overwrite: bool = False,
    ) -> Manifest:
        """Assign train/val/test by a hash of each id (or of an attribute, to keep groups whole).

        ``group_by`` names an attribute, or a top-level key of the items such as ``pair``
        (a real photo and its synthetic twins, see generators.twins). Items that already have
        a split keep it unless ``overwrite``. Adding items later never moves existing ones.

        In a mixed dataset some items lack the attribute (``subject`` is on personalised
        items and their subject's photos only): such an item goes with its ``pair`` (a real
        photo and its twins stay together) or, without one, alone (by its id). Items linked
        by ``pair`` to an item with the attribute follow that item's group. No item with the
        attribute at all is an error (a misspelt name would otherwise split by id).
        """
        keys = self._group_keys(group_by) if group_by is not None else {}
        out = []
        for item in self.items:
            if item.split is not None and not overwrite:
                out.append(item)
                continue
            key = keys.get(item.id, item.id)
            out.append(replace(item, split=assign_split(key, ratios=ratios, seed=seed)))
        return Manifest(self.root, out)

    def _group_keys(self, group_by: str) -> dict[str, str]:
        """Each item's group key: ``group_by=value``, else its pair's (see with_splits)."""

        def own(item: ManifestItem) -> Any:
            return item.attributes.get(group_by, item.extra.get(group_by))

        if not any(own(i) is not None for i in self.items):
            raise ManifestError(self.path, f"no item has the attribute {group_by!r} to group by")
        by_pair: dict[str, str] = {}  # pair -> the group of a member that has the attribute
        for item in self.items:
            pair, value = item.extra.get("pair"), own(item)
            if pair is not None and value is not None:
                by_pair.setdefault(str(pair), f"{group_by}={value}")
        keys = {}
        for item in self.items:
            value, pair = own(item), item.extra.get("pair")
            if value is not None:
                keys[item.id] = f"{group_by}={value}"
            elif pair is not None:
                keys[item.id] = by_pair.get(str(pair), f"pair={pair}")
        return keys

    def rebased(self, root: str | os.PathLike[str]) -> Manifest:
        """The same items with paths made relative to another folder (for writing there)."""
        new_root = Path(root)
        out = []
        for item in self.items:
            target = os.path.relpath(self.resolve(item).resolve(), new_root.resolve())
            out.append(replace(item, path=Path(target).as_posix()))
        return Manifest(new_root, out)

    def summary(self) -> DatasetSummary:
        return DatasetSummary(
            items=len(self.items),
            by_label=dict(Counter(i.label for i in self.items)),
            by_kind=dict(Counter(i.kind for i in self.items)),
            by_split=dict(Counter(i.split or "none" for i in self.items)),
            by_source=dict(Counter(i.source for i in self.items).most_common()),
        )

    def write(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the whole manifest at once (atomically replacing the file)."""
        file = manifest_path(path) if path is not None else self.path
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.tmp{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as fh:
            for item in self.items:
                fh.write(_dump(item))
        os.replace(tmp, file)
        return file


def _dump(item: ManifestItem) -> str:
    return json.dumps(item.to_json(), ensure_ascii=False, allow_nan=False) + "\n"


# --------------------------------------------------------------------------- writing


class ManifestWriter:
    """Append items to a manifest, one flushed line each; resumes an existing manifest.

    Opening drops an incomplete last line left by a killed writer. ``ids`` holds every id
    already written, so a resumed job can skip them.
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.root = Path(root)
        self.path = self.root / MANIFEST_NAME
        self.fsync = fsync
        self.ids: set[str] = set()
        self._fh = None

    def __enter__(self) -> ManifestWriter:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            _drop_incomplete_tail(self.path)
            for number, item, problem in _parse(self.path):
                if problem is not None and problem.severity == "error":
                    raise ManifestError(self.path, f"cannot append: {problem.message}", line=number)
                if item is not None:
                    self.ids.add(item.id)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.ids

    def write(self, item: ManifestItem) -> None:
        if self._fh is None:
            raise RuntimeError("ManifestWriter is not open; use it as a context manager")
        if item.id in self.ids:
            raise ManifestError(self.path, f"duplicate id {item.id!r}: already in the manifest")
        self._fh.write(_dump(item))
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())
        self.ids.add(item.id)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _drop_incomplete_tail(path: Path) -> None:
    with open(path, "rb+") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        # Find the last newline; everything after it is the line that was in flight.
        block = 1 << 16
        pos = size
        cut = 0
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                cut = start + idx + 1
                break
            pos = start
        tail = size - cut
        with contextlib.suppress(Exception):
            fh.seek(cut)
            text = fh.read().decode("utf-8", "replace")
            try:
                json.loads(text)
                # A complete JSON object without its newline: keep it, add the newline.
                fh.seek(0, os.SEEK_END)
                fh.write(b"\n")
                return
            except json.JSONDecodeError:
                pass
        logger.warning("%s: dropping an incomplete last line (%d bytes)", path, tail)
        fh.truncate(cut)
