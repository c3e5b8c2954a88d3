"""What an analyst reviews after a scan: the queue, each file's evidence and its pictures.

:class:`ReviewQueue` reads a scan folder (``results.jsonl``, ``summary.json``) and puts
the files in the order of the report's "look at these first" (:func:`top_for_review`),
then the rest in scan order, so the most doubtful files come first. It renders what a
browser shows — a thumbnail, frames of a video, a detector's heatmap — as PNGs decoded and
re-encoded here, and only for files listed in the results whose bytes still match the
scan's sha256: the web app (:mod:`deepaudit.audit.review_app`) never hands out a path it
was given. Decisions go to ``feedback.jsonl`` (:mod:`deepaudit.audit.feedback`).
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.audit.feedback import (
    FeedbackRecord,
    append_feedback,
    feedback_path,
    latest_decisions,
    read_feedback,
)
from deepaudit.audit.results import RESULTS, SUMMARY, iter_results, top_for_review
from deepaudit.errors import DeepauditError

__all__ = ["HEATMAP_DIR", "QueueEntry", "ReviewQueue", "StaleFileError"]

logger = logging.getLogger(__name__)

HEATMAP_DIR = "review-heatmaps"  # inside the scan folder: the app writes nowhere else
THUMB_SIZE = 640
VIDEO_FRAMES = 6


class StaleFileError(DeepauditError):
    """A listed file is gone or its bytes differ from what the scan saw."""


@dataclass(frozen=True)
class QueueEntry:
    """One file of the queue: its place, and the scan's record of it."""

    index: int
    flagged: bool  # in the report's "look at these first"
    record: dict[str, Any]

    @property
    def path(self) -> str:
        return str(self.record["path"])


