"""``deepaudit scan``: files → media → provenance + metadata + watermark + detectors → verdicts.

Pipeline: the main process walks the paths and hands files to worker processes, which hash,
sniff, read C2PA, metadata and watermarks and decode the pixels the detectors need (centre
crops of images, K sampled frames of videos). The main process batches those crops through
each detector (``inference_mode``; AMP and channels_last on CUDA), decides the verdict and
appends one JSON line per file to ``results.jsonl``, flushed as it goes. At most
``workers × 4`` files are in flight, so memory stays flat however many files there are.

Re-running the same scan skips files already in ``results.jsonl`` with the same size, mtime
and SHA-256; a torn last line (a killed scan) is dropped and redone. At the end
``summary.json`` and ``report.html`` are built by streaming ``results.jsonl``.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audit.verdict import VERDICTS, decide

__all__ = ["ScanOptions", "ScanSummary", "iter_scan_files", "run_scan", "summarise_results"]

logger = logging.getLogger(__name__)
RESULTS = "results.jsonl"
SUMMARY = "summary.json"
REPORT = "report.html"
_SKIP_NAMES = {RESULTS, SUMMARY, REPORT, "results.csv", ".DS_Store", "Thumbs.db"}


@dataclass(frozen=True)
class ScanOptions:
    trust_anchors: str | None = None
    frames: int = 8
    crop_sizes: tuple[int, ...] = ()
    watermark: bool = True
    metadata: bool = True


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
    seconds: float = 0.0
    detectors: dict[str, Any] = field(default_factory=dict)

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
            "seconds": round(self.seconds, 2),
            "files_per_s": round(self.scanned / self.seconds, 2) if self.seconds else None,
            "detectors": self.detectors,
        }

    @property
    def attention(self) -> int:
        v = self.by_verdict
        return (
            v.get("synthetic", 0)
            + v.get("likely-synthetic", 0)
            + v.get("needs-review", 0)
            + self.errors
        )


# --------------------------------------------------------------------------- walking


def iter_scan_files(
    paths: Sequence[str | os.PathLike[str]],
    *,
    errors: list[str] | None = None,
    exclude: Sequence[Path] = (),
) -> Iterator[Path]:
    """Files under ``paths`` (recursively), each once: symlink loops and duplicates via links
    are skipped, unreadable folders reported in ``errors``; hidden entries and sidecars skipped."""
    import glob

    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    excluded = {p.resolve() for p in exclude}
    errs = errors if errors is not None else []

    def file_ok(p: Path) -> bool:
        """Once per inode; pipes and devices pass (their row says why they are not scanned)."""
        if p.name in _SKIP_NAMES or p.suffix.lower() == ".c2pa":
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


# --------------------------------------------------------------------------- worker side

_CTX: dict[str, Any] = {}


def _context(anchors: str | None):
    key = anchors or ""
    if key not in _CTX:
        from deepaudit.credentials import make_context

        _CTX[key] = make_context(anchors)
    return _CTX[key]


def examine_file(path: str, opts: ScanOptions) -> dict[str, Any]:
    """Everything about one file except detector scores; never raises for the file's content."""
    from audit.provenance import image_signals, inspect_provenance
    from deepaudit.errors import DeepauditError
    from deepaudit.media import file_sha256, read_image, read_video, sniff_format
    from detectors.data import crop

    p = Path(path)
    rec: dict[str, Any] = {"path": str(p)}
    try:
        st = p.stat()
        rec["size"] = st.st_size
        rec["mtime_ns"] = st.st_mtime_ns
        if not stat.S_ISREG(st.st_mode):
            raise _ScanError("MediaError", f"{p}: not a regular file (a pipe, socket or device)")
        rec["sha256"] = file_sha256(p)
        guess = sniff_format(p)
        rec["kind"], rec["format"] = guess.kind, guess.format
        if guess.format in ("gif", "webp", "png"):  # animated GIF/WebP/APNG are clips
            from deepaudit.media import probe

            with contextlib.suppress(DeepauditError):
                if probe(p, verify=False).kind == "video":
                    rec["kind"] = "video"
    except DeepauditError as exc:
        rec["kind"] = rec.get("kind", "other")
        rec["error"] = {"class": type(exc).__name__, "message": str(exc)}
    except _ScanError as exc:
        rec["kind"] = "other"
        rec["error"] = {"class": exc.cls, "message": exc.message}
    except OSError as exc:
        rec["kind"] = "other"
        rec["error"] = {"class": "OSError", "message": f"{p}: {exc.strerror or exc}"}
    if "error" in rec and rec.get("kind") == "other" and "sha256" not in rec:
        return rec
    try:
        rec["provenance"] = inspect_provenance(p, context=_context(opts.trust_anchors)).to_json()
    except Exception as exc:  # the C2PA layer must never stop a scan
        rec["provenance"] = {"state": "malformed", "reason": f"{type(exc).__name__}: {exc}"}
    if "error" in rec:
        return rec
    crops: dict[int, np.ndarray] = {}
    try:
        if rec["kind"] == "image":
            img = read_image(p)
            rec["width"], rec["height"] = int(img.shape[1]), int(img.shape[0])
            rec.update(image_signals(p, img, metadata=opts.metadata, watermark=opts.watermark))
            for s in opts.crop_sizes:
                crops[s] = crop(img, s)[None]
        elif rec["kind"] == "video":
            video = read_video(p, num_frames=opts.frames)
            frames = video.frames
            rec["frames_sampled"] = len(frames)
            rec["width"], rec["height"] = int(frames.shape[2]), int(frames.shape[1])
            rec["fps"] = video.fps
            for s in opts.crop_sizes:
                crops[s] = np.stack([crop(f, s) for f in frames])
    except DeepauditError as exc:
        rec["error"] = {"class": type(exc).__name__, "message": str(exc)}
    except Exception as exc:  # a decoder bug must not stop the scan either
        rec["error"] = {"class": type(exc).__name__, "message": f"{p}: {exc}"}
    rec["_crops"] = crops
    return rec


