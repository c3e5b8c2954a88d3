"""The one walker: files under the paths a user gives, for inspect, imports and the scan.

One behaviour everywhere: globs are expanded (``"inbox/*.jpg"``), folders are walked
recursively in sorted order, hidden entries (names starting with a dot) and operating-system
litter (``Thumbs.db``) are skipped, links are followed with loops and second routes to the
same file (same inode) skipped, and every path that cannot be walked is reported in
``errors`` with its reason instead of stopping the walk. Pipes and devices are yielded, so
each caller can say why it does not read them.

A cluster scan shards the same walk: :func:`walk_shards` yields the folders (and the files
named directly) without listing any folder's files, and each shard's files come from
:func:`list_shard` wherever it runs, by the same rules.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["OS_LITTER", "WalkShard", "list_shard", "walk_files", "walk_shards"]

OS_LITTER = frozenset({"Thumbs.db", "desktop.ini"})


@dataclass(frozen=True)
class WalkShard:
    """One unit of listing: the files directly in ``path`` (a folder), or ``path`` itself."""

    path: str
    folder: bool


class _Walk:
    def __init__(
        self,
        errors: list[str] | None,
        exclude: Sequence[str | os.PathLike[str]],
        skip: Collection[str],
    ) -> None:
        self.seen_dirs: set[tuple[int, int]] = set()
        self.seen_files: set[tuple[int, int]] = set()
        self.excluded = {Path(p).resolve() for p in exclude}
        self.skipped = OS_LITTER | set(skip)
        self.errs = errors if errors is not None else []

    def file_ok(self, p: Path) -> bool:
        if p.name in self.skipped:
            return False
        try:
            st = p.stat()
        except OSError as exc:  # a dangling link, or a file gone since listing
            self.errs.append(f"{p}: {exc.strerror or exc}")
            return False
        key = (st.st_dev, st.st_ino)
        if key in self.seen_files:
            return False
        self.seen_files.add(key)
        return True

    def entries(self, d: Path) -> Iterator[tuple[Path, bool]] | None:
        """``d``'s visible entries as (path, is_folder), sorted; None for a folder already
        walked, excluded or unreadable."""
        try:
            st = d.stat()
        except OSError as exc:
            self.errs.append(f"{d}: {exc.strerror or exc}")
            return None
        key = (st.st_dev, st.st_ino)
        if key in self.seen_dirs or d.resolve() in self.excluded:
            return None
        self.seen_dirs.add(key)
        try:
            found = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            self.errs.append(f"{d}: cannot list folder ({exc.strerror or exc})")
            return None
        return ((Path(e.path), _is_dir(e)) for e in found if not e.name.startswith("."))

    def walk(self, d: Path) -> Iterator[Path]:
        for p, is_dir in self.entries(d) or ():
            if is_dir:
                yield from self.walk(p)
            elif self.file_ok(p):
                yield p

    def folders(self, d: Path) -> Iterator[Path]:
        listing = self.entries(d)
        if listing is None:
            return
        yield d
        for p, is_dir in listing:
            if is_dir:
                yield from self.folders(p)

    def roots(self, paths: Sequence[str | os.PathLike[str]]) -> Iterator[tuple[Path, bool]]:
        for raw in paths:
            text = os.fspath(raw)
            matches = (
                [Path(m) for m in sorted(glob.glob(text))] if glob.has_magic(text) else [Path(text)]
            )
            if not matches:
                self.errs.append(f"{text}: no such file or folder")
            for p in matches:
                if p.is_dir():
                    yield p, True
                elif p.exists() or p.is_symlink():
                    yield p, False
                else:
                    self.errs.append(f"{p}: no such file or folder")


def _is_dir(e: os.DirEntry) -> bool:
    try:
        return e.is_dir()  # follows links; loops are caught by seen_dirs
    except OSError:
        return False


def walk_files(
    paths: Sequence[str | os.PathLike[str]],
    *,
    errors: list[str] | None = None,
    exclude: Sequence[str | os.PathLike[str]] = (),
    skip_names: Collection[str] = (),
) -> Iterator[Path]:
    """Files under ``paths``, each once (see the module docstring).

    ``errors`` collects one line per path that could not be walked (missing, dangling
    link, unlistable folder); ``exclude`` folders are not entered (a scan's own output);
    ``skip_names`` are file names to pass over.
    """
    w = _Walk(errors, exclude, skip_names)
    for p, is_dir in w.roots(paths):
        if is_dir:
            yield from w.walk(p)
        elif w.file_ok(p):
            yield p


def walk_shards(
    paths: Sequence[str | os.PathLike[str]],
    *,
    errors: list[str] | None = None,
    exclude: Sequence[str | os.PathLike[str]] = (),
) -> Iterator[WalkShard]:
    """The walk of :func:`walk_files` cut into shards, streamed: every folder once (loops and
    excluded folders skipped) and every file named directly; no folder's files are kept."""
    w = _Walk(errors, exclude, ())
    for p, is_dir in w.roots(paths):
        if is_dir:
            for d in w.folders(p):
                yield WalkShard(str(d), True)
        else:
            yield WalkShard(str(p), False)


def list_shard(
    shard: WalkShard, *, errors: list[str] | None = None, skip_names: Collection[str] = ()
) -> Iterator[Path]:
    """The files of one shard, by the walker's rules (a shard's own second routes to a file
    are skipped; routes through other shards are the caller's to merge)."""
    w = _Walk(errors, (), skip_names)
    p = Path(shard.path)
    if not shard.folder:
        if w.file_ok(p):
            yield p
        return
    try:
        found = sorted(os.scandir(p), key=lambda e: e.name)
    except OSError as exc:
        w.errs.append(f"{p}: cannot list folder ({exc.strerror or exc})")
        return
    for e in found:
        if not e.name.startswith(".") and not _is_dir(e) and w.file_ok(Path(e.path)):
            yield Path(e.path)
