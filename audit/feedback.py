"""An analyst's decisions about scanned files: ``feedback.jsonl`` beside the scan's results.

The review app (:mod:`deepaudit.audit.review`) appends one line per decision — path,
sha256, label (real, synthetic or unsure), note, reviewer, time and the scan's verdict at
that time — so nothing is ever overwritten and a changed mind is a later line.
:func:`import_feedback` turns the decisions into a dataset manifest, so what people
checked trains and calibrates the next detector like any other dataset.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from deepaudit.errors import DeepauditError, MediaError
from deepaudit.manifest import Manifest, ManifestWriter, read_manifest

__all__ = [
    "FEEDBACK",
    "FEEDBACK_LABELS",
    "FeedbackImport",
    "FeedbackRecord",
    "append_feedback",
    "import_feedback",
    "latest_decisions",
    "read_feedback",
]

FEEDBACK = "feedback.jsonl"
FeedbackLabel = Literal["real", "synthetic", "unsure"]
FEEDBACK_LABELS: tuple[str, ...] = ("real", "synthetic", "unsure")
MAX_NOTE = 2000


class FeedbackError(DeepauditError):
    """A feedback file or decision that cannot be used; the message names the file."""


@dataclass(frozen=True)
class FeedbackRecord:
    """One decision about one file, as it was when the analyst made it."""

    path: str
    sha256: str | None
    label: FeedbackLabel
    note: str
    reviewer: str
    time: str  # ISO 8601, UTC
    verdict: str  # the scan's verdict when the decision was made

    def __post_init__(self) -> None:
        if self.label not in FEEDBACK_LABELS:
            raise FeedbackError(
                f"{self.path}: label must be one of {', '.join(FEEDBACK_LABELS)}, "
                f"got {self.label!r}"
            )
        if len(self.note) > MAX_NOTE:
            raise FeedbackError(f"{self.path}: note longer than {MAX_NOTE} characters")
        if not self.reviewer:
            raise FeedbackError(f"{self.path}: no reviewer name (give --reviewer)")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def feedback_path(scan_dir: str | os.PathLike[str]) -> Path:
    """``SCAN_DIR/feedback.jsonl``, refused when a link would lead the writes elsewhere."""
    root = Path(scan_dir).resolve()
    path = root / FEEDBACK
    if path.is_symlink() or path.resolve().parent != root:
        raise FeedbackError(f"{path}: is a link out of the scan folder; refusing to write there")
    return path


def append_feedback(scan_dir: str | os.PathLike[str], record: FeedbackRecord) -> Path:
    """Append one decision and flush it to disk (a killed app loses nothing it confirmed)."""
    path = feedback_path(scan_dir)
    line = json.dumps(record.to_json(), ensure_ascii=False) + "\n"
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def read_feedback(scan_dir: str | os.PathLike[str]) -> list[FeedbackRecord]:
    """Every decision in file order; a torn last line (a killed writer) is ignored."""
    path = Path(scan_dir) / FEEDBACK
    if not path.is_file():
        return []
    out = []
    lines = path.read_text(encoding="utf-8").split("\n")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            out.append(FeedbackRecord(**{k: data[k] for k in FeedbackRecord.__dataclass_fields__}))
        except json.JSONDecodeError as exc:
            if n == len(lines):  # no newline after it: the write was cut short
                break
            raise FeedbackError(f"{path}:{n}: not JSON ({exc.msg})") from None
        except (KeyError, TypeError) as exc:
            raise FeedbackError(f"{path}:{n}: not a feedback record ({exc})") from None
    return out


def latest_decisions(records: list[FeedbackRecord]) -> dict[str, dict[str, FeedbackRecord]]:
    """path → reviewer → that reviewer's last decision about the file."""
    out: dict[str, dict[str, FeedbackRecord]] = {}
    for r in records:
        out.setdefault(r.path, {})[r.reviewer] = r
    return out


@dataclass(frozen=True)
class FeedbackImport:
    """What :func:`import_feedback` did: the manifest and why files were left out."""

    manifest: Manifest
    added: int
    already_present: int
    counts: dict[str, int]  # decided files by label (the last decision per reviewer)
    left_out: dict[str, int]  # unsure, conflicting, changed since review, missing, unreadable

    def to_json(self) -> dict[str, Any]:
        return {
            "manifest": str(self.manifest.path),
            "added": self.added,
            "already_present": self.already_present,
            "labels": self.counts,
            "left_out": self.left_out,
            "items": len(self.manifest),
        }


def import_feedback(
    scan_dir: str | os.PathLike[str], out: str | os.PathLike[str]
) -> FeedbackImport:
    """A dataset manifest in ``out`` from the scan's decisions (paths relative to ``out``).

    Left out, and counted: ``unsure`` decisions; files whose reviewers disagree (real vs
    synthetic); files changed since the decision (the label was for other bytes); files
    gone. Appends and skips ids already there, so importing again adds only new decisions.
    """
    from deepaudit.manifest_import import item_from_file
    from deepaudit.media import file_sha256

    scan = Path(scan_dir)
    if not (scan / FEEDBACK).is_file():
        raise FeedbackError(f"{scan / FEEDBACK}: no feedback yet (review with deepaudit review)")
    decisions = latest_decisions(read_feedback(scan))
    left: Counter[str] = Counter(
        {"unsure": 0, "conflicting": 0, "changed": 0, "missing": 0, "unreadable": 0}
    )
    counts: Counter[str] = Counter()
    added = present = 0
    root = Path(out)
    with ManifestWriter(root) as writer:
        for path, by_reviewer in decisions.items():
            labels = {r.label for r in by_reviewer.values()} - {"unsure"}
            last = max(by_reviewer.values(), key=lambda r: r.time)
            counts[last.label if len(labels) <= 1 else "conflicting"] += 1
            if not labels:
                left["unsure"] += 1
                continue
            if len(labels) > 1:
                left["conflicting"] += 1
                continue
            label = labels.pop()
            file = Path(path)
            if not file.is_file():
                left["missing"] += 1
                continue
            if last.sha256 and file_sha256(file) != last.sha256:
                left["changed"] += 1
                continue
            rel = Path(os.path.relpath(file.resolve(), root.resolve())).as_posix()
            if rel in writer:
                present += 1
                continue
            try:
                item = item_from_file(file, root=root, label=label, source="analyst-review")  # type: ignore[arg-type]
            except MediaError:
                left["unreadable"] += 1  # decided from the scan's record, but not media
                continue
            reviewers = sorted(r.reviewer for r in by_reviewer.values() if r.label == label)
            notes = [r.note for r in by_reviewer.values() if r.note]
            writer.write(
                _with_review(item, reviewers, last.verdict, last.time, notes, str(scan.resolve()))
            )
            added += 1
    return FeedbackImport(read_manifest(root), added, present, dict(counts), dict(left))


def _with_review(item, reviewers, verdict, when, notes, scan) -> Any:
    from dataclasses import replace

    review = {
        "reviewers": reviewers,
        "scan_verdict": verdict,
        "decided": when,
        "notes": notes,
        "scan": scan,
    }
    return replace(item, extra={**item.extra, "review": review})
