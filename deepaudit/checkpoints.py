"""Checkpoint folders that are never half-written: built beside, then swapped in.

Every trainer keeps its resumable state in one folder (what goes in it is
:mod:`deepaudit.trainer`'s business). :func:`write_checkpoint` yields a fresh side folder to
fill; when the block ends the old checkpoint is moved aside, the new one renamed into place
and the old one deleted. :func:`find_checkpoint` returns the last complete one, recovering
the old folder when a kill fell between the two renames. :func:`discard_checkpoint` removes
it and its side folders once the final model is written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "discard_checkpoint",
    "find_checkpoint",
    "load_module_state",
    "save_module_state",
    "write_checkpoint",
]


def _side(ckpt: Path, suffix: str) -> Path:
    return ckpt.with_name(ckpt.name + suffix)


@contextmanager
def write_checkpoint(ckpt: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty folder to write into; it replaces ``ckpt`` when the block succeeds."""
    ckpt = Path(ckpt)
    tmp, old = _side(ckpt, ".part"), _side(ckpt, ".old")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    yield tmp
    if ckpt.exists():
        os.replace(ckpt, old)
    os.replace(tmp, ckpt)
    if old.exists():
        shutil.rmtree(old)


def find_checkpoint(ckpt: str | os.PathLike[str]) -> Path | None:
    """The last complete checkpoint folder, or None."""
    ckpt = Path(ckpt)
    old = _side(ckpt, ".old")
    if not ckpt.is_dir() and old.is_dir():  # killed between the two renames
        with contextlib.suppress(FileNotFoundError):  # another rank put it back first
            os.replace(old, ckpt)
    return ckpt if ckpt.is_dir() else None


def discard_checkpoint(ckpt: str | os.PathLike[str]) -> None:
    """Remove a checkpoint and any side folder a kill left behind (the model is written)."""
    ckpt = Path(ckpt)
    for folder in (ckpt, _side(ckpt, ".part"), _side(ckpt, ".old")):
        if folder.is_dir():
            shutil.rmtree(folder)


def save_module_state(path: str | os.PathLike[str], module: Any) -> None:
    """A torch module's state dict as safetensors, written beside and renamed into place."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_suffix(".part")
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, tmp)
    os.replace(tmp, path)


def load_module_state(path: str | os.PathLike[str], module: Any) -> None:
    """Load a state dict saved by :func:`save_module_state` (safetensors: never unpickles)."""
    from safetensors.torch import load_file

    module.load_state_dict(load_file(Path(path)))