class _ScanError(Exception):
    def __init__(self, cls: str, message: str) -> None:
        super().__init__(message)
        self.cls, self.message = cls, message


# --------------------------------------------------------------------------- main side


def _load_done(results: Path) -> dict[str, tuple[int, int, str | None]]:
    """path → (size, mtime_ns, sha256) of complete lines; a torn last line is cut off."""
    done: dict[str, tuple[int, int, str]] = {}
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
                done[rec["path"]] = (rec["size"], rec.get("mtime_ns", 0), rec.get("sha256"))
    if good_end != results.stat().st_size:
        with results.open("r+b") as fh:
            fh.truncate(good_end)
    return done


def _unchanged(path: Path, prev: tuple[int, int, str | None]) -> bool:
    from deepaudit.media import file_sha256

    try:
        st = path.stat()
    except OSError:
        return False
    if (st.st_size, st.st_mtime_ns) != prev[:2]:
        return False
    if prev[2] is None:  # an error row written before hashing (a pipe, an unreadable file)
        return True
    try:
        return file_sha256(path) == prev[2]
    except Exception:
        return False


@dataclass
class _LoadedDetector:
    name: str
    det: Any
    size: int
    threshold: float
    is_video: bool


def run_scan(
    paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    detectors: Sequence[str | os.PathLike[str]] = (),
    trust_anchors: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    frames: int = 8,
    batch_size: int = 32,
    csv: bool = False,
    report: bool = True,
    watermark: bool = True,
    progress: Callable[[int, int | None], None] | None = None,
    device: str = "auto",
    limit: int | None = None,
    restart: bool = False,
    precision: str = "auto",
) -> ScanSummary:
    """Scan ``paths`` into ``out_dir``; see the module docstring. ``limit`` stops after that
    many newly scanned files (used by tests and benchmarks)."""
    from detectors import load_detector

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    loaded: list[_LoadedDetector] = []
    for d in detectors:
        det = load_detector(d, device=device, precision=None if precision == "auto" else precision)
        name = Path(d).name
        loaded.append(
            _LoadedDetector(name, det, det.input_size, det.threshold, det.kind == "video")
        )
    opts = ScanOptions(
        trust_anchors=str(trust_anchors) if trust_anchors else None,
        frames=frames,
        crop_sizes=tuple(sorted({ld.size for ld in loaded})),
        watermark=watermark,
    )
    if trust_anchors:
        from deepaudit.credentials import read_trust_anchors

        read_trust_anchors(trust_anchors)  # a bad anchors file fails before the scan
    summary = ScanSummary(
        detectors={
            ld.name: {"path": str(d), "threshold": ld.threshold}
            for ld, d in zip(loaded, detectors, strict=True)
        }
    )
    results = out / RESULTS
    fingerprint = {
        "detectors": {
            ld.name: {
                "path": str(Path(d).resolve()),
                "threshold": ld.threshold,
                "config": ld.det.config().get("params"),
            }
            for ld, d in zip(loaded, detectors, strict=True)
        },
        "trust_anchors": _anchors_digest(trust_anchors),
        "frames": frames,
        "watermark": watermark,
    }
    config_path = out / "scan.json"
    if restart:
        results.unlink(missing_ok=True)
    elif results.is_file() and config_path.is_file():
        before = json.loads(config_path.read_text())
        if before != json.loads(json.dumps(fingerprint, default=str)):
            from deepaudit.errors import DeepauditError

            raise DeepauditError(
                f"{out}: holds a scan made with other detectors or settings; "
                "use another --out, or --restart to scan everything again"
            )
    config_path.write_text(json.dumps(fingerprint, indent=2, default=str) + "\n")
    done = _load_done(results)
    walk_errors: list[str] = []
    replaced: list[int] = []
    n_workers = workers if workers is not None else max(0, min(8, (os.cpu_count() or 2) - 1))
    pending: list[dict[str, Any]] = []

    def todo() -> Iterator[Path]:
        for p in iter_scan_files(paths, errors=walk_errors, exclude=[out]):
            prev = done.get(str(p))
            if prev is not None:
                if _unchanged(p, prev):
                    summary.skipped_unchanged += 1
                    continue
                replaced.append(1)  # an older line for this path will be dropped at the end
            yield p

    with results.open("a", encoding="utf-8") as fh:

        def flush() -> None:
            _score(pending, loaded)
            for rec in pending:
                rec.pop("_crops", None)
                verdict, reasons = _verdict(rec)
                if "error" in rec and verdict in ("no-evidence", "likely-authentic"):
                    verdict = "error"  # unreadable, and nothing else says anything
                rec["verdict"] = verdict
                rec["reasons"] = [r.to_json() for r in reasons]
                fh.write(json.dumps(rec, default=_json_default) + "\n")
            fh.flush()
            summary.scanned += len(pending)
            pending.clear()
            if progress is not None:
                progress(summary.scanned + summary.skipped_unchanged, None)

        for rec in _examine_all(todo(), opts, n_workers, limit):
            pending.append(rec)
            if len(pending) >= batch_size:
                flush()
        flush()
    if replaced:
        _compact(results)
    summary.walk_errors = walk_errors
    summary.seconds = time.perf_counter() - started
    summarise_results(results, summary)
    (out / SUMMARY).write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    if csv:
        _write_csv(results, out / "results.csv", [ld.name for ld in loaded])
    if report:
        from audit.report import write_scan_report

        write_scan_report(results, summary, out / REPORT)
    return summary


