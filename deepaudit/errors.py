"""The one error hierarchy of deepaudit: every message names the file and the reason."""

from __future__ import annotations

import os

__all__ = [
    "DatasetLayoutError",
    "DeepauditError",
    "DependencyError",
    "ManifestError",
    "MediaError",
    "error_record",
]


class DeepauditError(Exception):
    """Base class of every error deepaudit raises on purpose."""


class MediaError(DeepauditError):
    """A file could not be read or written as media; `str()` is `"<path>: <reason>"`."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep the two fields across pickling (worker processes)
        return (type(self), (self.path, self.reason))


class ManifestError(DeepauditError):
    """A dataset manifest is malformed; names the manifest, the line (1-based) and the reason."""

    def __init__(
        self, path: str | os.PathLike[str], reason: str, *, line: int | None = None
    ) -> None:
        self.path = os.fspath(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):
        return (_rebuild_manifest_error, (self.path, self.reason, self.line))


def _rebuild_manifest_error(path: str, reason: str, line: int | None) -> ManifestError:
    return ManifestError(path, reason, line=line)


class DatasetLayoutError(DeepauditError):
    """A dataset folder or table does not follow the layout its importer reads; `str()` is
    ``"<offending path>: <reason>"``."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


class DependencyError(DeepauditError):
    """An optional dependency or a local resource (weights, codec) is missing."""


def error_record(exc: BaseException, path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The ``{"class", "message"}`` record of a file that could not be handled.

    One builder for scan rows, inspect output and provenance records, so the same failure
    reads the same everywhere: the exception's class and one line that names the file.
    """
    if isinstance(exc, OSError) and not isinstance(exc, DeepauditError):
        text = exc.strerror or str(exc)
    else:
        text = str(exc)
    lines = text.strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    where = os.fspath(path) if path is not None else getattr(exc, "path", None)
    if where and not text.startswith(str(where)):
        text = f"{where}: {text}"
    return {"class": getattr(exc, "record_class", None) or type(exc).__name__, "message": text}
