"""Worker → main process hand-off of a record's arrays through reused shared-memory blocks.

A scan worker's record carries the detectors' prepared inputs (and, on the GPU path, the
JPEG bytes the main process decodes). Returned as they are, each array is pickled in the
worker, pushed through a pipe and unpickled in the main process, which is single-threaded
and, on a fast accelerator, the scan's limit. Instead the main process owns a pool of
shared-memory blocks, one per file in flight: a worker writes the arrays into the block it
was lent and returns only their places; the main process copies them out (one ``memcpy``)
and lends the block to the next file. An array that does not fit travels pickled as before,
so the results never depend on the block size.

The blocks are created by the main process only: the interpreter's resource tracker unlinks
them if that process dies (SIGKILL included), and :meth:`BlockPool.close` does on any exit.
Workers attach without registering, so they never unlink a block or warn about one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

__all__ = ["BlockPool", "Placed", "read_block", "write_block"]

logger = logging.getLogger(__name__)

NAME_PREFIX = "deepaudit-"
_ALIGN = 64
_worker_blocks: dict[str, SharedMemory] = {}  # a worker's attachments, reused across files


@dataclass(frozen=True)
class Placed:
    """Where one array of a record lies in its block."""

    field: str  # the record key it belongs to ("_inputs" or "_jpeg")
    key: Any  # its key inside that field (an InputSpec), None for a plain value
    offset: int
    shape: tuple[int, ...]
    dtype: str


class BlockPool:
    """``count`` shared-memory blocks of ``size`` bytes, lent one per file in flight."""

    def __init__(self, count: int, size: int) -> None:
        self.size = max(_ALIGN, -(-size // _ALIGN) * _ALIGN)
        tag = f"{NAME_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self._blocks: list[SharedMemory] = []
        try:
            for i in range(count):
                self._blocks.append(SharedMemory(name=f"{tag}-{i}", create=True, size=self.size))
        except BaseException:
            self.close()
            raise
        self._free = list(range(count))
        self._index = {b.name: i for i, b in enumerate(self._blocks)}

    @classmethod
    def for_scan(cls, count: int, size: int) -> BlockPool | None:
        """A pool, or None (arrays pickled) where /dev/shm cannot hold it twice over: a
        container's default 64 MiB would fail on a write (SIGBUS), not on creation."""
        if count <= 0 or size <= 0:
            return None
        try:
            st = os.statvfs("/dev/shm")
            free = st.f_bavail * st.f_frsize
        except OSError:
            free = None
        if free is not None and count * size * 2 > free:
            logger.warning(
                "shared memory: %d MiB free in /dev/shm, %d MiB wanted; crops are pickled",
                free >> 20,
                (count * size) >> 20,
            )
            return None
        try:
            return cls(count, size)
        except OSError as exc:
            logger.warning("shared memory unavailable (%s); crops are pickled", exc)
            return None

    def lend(self) -> str | None:
        """A free block's name, or None when all are lent (the file's arrays are pickled)."""
        return self._blocks[self._free.pop()].name if self._free else None

    def take(self, rec: dict[str, Any], name: str | None) -> dict[str, Any]:
        """Copy the arrays a worker placed in block ``name`` into ``rec`` and free the block."""
        if name is None:
            return rec
        index = self._index[name]
        try:
            read_block(rec, self._blocks[index].buf)
        finally:
            self._free.append(index)
        return rec

    def release(self, name: str | None) -> None:
        """Free block ``name`` unread (its worker died)."""
        if name is not None and name in self._index:
            self._free.append(self._index[name])

    def close(self) -> None:
        """Unlink every block (idempotent)."""
        for block in self._blocks:
            with contextlib.suppress(FileNotFoundError):
                block.unlink()
            with contextlib.suppress(BufferError):
                block.close()
        self._blocks = []
        self._free = []
        self._index = {}

    def __enter__(self) -> BlockPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_block(rec: dict[str, Any], name: str | None) -> dict[str, Any]:
    """Worker side: move ``rec``'s arrays into block ``name`` while they fit; those that do
    not stay in the record (pickled). ``rec["_placed"]`` lists the moved ones."""
    if name is None:
        return rec
    block = _attach(name)
    buf = block.buf
    offset = 0
    placed: list[Placed] = []
    for field, key, arr in list(_arrays(rec)):
        end = offset + arr.nbytes
        if end > block.size:
            continue
        np.frombuffer(buf, np.uint8, arr.nbytes, offset)[:] = arr.reshape(-1).view(np.uint8)
        placed.append(Placed(field, key, offset, arr.shape, arr.dtype.str))
        if key is None:
            del rec[field]
        else:
            del rec[field][key]
        offset = -(-end // _ALIGN) * _ALIGN
    if placed:
        rec["_placed"] = placed
    return rec


def read_block(rec: dict[str, Any], buf: memoryview) -> None:
    """Main side: copy the placed arrays out of ``buf`` back where they came from."""
    for p in rec.pop("_placed", ()):
        n = int(np.prod(p.shape, dtype=np.int64)) * np.dtype(p.dtype).itemsize
        arr = np.frombuffer(buf, np.uint8, n, p.offset).view(p.dtype).reshape(p.shape).copy()
        if p.key is None:
            rec[p.field] = arr
        else:
            rec.setdefault(p.field, {})[p.key] = arr


def _arrays(rec: dict[str, Any]) -> Iterator[tuple[str, Any, np.ndarray]]:
    for key, arr in (rec.get("_inputs") or {}).items():
        if isinstance(arr, np.ndarray) and arr.nbytes:
            yield "_inputs", key, np.ascontiguousarray(arr)
    jpeg = rec.get("_jpeg")
    if isinstance(jpeg, np.ndarray) and jpeg.nbytes:
        yield "_jpeg", None, jpeg


def _attach(name: str) -> SharedMemory:
    block = _worker_blocks.get(name)
    if block is None:
        # Python < 3.13 registers an attachment with the resource tracker, which would then
        # unlink the main process's block when this worker exits; the creator owns it.
        register = resource_tracker.register
        resource_tracker.register = lambda *args, **kwargs: None  # type: ignore[assignment]
        try:
            block = SharedMemory(name=name)
        finally:
            resource_tracker.register = register  # type: ignore[assignment]
        _worker_blocks[name] = block
    return block