def _compact(results: Path) -> None:
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


def _anchors_digest(anchors: Any) -> str | None:
    if not anchors:
        return None
    import hashlib

    from deepaudit.credentials import read_trust_anchors

    return hashlib.sha256(read_trust_anchors(anchors).encode()).hexdigest()[:16]


def _examine_all(files: Iterable[Path], opts: ScanOptions, n_workers: int, limit: int | None):
    count = 0
    if n_workers <= 0:
        for p in files:
            if limit is not None and count >= limit:
                return
            count += 1
            yield examine_file(str(p), opts)
        return
    import multiprocessing as mp

    ctx = mp.get_context("spawn" if os.environ.get("DEEPAUDIT_SPAWN") else None)
    with ProcessPoolExecutor(n_workers, mp_context=ctx) as pool:
        in_flight: set[Future] = set()
        it = iter(files)
        exhausted = False
        while True:
            while not exhausted and len(in_flight) < n_workers * 4:
                if limit is not None and count >= limit:
                    exhausted = True
                    break
                try:
                    p = next(it)
                except StopIteration:
                    exhausted = True
                    break
                count += 1
                in_flight.add(pool.submit(examine_file, str(p), opts))
            if not in_flight:
                return
            finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for f in finished:
                try:
                    yield f.result()
                except Exception as exc:  # a worker died (e.g. out of memory on a bomb)
                    yield {
                        "path": "?",
                        "kind": "other",
                        "error": {"class": type(exc).__name__, "message": str(exc)},
                    }


