"""The scan's results store: ``results.jsonl`` (one JSON object per file), resumable.

Lines are appended and flushed per batch, so a killed scan loses at most a torn last line:
:func:`load_done` cuts it and says which files are already done; :func:`compact_results`
keeps the last line per path after changed files were scanned again. The summary, the CSV
and the review queue are computed by streaming the file, so memory stays flat.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepaudit.audit.verdict import ATTENTION, REVIEW_PRIORITY, VERDICTS

__all__ = [
    "REPORT",
    "RESULTS",
    "SUMMARY",
    "ScanSummary",
    "compact_results",
    "iter_results",
    "load_done",
    "summarise_results",
    "top_for_review",
    "write_results_csv",
]

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
REPORT = "report.html"


@dataclass
class ScanSummary:
    files: int = 0
    scanned: int = 0
    skipped_unchanged: int = 0
    by_verdict: dict[str, int] = field(default_factory=dict)
    by_state: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    walk_errors: list[str] = field(default_factory=list)
    # .c2pa beside their asset (no row of their own): the asset's provenance says whether it
    # was read (sidecar) or left for the asset's own store (sidecar_ignored)
    sidecars_attached: list[str] = field(default_factory=list)
    seconds: float = 0.0
    detectors: dict[str, Any] = field(default_factory=dict)
    fusion: dict[str, Any] | None = None  # rule and uncertain band (verdict.Fusion)
    gpu_decode: dict[str, Any] | None = None  # where JPEGs were decoded (audit.gpu_decode)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "scanned_now": self.scanned,
            "skipped_unchanged": self.skipped_unchanged,
            "by_verdict": self.by_verdict,
            "by_provenance_state": self.by_state,
            "by_kind": self.by_kind,
            "errors": self.errors,
            "walk_errors": self.walk_errors,
            "sidecars_attached": self.sidecars_attached,
            "seconds": round(self.seconds, 2),
            "files_per_s": round(self.scanned / self.seconds, 2) if self.seconds else None,
            "detectors": self.detectors,
            "fusion": self.fusion,
            "gpu_decode": self.gpu_decode,
        }

    @property
    def attention(self) -> int:
        """Files a person should look at (see ``verdict.ATTENTION``)."""
        return sum(n for v, n in self.by_verdict.items() if v in ATTENTION)


def load_done(results: Path) -> dict[str, tuple[int, int, str | None, int | None]]:
    """path → (size, mtime_ns, sha256, its C2PA sidecar's mtime_ns or None) of complete
    lines; a torn last line is cut off."""
    done: dict[str, tuple[int, int, str | None, int | None]] = {}
    if not results.is_file():
        return done
    good_end = 0
    with results.open("rb") as fh:
        offset = 0
        for raw in fh:
            offset += len(raw)
            if not raw.endswith(b"\n"):
                break
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError:
                break
            good_end = offset
            if "size" in rec:
                done[rec["path"]] = (
                    rec["size"],
                    rec.get("mtime_ns", 0),
                    rec.get("sha256"),
                    rec.get("sidecar_mtime_ns"),
                )
    if good_end != results.stat().st_size:
        with results.open("r+b") as fh:
            fh.truncate(good_end)
    return done


def compact_results(results: Path) -> None:
    """Keep only the last line per path (streaming: offsets in memory, not records)."""
    last: dict[str, int] = {}
    with results.open("rb") as fh:
        offset = 0
        for raw in fh:
            with contextlib.suppress(json.JSONDecodeError):
                last[json.loads(raw)["path"]] = offset
            offset += len(raw)
    keep = set(last.values())
    tmp = results.with_name(results.name + ".part")
    with results.open("rb") as src, tmp.open("wb") as dst:
        offset = 0
        for raw in src:
            if offset in keep:
                dst.write(raw)
            offset += len(raw)
    os.replace(tmp, results)


def summarise_results(results: Path, summary: ScanSummary) -> ScanSummary:
    """Counts over the whole results file (this run's files and earlier runs' alike)."""
    summary.by_verdict = {v: 0 for v in VERDICTS}
    summary.by_state, summary.by_kind = {}, {}
    summary.errors = summary.files = 0
    for rec in iter_results(results):
        summary.files += 1
        v = rec.get("verdict", "error")
        summary.by_verdict[v] = summary.by_verdict.get(v, 0) + 1
        state = (rec.get("provenance") or {}).get("state", "not-checked")
        summary.by_state[state] = summary.by_state.get(state, 0) + 1
        summary.by_kind[rec.get("kind", "other")] = (
            summary.by_kind.get(rec.get("kind", "other"), 0) + 1
        )
        summary.errors += "error" in rec
    return summary


def iter_results(results: Path) -> Iterator[dict[str, Any]]:
    if not results.is_file():
        return
    with results.open(encoding="utf-8") as fh:
        for line in fh:
            if line.endswith("\n"):
                with contextlib.suppress(json.JSONDecodeError):
                    yield json.loads(line)


def top_for_review(results: Path, k: int = 200) -> list[dict[str, Any]]:
    """The ``k`` files a human should look at first (streaming, a heap of k)."""
    heap: list[tuple[float, int, dict[str, Any]]] = []
    for n, rec in enumerate(iter_results(results)):
        pri = REVIEW_PRIORITY.get(rec.get("verdict", ""), 0)
        if not pri:
            continue
        fused = (rec.get("fused") or {}).get("score")
        margin = fused - 0.5 if fused is not None else 0.0
        key = (pri + 0.5 * margin, -n)
        item = (key[0], key[1], rec)
        if len(heap) < k:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)
    return [r for _, _, r in sorted(heap, key=lambda t: (-t[0], -t[1]))]


def write_results_csv(results: Path, path: Path, detector_names: list[str]) -> None:
    import csv

    cols = [
        "path",
        "kind",
        "verdict",
        "provenance_state",
        "ai_declaration",
        "watermark",
        *[f"score:{n}" for n in detector_names],
        "error",
        "sha256",
    ]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for rec in iter_results(results):
            prov = rec.get("provenance") or {}
            scores = rec.get("scores") or {}
            w.writerow(
                [
                    rec.get("path"),
                    rec.get("kind"),
                    rec.get("verdict"),
                    prov.get("state"),
                    prov.get("ai_declaration"),
                    (rec.get("watermark") or {}).get("scheme"),
                    *[(scores.get(n) or {}).get("score") for n in detector_names],
                    (rec.get("error") or {}).get("message"),
                    rec.get("sha256"),
                ]
            )
