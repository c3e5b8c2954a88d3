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
import json
import logging
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.audit.results import (
    REPORT,
    RESULTS,
    SUMMARY,
    ScanSummary,
    compact_results,
    load_done,
    summarise_results,
    write_results_csv,
)
from deepaudit.audit.verdict import decide
from deepaudit.errors import DeepauditError, MediaError, error_record

__all__ = ["ScanOptions", "iter_scan_files", "run_scan"]

logger = logging.getLogger(__name__)
_SKIP_NAMES = {RESULTS, SUMMARY, REPORT, "results.csv", ".DS_Store", "Thumbs.db"}


@dataclass(frozen=True)
class ScanOptions:
    trust_anchors: str | None = None
    frames: int = 8
    input_specs: tuple[Any, ...] = ()  # detectors' InputSpecs: inputs are prepared in workers
    watermark: bool = True
    metadata: bool = True


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
        from deepaudit.c2pa_layer import make_context

        _CTX[key] = make_context(anchors)
    return _CTX[key]


def examine_file(path: str, opts: ScanOptions) -> dict[str, Any]:
    """Everything about one file except detector scores; never raises for the file's content."""
    from deepaudit.audit.provenance import image_signals, inspect_provenance
    from deepaudit.media import file_sha256, read_image, read_video, sniff_format

    p = Path(path)
    rec: dict[str, Any] = {"path": str(p)}
    try:
        st = p.stat()
        rec["size"] = st.st_size
        rec["mtime_ns"] = st.st_mtime_ns
        if not stat.S_ISREG(st.st_mode):
            raise MediaError(p, "not a regular file (a pipe, socket or device)")
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
        rec["error"] = error_record(exc, p)
    except OSError as exc:
        rec["kind"] = "other"
        rec["error"] = error_record(exc, p)
    if "error" in rec and rec.get("kind") == "other" and "sha256" not in rec:
        return rec
    try:
        rec["provenance"] = inspect_provenance(p, context=_context(opts.trust_anchors)).to_json()
    except Exception as exc:  # the C2PA layer must never stop a scan
        rec["provenance"] = {"state": "malformed", "reason": f"{type(exc).__name__}: {exc}"}
    if "error" in rec:
        return rec
    inputs: dict[Any, np.ndarray] = {}
    try:
        if rec["kind"] == "image":
            img = read_image(p)
            rec["width"], rec["height"] = int(img.shape[1]), int(img.shape[0])
            rec.update(image_signals(p, img, metadata=opts.metadata, watermark=opts.watermark))
            for spec in opts.input_specs:
                inputs[spec] = spec.prepare(img)
        elif rec["kind"] == "video":
            video = read_video(p, num_frames=opts.frames)
            frames = video.frames
            rec["frames_sampled"] = len(frames)
            rec["width"], rec["height"] = int(frames.shape[2]), int(frames.shape[1])
            rec["fps"] = video.fps
            for spec in opts.input_specs:
                inputs[spec] = spec.prepare(frames)
    except DeepauditError as exc:
        rec["error"] = error_record(exc, p)
    except Exception as exc:  # a decoder bug must not stop the scan either
        rec["error"] = error_record(exc, p)
    rec["_inputs"] = inputs
    return rec


# --------------------------------------------------------------------------- main side


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
    key: str  # unique name in results (see detector_keys)
    det: Any
    spec: Any  # InputSpec


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
    from deepaudit.detectors import load_detector
    from deepaudit.detectors.inference import detector_keys

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    loaded: list[_LoadedDetector] = []
    for key, d in zip(detector_keys(detectors), detectors, strict=True):
        det = load_detector(d, device=device, precision=None if precision == "auto" else precision)
        loaded.append(_LoadedDetector(key, det, det.input_spec()))
    opts = ScanOptions(
        trust_anchors=str(trust_anchors) if trust_anchors else None,
        frames=frames,
        input_specs=tuple(dict.fromkeys(ld.spec for ld in loaded)),
        watermark=watermark,
    )
    if trust_anchors:
        from deepaudit.c2pa_layer import read_trust_anchors

        read_trust_anchors(trust_anchors)  # a bad anchors file fails before the scan
    summary = ScanSummary(
        detectors={
            ld.key: {"path": str(d), "threshold": ld.det.threshold}
            for ld, d in zip(loaded, detectors, strict=True)
        }
    )
    results = out / RESULTS
    fingerprint = {
        "detectors": {
            ld.key: {
                "path": str(Path(d).resolve()),
                "threshold": ld.det.threshold,
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
            raise DeepauditError(
                f"{out}: holds a scan made with other detectors or settings; "
                "use another --out, or --restart to scan everything again"
            )
    config_path.write_text(json.dumps(fingerprint, indent=2, default=str) + "\n")
    done = load_done(results)
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
                rec.pop("_inputs", None)
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
        compact_results(results)
    summary.walk_errors = walk_errors
    summary.seconds = time.perf_counter() - started
    summarise_results(results, summary)
    (out / SUMMARY).write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    if csv:
        write_results_csv(results, out / "results.csv", [ld.key for ld in loaded])
    if report:
        from deepaudit.audit.report import write_scan_report

        write_scan_report(results, summary, out / REPORT)
    return summary


def _anchors_digest(anchors: Any) -> str | None:
    if not anchors:
        return None
    import hashlib

    from deepaudit.c2pa_layer import read_trust_anchors

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
        submitted: dict[Future, Path] = {}
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
                fut = pool.submit(examine_file, str(p), opts)
                submitted[fut] = p
                in_flight.add(fut)
            if not in_flight:
                return
            finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for f in finished:
                path = submitted.pop(f)
                try:
                    yield f.result()
                except Exception as exc:  # a worker died (e.g. out of memory on a bomb)
                    yield {"path": str(path), "kind": "other", "error": error_record(exc, path)}


def _score(records: list[dict[str, Any]], loaded: list[_LoadedDetector]) -> None:
    """Each detector scores every record's prepared inputs, through the inference contract."""
    from deepaudit.detectors.inference import score_prepared

    for ld in loaded:
        owners = [k for k, r in enumerate(records) if len(r.get("_inputs", {}).get(ld.spec, ()))]
        if not owners:
            continue
        try:
            results = score_prepared(
                ld.det,
                [records[k]["_inputs"][ld.spec] for k in owners],
                video=[records[k].get("kind") == "video" for k in owners],
                batch_size=None,  # a flush is already a bounded batch of files
            )
        except Exception as exc:  # one detector failing must not lose the files
            for k in owners:
                records[k].setdefault("detector_errors", {})[ld.key] = str(exc)
            continue
        for k, result in zip(owners, results, strict=True):
            records[k].setdefault("scores", {})[ld.key] = result.to_json()


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