def _score(records: list[dict[str, Any]], loaded: list[_LoadedDetector]) -> None:
    """Batch every record's crops through each detector; videos are aggregated per file."""
    from detectors.video import aggregate

    for ld in loaded:
        chunks, owners = [], []
        for k, rec in enumerate(records):
            c = rec.get("_crops", {}).get(ld.size)
            if c is not None and len(c):
                chunks.append(c)
                owners.append(k)
        if not chunks:
            continue
        if ld.is_video:
            for k, c in zip(owners, chunks, strict=True):
                rec = records[k]
                try:
                    s = float(ld.det.predict_video(list(c)))
                except Exception as exc:
                    rec.setdefault("detector_errors", {})[ld.name] = str(exc)
                    continue
                rec.setdefault("scores", {})[ld.name] = {"score": s, "threshold": ld.threshold}
            continue
        batch = np.concatenate(chunks)
        try:
            if hasattr(ld.det, "predict_crops"):
                probs = ld.det.predict_crops(batch)
            else:
                probs = ld.det.predict_proba(list(batch))
        except Exception as exc:  # one detector failing must not lose the files
            for k in owners:
                records[k].setdefault("detector_errors", {})[ld.name] = str(exc)
            continue
        pos = 0
        for k, c in zip(owners, chunks, strict=True):
            frame_scores = probs[pos : pos + len(c)]
            pos += len(c)
            rec = records[k]
            entry: dict[str, Any] = {"threshold": ld.threshold}
            if rec.get("kind") == "video":
                entry["score"] = aggregate(frame_scores, "mean")
                entry["frame_max"] = float(frame_scores.max())
            else:
                entry["score"] = float(frame_scores[0])
            rec.setdefault("scores", {})[ld.name] = entry


def _verdict(rec: dict[str, Any]):
    if "error" in rec and not rec.get("provenance"):
        return "error", []
    return decide(
        rec.get("provenance"), rec.get("metadata"), rec.get("watermark"), rec.get("scores", {})
    )


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    return str(o)


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


PRIORITY = {"needs-review": 4, "likely-synthetic": 3, "error": 2, "synthetic": 1}


def top_for_review(results: Path, k: int = 200) -> list[dict[str, Any]]:
    """The ``k`` files a human should look at first (streaming, a heap of k)."""
    heap: list[tuple[float, int, dict[str, Any]]] = []
    for n, rec in enumerate(iter_results(results)):
        pri = PRIORITY.get(rec.get("verdict", ""), 0)
        if not pri:
            continue
        margin = max(
            [
                s["score"] - s.get("threshold", 0.5)
                for s in (rec.get("scores") or {}).values()
                if s.get("score") is not None
            ]
            or [0.0]
        )
        key = (pri + 0.5 * margin, -n)
        item = (key[0], key[1], rec)
        if len(heap) < k:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)
    return [r for _, _, r in sorted(heap, key=lambda t: (-t[0], -t[1]))]


def _write_csv(results: Path, path: Path, detector_names: list[str]) -> None:
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