class ReviewQueue:
    """The files of one scan folder, in review order, with their evidence and pictures."""

    def __init__(self, scan_dir: str | os.PathLike[str], *, reviewer: str) -> None:
        self.scan_dir = Path(scan_dir).resolve()
        results = self.scan_dir / RESULTS
        if not results.is_file():
            raise DeepauditError(f"{self.scan_dir}: no {RESULTS} here; run deepaudit scan first")
        feedback_path(self.scan_dir)  # refuse a feedback file that links elsewhere, up front
        self.reviewer = reviewer
        self.summary = _read_summary(self.scan_dir / SUMMARY)
        last: dict[str, dict[str, Any]] = {}
        for rec in iter_results(results):
            if rec.get("kind") != "sidecar":
                last[rec["path"]] = rec  # a rescan's line replaces the earlier one
        first = [r["path"] for r in top_for_review(results, k=max(len(last), 1))]
        order = [p for p in first if p in last]
        order += [p for p in last if p not in set(order)]
        flagged = set(first)
        self.entries = [QueueEntry(i, p in flagged, last[p]) for i, p in enumerate(order)]
        self._lock = threading.Lock()  # feedback writes and the frame cache
        # heatmaps take seconds (a detector to load, a backward pass): never behind a decision
        self._explain_lock = threading.Lock()
        self._hashes: dict[str, tuple[int, int, str]] = {}
        self._detectors: dict[str, Any] = {}
        self._frame_cache: dict[str, list[bytes]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def entry(self, index: int) -> QueueEntry:
        if not 0 <= index < len(self.entries):
            raise IndexError(index)
        return self.entries[index]

    def decisions(self) -> dict[str, FeedbackRecord]:
        """path → this reviewer's last decision."""
        out = {}
        for path, by in latest_decisions(read_feedback(self.scan_dir)).items():
            if self.reviewer in by:
                out[path] = by[self.reviewer]
        return out

    def detector_names(self) -> list[str]:
        return list((self.summary.get("detectors") or {}).keys())

    def decide(self, index: int, label: str, note: str) -> FeedbackRecord:
        """Record this reviewer's decision about the file at ``index``."""
        e = self.entry(index)
        rec = FeedbackRecord(
            path=e.path,
            sha256=e.record.get("sha256"),
            label=label,  # type: ignore[arg-type]
            note=note.strip(),
            reviewer=self.reviewer,
            time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            verdict=e.record.get("verdict", "error"),
        )
        with self._lock:
            append_feedback(self.scan_dir, rec)
        return rec

    # ------------------------------------------------------------------ pictures

    def checked_path(self, index: int) -> Path:
        """The listed file at ``index``, if its bytes are still the ones the scan saw."""
        from deepaudit.media import file_sha256

        e = self.entry(index)
        p = Path(e.path)
        try:
            st = p.stat()
        except OSError as exc:
            raise StaleFileError(f"{p}: gone since the scan ({exc.strerror})") from None
        want = e.record.get("sha256")
        if not want:
            raise StaleFileError(f"{p}: the scan recorded no sha256 (unreadable then)")
        key = (st.st_size, st.st_mtime_ns)
        cached = self._hashes.get(e.path)
        if cached is None or cached[:2] != key:
            cached = (*key, file_sha256(p))
            self._hashes[e.path] = cached
        if cached[2] != want:
            raise StaleFileError(f"{p}: changed since the scan (sha256 differs)")
        return p

    def thumbnail(self, index: int) -> bytes:
        """The image, or a video's middle frame, at most THUMB_SIZE a side, as PNG."""
        from deepaudit.media import read_image

        p = self.checked_path(index)
        if self.entry(index).record.get("kind") == "video":
            frames = self._frames(p)
            return _png(frames[len(frames) // 2])
        return _png(read_image(p))

    def frames(self, index: int) -> list[bytes]:
        """Frames sampled evenly through a video, as PNGs (the last few videos kept)."""
        p = self.checked_path(index)
        key = self.entry(index).record["sha256"]
        with self._lock:
            if key in self._frame_cache:
                return self._frame_cache[key]
        pngs = [_png(f) for f in self._frames(p)]
        with self._lock:
            self._frame_cache[key] = pngs
            while len(self._frame_cache) > 4:
                self._frame_cache.pop(next(iter(self._frame_cache)))
        return pngs

    def _frames(self, p: Path) -> np.ndarray:
        from deepaudit.media import read_video

        return read_video(p, num_frames=VIDEO_FRAMES, allow_truncated=True).frames

    def heatmap_detectors(self, index: int) -> list[str]:
        """The scan's detectors that can explain this file (images; timm, NPR, spectral)."""
        if self.entry(index).record.get("kind") != "image":
            return []
        dets = self.summary.get("detectors") or {}
        return [n for n, d in dets.items() if d.get("detector") in ("timm", "npr", "spectral")]

    def heatmap(self, index: int, detector: str) -> Path:
        """A detector's heatmap of the file, made on first request and kept in the scan
        folder (``review-heatmaps/``); the scan itself does not make them (seconds each)."""
        from deepaudit.audit.transparency import explain, save_explanation
        from deepaudit.media import read_image

        if detector not in self.heatmap_detectors(index):
            raise KeyError(detector)
        p = self.checked_path(index)
        sha = self.entry(index).record["sha256"]
        out = self.scan_dir / HEATMAP_DIR / f"{sha[:32]}.{_safe(detector)}.png"
        if out.is_file():
            return out
        with self._explain_lock:
            if out.is_file():  # made while this request waited
                return out
            det = self._detectors.get(detector)
            if det is None:
                from deepaudit.detectors import load_detector

                folder = self._detector_folder(detector)
                if not folder:
                    raise StaleFileError(f"{detector}: the scan summary names no folder")
                det = self._detectors[detector] = load_detector(folder, device="cpu")
            e = explain(det, read_image(p))
            save_explanation(e, out, title=f"{p.name} · {detector}")
        return out

    def _detector_folder(self, detector: str) -> str | None:
        # scan.json records the resolved folder; the summary the one given on the command line
        fingerprint = _read_summary(self.scan_dir / "scan.json").get("detectors") or {}
        path = (fingerprint.get(detector) or {}).get("path")
        return path or (self.summary["detectors"].get(detector) or {}).get("path")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:64]


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(image))
    im.thumbnail((THUMB_SIZE, THUMB_SIZE))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _read_summary(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DeepauditError(f"{path}: not JSON ({exc.msg})") from None
    return data if isinstance(data, dict) else {}
