"""The one walker: files under the paths a user gives, for inspect, imports and the scan.

One behaviour everywhere: globs are expanded (``"inbox/*.jpg"``), folders are walked
recursively in sorted order, hidden entries (names starting with a dot) and operating-system
litter (``Thumbs.db``) are skipped, links are followed with loops and second routes to the
same file (same inode) skipped, and every path that cannot be walked is reported in
``errors`` with its reason instead of stopping the walk. Pipes and devices are yielded, so
each caller can say why it does not read them.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

__all__ = ["OS_LITTER", "walk_files"]

OS_LITTER = frozenset({"Thumbs.db", "desktop.ini"})


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
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    excluded = {Path(p).resolve() for p in exclude}
    skipped = OS_LITTER | set(skip_names)
    errs = errors if errors is not None else []

    def file_ok(p: Path) -> bool:
        if p.name in skipped:
            return False
        try:
            st = p.stat()
        except OSError as exc:  # a dangling link, or a file gone since listing
            errs.append(f"{p}: {exc.strerror or exc}")
            return False
        key = (st.st_dev, st.st_ino)
        if key in seen_files:
            return False
        seen_files.add(key)
        return True

    def walk(d: Path) -> Iterator[Path]:
        try:
            st = d.stat()
        except OSError as exc:
            errs.append(f"{d}: {exc.strerror or exc}")
            return
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs or d.resolve() in excluded:
            return
        seen_dirs.add(key)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            errs.append(f"{d}: cannot list folder ({exc.strerror or exc})")
            return
        for e in entries:
            if e.name.startswith("."):
                continue
            p = Path(e.path)
            try:
                is_dir = e.is_dir()  # follows links; loops are caught by seen_dirs
            except OSError:
                is_dir = False
            if is_dir:
                yield from walk(p)
            elif file_ok(p):
                yield p

    for raw in paths:
        text = os.fspath(raw)
        matches = (
            [Path(m) for m in sorted(glob.glob(text))] if glob.has_magic(text) else [Path(text)]
        )
        if not matches:
            errs.append(f"{text}: no such file or folder")
        for p in matches:
            if p.is_dir():
                yield from walk(p)
            elif p.exists() or p.is_symlink():
                if file_ok(p):
                    yield p
            else:
                errs.append(f"{p}: no such file or folder")
