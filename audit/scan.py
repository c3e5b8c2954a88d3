"""``deepaudit scan``: files → media → provenance + metadata + watermark + detectors → verdicts.

Pipeline: the main process walks the paths (:mod:`deepaudit.walk`, the walker ``inspect``
and the manifest importers use too) and hands files to worker processes. A worker reads each
file once (:func:`deepaudit.media.load_file`) and hands that copy to the hashing, the C2PA
reader, the metadata and watermark readers and the decoder, then prepares the inputs each
detector asked for (its :class:`~deepaudit.detectors.inference.InputSpec`). The main process
scores them through the detector inference contract — it never needs to know what kind of
detector it runs — decides the verdict (:mod:`deepaudit.audit.verdict`, all the policy) and
appends one JSON line per file to ``results.jsonl`` (:mod:`deepaudit.audit.results`),
flushed as it goes. At most ``workers × 4`` files are in flight, so memory stays flat.

Every walked file gets a row, except a ``.c2pa`` sidecar whose asset is beside it: it is
read with that asset (its row names the sidecar) and listed in the summary; an orphan
sidecar gets a row of kind ``sidecar`` that says so.

Re-running the same scan skips files already in ``results.jsonl`` with the same size, mtime
and SHA-256; a torn last line (a killed scan) is dropped and redone. At the end
``summary.json`` and ``report.html`` are built by streaming ``results.jsonl``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
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
from deepaudit.audit.verdict import DEFAULT_BAND, Fusion, fuse, verdict_for
from deepaudit.c2pa_layer import SIDECAR_SUFFIX, asset_of_sidecar
from deepaudit.errors import DeepauditError, MediaError, error_record
from deepaudit.walk import walk_files

__all__ = [
    "OUTPUT_NAMES",
    "ScanOptions",
    "ScanPlan",
    "examine_file",
    "finish_scan",
    "is_unchanged",
    "load_scan_detectors",
    "prepare_scan",
    "result_line",
    "run_scan",
    "score_records",
]

logger = logging.getLogger(__name__)
# the scan's own outputs, when a scanned folder holds an earlier scan
OUTPUT_NAMES = frozenset({RESULTS, SUMMARY, REPORT, "results.csv", "scan.json"})


@dataclass(frozen=True)
class ScanOptions:
    trust_anchors: str | None = None
    default_trust: bool = True  # the official C2PA Trust List in force (deepaudit.trust_lists)
    legacy_anchors: str | None = None  # a superseded list: trusted, reported as legacy
    frames: int = 8
    input_specs: tuple[Any, ...] = ()  # detectors' InputSpecs: inputs are prepared in workers
    watermark: bool = True
    metadata: bool = True
    gpu_decode: bool = False  # JPEGs handed over undecoded, for the main process's batch


# --------------------------------------------------------------------------- worker side


def examine_file(path: str, opts: ScanOptions) -> dict[str, Any]:
    """Everything about one file except detector scores; never raises for the file's content.

    The file is read once (:func:`deepaudit.media.load_file`) and that copy, with its format,
    goes to the C2PA reader, the metadata reader and the decoder, so no reader opens the
    file or sniffs its format again.
    """
    from deepaudit.audit.provenance import image_signals, inspect_provenance
    from deepaudit.c2pa_layer import make_context
    from deepaudit.media import load_file, probe, read_image, read_video

    p = Path(path)
    rec: dict[str, Any] = {"path": str(p)}
    source = None
    try:
        st = p.stat()
        rec["size"] = st.st_size
        rec["mtime_ns"] = st.st_mtime_ns
        if p.suffix.lower() != SIDECAR_SUFFIX and (side := _sidecar_mtime(p)) is not None:
            rec["sidecar_mtime_ns"] = side  # a sidecar changed since means a rescan
        if not stat.S_ISREG(st.st_mode):
            raise MediaError(p, "not a regular file (a pipe, socket or device)")
        source = load_file(p)
        rec["sha256"] = source.sha256
        if p.suffix.lower() == SIDECAR_SUFFIX:
            rec["kind"] = "sidecar"
            raise MediaError(
                p, "a C2PA sidecar manifest without its asset beside it (same name, media suffix)"
            )
        guess = source.guess
        rec["kind"], rec["format"] = guess.kind, guess.format
        if guess.format in ("gif", "webp", "png"):  # animated GIF/WebP/APNG are clips
            with contextlib.suppress(DeepauditError):
                if probe(p, verify=False, source=source).kind == "video":
                    rec["kind"] = "video"
    except DeepauditError as exc:
        rec["kind"] = rec.get("kind", "other")
        rec["error"] = error_record(exc, p)
    except OSError as exc:
        rec["kind"] = "other"
        rec["error"] = error_record(exc, p)
    if "error" in rec and (rec["kind"] == "sidecar" or "sha256" not in rec):
        return rec
    try:
        rec["provenance"] = inspect_provenance(
            p,
            context=make_context(
                opts.trust_anchors,
                default_trust=opts.default_trust,
                legacy_anchors=opts.legacy_anchors,
            ),
            trust_anchors=opts.trust_anchors,
            default_trust=opts.default_trust,
            legacy_anchors=opts.legacy_anchors,
            source=source,
        ).to_json()
    except Exception as exc:  # the C2PA layer must never stop a scan
        rec["provenance"] = {"state": "malformed", "reason": f"{type(exc).__name__}: {exc}"}
    if "error" in rec:
        return rec
    inputs: dict[Any, np.ndarray] = {}
    try:
        if rec["kind"] == "image" and (header := _batch_decodable(rec, source, opts)):
            # the main process decodes it for the detectors (audit.gpu_decode); pixels here
            # only for the watermark check
            img = read_image(p, source=source) if opts.watermark else None
            rec["width"], rec["height"] = header.width, header.height
            rec.update(
                image_signals(
                    p, img, metadata=opts.metadata, watermark=opts.watermark, source=source
                )
            )
            rec["_jpeg"] = np.frombuffer(source.data, np.uint8)
            rec["_orientation"] = header.orientation
        elif rec["kind"] == "image":
            img = read_image(p, source=source)
            rec["width"], rec["height"] = int(img.shape[1]), int(img.shape[0])
            rec.update(
                image_signals(
                    p, img, metadata=opts.metadata, watermark=opts.watermark, source=source
                )
            )
            for spec in opts.input_specs:
                inputs[spec] = spec.prepare(img)
        elif rec["kind"] == "video":
            # container tags need no decoding: read them first, a broken stream keeps them
            rec.update(image_signals(p, metadata=opts.metadata, watermark=False, source=source))
            video = read_video(p, num_frames=opts.frames, source=source)
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


def _batch_decodable(rec: dict[str, Any], source: Any, opts: ScanOptions) -> Any:
    """The JPEG header when this image goes to the main process's batched decoder."""
    if not opts.gpu_decode or not opts.input_specs or rec.get("format") != "jpeg":
        return None
    if source is None or source.data is None:  # too large to be held: the CPU reader
        return None
    from deepaudit.jpeg_batch import jpeg_header

    return jpeg_header(source.data)


# --------------------------------------------------------------------------- main side


def is_unchanged(path: Path, prev: tuple[int, int, str | None, int | None]) -> bool:
    from deepaudit.media import file_sha256

    try:
        st = path.stat()
    except OSError:
        return False
    if (st.st_size, st.st_mtime_ns) != prev[:2]:
        return False
    if _sidecar_mtime(path) != prev[3]:  # a sidecar added, changed or removed since
        return False
    if prev[2] is None:  # an error row written before hashing (a pipe, an unreadable file)
        return True
    try:
        return file_sha256(path) == prev[2]
    except Exception:
        return False


def _sidecar_mtime(path: Path) -> int | None:
    from deepaudit.c2pa_layer import sidecar_path

    try:
        return sidecar_path(path).stat().st_mtime_ns
    except OSError:
        return None


@dataclass
class _LoadedDetector:
    key: str  # unique name in results (see detector_keys)
    det: Any
    spec: Any  # InputSpec


@dataclass(frozen=True)
class DetectorFacts:
    """What a scan's plan needs to know of a detector, without its network: its key in the
    results, identity, thresholds, configured parameters and input spec."""

    key: str
    identity: dict[str, Any]
    threshold: float
    operating_threshold: float
    params: dict[str, Any] | None
    spec: Any  # InputSpec

    @classmethod
    def of(cls, ld: _LoadedDetector) -> DetectorFacts:
        return cls(
            ld.key,
            ld.det.identity(),
            float(ld.det.threshold),
            float(ld.det.operating_threshold),
            ld.det.config().get("params"),
            ld.spec,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "threshold": self.threshold,
            "operating_threshold": self.operating_threshold,
            "params": self.params,
            "spec": dataclasses.asdict(self.spec),
        }

    @classmethod
    def from_json(cls, key: str, raw: dict[str, Any]) -> DetectorFacts:
        from deepaudit.detectors.inference import InputSpec

        return cls(
            key,
            raw["identity"],
            float(raw["threshold"]),
            float(raw["operating_threshold"]),
            raw["params"],
            InputSpec(**raw["spec"]),
        )


def describe_scan_detectors(
    detectors: Sequence[str | os.PathLike[str]], precision: str, engine: str
) -> list[DetectorFacts]:
    """The facts of the scan's detectors, without loading those seen before: a per-user
    cache (``deepaudit.devices.user_cache_dir()/detector-facts``) keyed by the folder's files
    (:func:`detector_files`) and deepaudit's version. A folder not in the cache is loaded
    once, on the CPU, and its facts are kept. The cluster scan's driver uses this: its
    detector actors load the networks and it needs only the facts (the timm import and model
    build alone cost it ~10 s on a 2-core machine)."""
    from deepaudit import __version__
    from deepaudit.detectors.inference import detector_keys
    from deepaudit.devices import resolve_precision

    concrete = resolve_precision(precision, "cpu")
    out = []
    for key, d in zip(detector_keys(detectors), detectors, strict=True):
        path = _facts_path(d, __version__)
        facts = None
        if path is not None:
            with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                facts = DetectorFacts.from_json(key, json.loads(path.read_text(encoding="utf-8")))
        if facts is None:
            (ld,) = load_scan_detectors([d], "cpu", concrete, engine, 0)
            facts = replace(DetectorFacts.of(ld), key=key)
            if path is not None:
                _write_facts(path, facts)
        out.append(facts)
    return out


def detector_files(detector: str | os.PathLike[str], _depth: int = 0) -> list[list[Any]]:
    """(path, size, mtime) of each file that makes a detector folder what it is, and of the
    detector folders its config names (a ``video-frames`` detector's ``base`` image
    detector): not a folder's ``engine/`` cache, which the ONNX engine writes into on first
    use (:mod:`~deepaudit.detectors.engine`), nor hidden files."""
    root = Path(detector).resolve()
    out = []
    for p in sorted(root.rglob("*")) if root.is_dir() else [root]:
        rel = p.relative_to(root).parts if p != root else ()
        if rel and (rel[0] == "engine" or any(part.startswith(".") for part in rel)):
            continue
        try:
            st = p.stat()
        except OSError:
            continue
        if p.is_file():
            out.append([str(p), st.st_size, st.st_mtime_ns])
    if _depth < 4 and root.is_dir():
        with contextlib.suppress(OSError, ValueError, AttributeError):
            params = json.loads((root / "config.json").read_text(encoding="utf-8")).get("params")
            for value in (params or {}).values():
                # a path as the detector's loader takes it (relative to the working folder)
                if isinstance(value, str) and value and (Path(value) / "config.json").is_file():
                    out += detector_files(value, _depth + 1)
    return out


def _facts_path(detector: str | os.PathLike[str], version: str) -> Path | None:
    files = detector_files(detector)
    if not files:
        return None
    digest = hashlib.sha256(json.dumps([files, version]).encode()).hexdigest()
    from deepaudit.devices import user_cache_dir

    return user_cache_dir() / "detector-facts" / f"{digest[:32]}.json"


def _write_facts(path: Path, facts: DetectorFacts) -> None:
    with contextlib.suppress(OSError, TypeError, ValueError):  # a cache: never fails a scan
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
        tmp.write_text(json.dumps(facts.to_json(), default=str), encoding="utf-8")
        os.replace(tmp, path)


@dataclass
class ScanPlan:
    """What a scan run has settled before the first file: the output folder, the loaded
    detectors, the fusion policy, the workers' options and the summary to fill in. The local
    scan and the cluster scan (:mod:`deepaudit.audit.scan_ray`) share it."""

    out: Path
    loaded: list[_LoadedDetector]
    policy: Fusion
    opts: ScanOptions
    summary: ScanSummary
    done: dict[str, tuple[int, int, str | None, int | None]]
    started: float

    @property
    def results(self) -> Path:
        return self.out / RESULTS


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
    default_trust: bool = True,
    fusion: str = "mean-logit",
    band: tuple[float, float] = DEFAULT_BAND,
    engine: str = "auto",
    legacy_anchors: str | os.PathLike[str] | None = None,
    gpu_decode: str = "auto",
) -> ScanSummary:
    """Scan ``paths`` into ``out_dir``; see the module docstring. ``limit`` stops after that
    many newly scanned files (used by tests and benchmarks). ``default_trust``: trust the
    official C2PA Trust List in force besides ``trust_anchors``. ``fusion`` and ``band``:
    how detector scores become one, and the uncertain band (:class:`verdict.Fusion`).
    ``precision`` auto: bf16 on CPUs with bf16 units, fp32 on others, AMP on CUDA;
    ``engine``: auto, torch or onnx for network detectors (:mod:`detectors.engine`); the
    choices are recorded in the summary. ``gpu_decode``: auto, on or off, JPEGs decoded in
    batches on the scan's device (:mod:`deepaudit.audit.gpu_decode`)."""
    from deepaudit.audit.gpu_decode import decode_pending, resolve_gpu_decode

    n_workers = workers if workers is not None else max(0, min(8, (os.cpu_count() or 2) - 1))
    # a bad choice fails before the detectors load
    decode = resolve_gpu_decode(
        gpu_decode, device, watermark=watermark, has_detectors=bool(detectors)
    )
    plan = prepare_scan(
        out_dir,
        detectors=detectors,
        trust_anchors=trust_anchors,
        frames=frames,
        watermark=watermark,
        device=device,
        restart=restart,
        precision=precision,
        default_trust=default_trust,
        fusion=fusion,
        band=band,
        engine=engine,
        legacy_anchors=legacy_anchors,
        n_workers=n_workers,
    )
    out, loaded, policy, opts, summary = plan.out, plan.loaded, plan.policy, plan.opts, plan.summary
    opts = replace(opts, gpu_decode=decode.on)
    results = plan.results
    done = plan.done
    walk_errors: list[str] = []
    replaced: list[int] = []
    pending: list[dict[str, Any]] = []

    def todo() -> Iterator[Path]:
        for p in walk_files(paths, errors=walk_errors, exclude=[out], skip_names=OUTPUT_NAMES):
            if p.suffix.lower() == SIDECAR_SUFFIX and asset_of_sidecar(p) is not None:
                summary.sidecars_attached.append(str(p))  # goes with its asset: no row
                continue
            prev = done.get(str(p))
            if prev is not None:
                if is_unchanged(p, prev):
                    summary.skipped_unchanged += 1
                    continue
                replaced.append(1)  # an older line for this path will be dropped at the end
            yield p

    with results.open("a", encoding="utf-8") as fh:

        def flush() -> None:
            if decode.on:
                decode_pending(pending, opts.input_specs, decode)
            score_records(pending, loaded, batch_size)
            for rec in pending:
                png = localize_record(rec, loaded, policy)
                if png is not None:
                    write_heatmap(out, rec, png)
                fh.write(result_line(rec, policy))
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
    summary.walk_errors = walk_errors
    summary.gpu_decode = decode.to_json()
    return finish_scan(plan, compact=bool(replaced), csv=csv, report=report)


def prepare_scan(
    out_dir: str | os.PathLike[str],
    *,
    detectors: Sequence[str | os.PathLike[str]] = (),
    trust_anchors: str | os.PathLike[str] | None = None,
    frames: int = 8,
    watermark: bool = True,
    device: str = "auto",
    restart: bool = False,
    precision: str = "auto",
    default_trust: bool = True,
    fusion: str = "mean-logit",
    band: tuple[float, float] = DEFAULT_BAND,
    engine: str = "auto",
    legacy_anchors: str | os.PathLike[str] | None = None,
    n_workers: int = 0,
    describe_only: bool = False,
) -> ScanPlan:
    """Load the detectors, check the settings against an earlier scan in ``out_dir`` (a
    resume must not mix detectors or settings) and read what that scan has done.
    ``describe_only``: learn what the plan needs of the detectors without loading them
    (:func:`describe_scan_detectors`; the plan then holds no loaded detector)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if describe_only:
        loaded: list[_LoadedDetector] = []
        facts = describe_scan_detectors(detectors, precision, engine)
    else:
        loaded = load_scan_detectors(detectors, device, precision, engine, n_workers)
        facts = [DetectorFacts.of(ld) for ld in loaded]
    identities = {f.key: f.identity for f in facts}
    policy = Fusion(
        rule=fusion,
        band=(float(band[0]), float(band[1])),
        domains={k: str(i.get("training_domain") or "") for k, i in identities.items()},
        calibrated={k: i.get("calibration") is not None for k, i in identities.items()},
        excluded=frozenset(
            k
            for k, i in identities.items()
            if not i.get("probabilistic", True) and i.get("calibration") is None
        ),
    )
    opts = ScanOptions(
        trust_anchors=str(trust_anchors) if trust_anchors else None,
        default_trust=default_trust,
        legacy_anchors=str(legacy_anchors) if legacy_anchors else None,
        frames=frames,
        input_specs=tuple(dict.fromkeys(f.spec for f in facts)),
        watermark=watermark,
    )
    if trust_anchors:
        from deepaudit.c2pa_layer import read_trust_anchors

        read_trust_anchors(trust_anchors)  # a bad anchors file fails before the scan
    if legacy_anchors:
        from deepaudit.c2pa_layer import read_trust_anchors

        read_trust_anchors(legacy_anchors)
    summary = ScanSummary(
        detectors={
            f.key: {
                "path": str(d),
                **identities[f.key],
                "threshold": f.operating_threshold,
                "engine": None,  # what ran it, once a scoring process reports it
            }
            for f, d in zip(facts, detectors, strict=True)
        },
        fusion=policy.to_json() if facts else None,
    )
    results = out / RESULTS
    fingerprint = {
        "detectors": {
            f.key: {
                "path": str(Path(d).resolve()),
                "threshold": f.threshold,
                "config": f.params,
                "calibration": identities[f.key].get("calibration"),
            }
            for f, d in zip(facts, detectors, strict=True)
        },
        "fusion": policy.to_json(),
        "trust_anchors": _anchors_digest(trust_anchors),
        "legacy_anchors": _anchors_digest(legacy_anchors),
        "default_trust": _default_trust_digest() if default_trust else None,
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
    return ScanPlan(out, loaded, policy, opts, summary, done, started)


HEATMAPS = "heatmaps"  # the overlay PNGs of localisation maps, beside results.jsonl
_LOCALIZED = ("synthetic", "likely-synthetic", "needs-review")
_HEATMAP_SIDE = 512


def localize_record(
    rec: dict[str, Any], loaded: list[_LoadedDetector], policy: Fusion
) -> bytes | None:
    """Where a flagged image was changed, by a trained localisation detector (``localize``).

    For an image whose verdict is synthetic, likely-synthetic or needs-review, the first
    loaded detector that makes maps maps it: ``rec["localization"]`` gets the regions over
    its threshold (boxes with their mean score) and the name of the heatmap overlay, whose
    PNG bytes are returned for the caller to write under ``OUT/heatmaps/``. A failure is
    recorded in the record, never raised. Grad-CAM (``deepaudit audit explain``) stays the
    explanation of whole-image detectors; this is a trained output.
    """
    mappers = [ld for ld in loaded if hasattr(ld.det, "predict_map")]
    if not mappers or rec.get("kind") != "image" or "error" in rec:
        return None
    if verdict_for(rec, policy)[0] not in _LOCALIZED:
        return None
    ld = mappers[0]
    try:
        from deepaudit.detectors.localize import regions
        from deepaudit.media import read_image

        image = read_image(rec["path"])
        (prob,) = ld.det.predict_map([image])
        threshold = float(ld.det.map_threshold)
        name = f"{(rec.get('sha256') or 'x' * 16)[:16]}-{ld.key}.png"
        rec["localization"] = {
            "detector": ld.key,
            "kind": "trained localisation map (not an explanation)",
            "threshold": threshold,
            "max": round(float(prob.max()), 4),
            "area_over_threshold": round(float((prob >= threshold).mean()), 4),
            "regions": regions(prob, threshold),
            "heatmap": f"{HEATMAPS}/{name}",
        }
        return _overlay_png(image, prob, threshold)
    except Exception as exc:  # a map must never cost the file its row
        rec["localization"] = {"detector": ld.key, "error": error_record(exc, Path(rec["path"]))}
        return None


def _overlay_png(image: np.ndarray, prob: np.ndarray, threshold: float) -> bytes:
    """The image with its map blended in (jet colours), regions over the threshold outlined."""
    import cv2

    heat = cv2.applyColorMap(np.clip(prob * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    blend = (0.55 * image + 0.45 * heat[..., ::-1]).astype(np.uint8)
    edges = cv2.morphologyEx((prob >= threshold).astype(np.uint8), cv2.MORPH_GRADIENT, None)
    blend[edges > 0] = (255, 255, 255)
    h, w = blend.shape[:2]
    k = min(1.0, _HEATMAP_SIDE / max(h, w))
    if k < 1.0:
        blend = cv2.resize(blend, (max(1, round(w * k)), max(1, round(h * k))), cv2.INTER_AREA)
    ok, png = cv2.imencode(".png", blend[..., ::-1])
    if not ok:
        raise ValueError("the heatmap could not be encoded")
    return png.tobytes()


def write_heatmap(out: Path, rec: dict[str, Any], png: bytes) -> None:
    """Write a record's heatmap overlay (atomically) where its ``localization`` names it."""
    dest = out / rec["localization"]["heatmap"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    part.write_bytes(png)
    os.replace(part, dest)


def result_line(rec: dict[str, Any], policy: Fusion) -> str:
    """A scored record made final (fused score, verdict and reasons) as its results line."""
    rec.pop("_inputs", None)
    fused = fuse(rec.get("scores") or {}, policy.rule, policy.excluded)
    if fused is not None:
        rec["fused"] = {"score": fused, **policy.to_json()}
    verdict, reasons = verdict_for(rec, policy)
    rec["verdict"] = verdict
    rec["reasons"] = [r.to_json() for r in reasons]
    return json.dumps(rec, default=_json_default) + "\n"


def finish_scan(plan: ScanPlan, *, compact: bool, csv: bool, report: bool) -> ScanSummary:
    """Drop lines of files scanned again, then write the summary, the CSV and the report by
    streaming ``results.jsonl``."""
    out, results, summary, loaded = plan.out, plan.results, plan.summary, plan.loaded
    if compact:
        compact_results(results)
    summary.seconds = time.perf_counter() - plan.started
    for ld in loaded:  # what ran each detector (known once it has scored something)
        choice = getattr(ld.det, "engine_choice", None)
        if choice is not None:
            summary.detectors[ld.key]["engine"] = choice.to_json()
    keys = [ld.key for ld in loaded]
    loaded.clear()  # the models, their engines and caches go before the report is built:
    _release_memory()  # the report's peak then stays under the scan's (flat memory in N)
    summarise_results(results, summary)
    (out / SUMMARY).write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    if csv:
        write_results_csv(results, out / "results.csv", keys)
    if report:
        from deepaudit.audit.report import write_scan_report

        write_scan_report(results, summary, out / REPORT)
    return summary


def load_scan_detectors(
    detectors: Sequence[str | os.PathLike[str]],
    device: str,
    precision: str,
    engine: str,
    n_workers: int,
) -> list[_LoadedDetector]:
    """The scan's detectors, with ``auto`` precision resolved as on this machine (a refused
    precision fails here, before anything is scanned)."""
    from deepaudit.detectors import load_detector
    from deepaudit.detectors.inference import detector_keys
    from deepaudit.devices import device_policy, resolve_precision

    concrete = resolve_precision(precision, device)
    if detectors:
        device_policy(device, precision=concrete)
    loaded = []
    for key, d in zip(detector_keys(detectors), detectors, strict=True):
        det = load_detector(d, device=device, precision=concrete, engine=engine)
        # inference shares the cores with the decoding workers; on CPU it is the heavier
        # stage (decode ~270 files/s a core vs ~40 for resnet50), so it keeps one core more
        det.inference_threads = max(1, (os.cpu_count() or 1) - n_workers + 1)
        loaded.append(_LoadedDetector(key, det, det.input_spec()))
    return loaded


def _release_memory() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc ``malloc_trim``), so what the
    detectors held is not counted again when the report is built."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _default_trust_digest() -> str | None:
    import hashlib

    from deepaudit.trust_lists import default_signing_anchors

    pem = default_signing_anchors()
    return hashlib.sha256(pem.encode()).hexdigest()[:16] if pem else None


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

    from deepaudit.audit.handoff import BlockPool

    ctx = mp.get_context("spawn" if os.environ.get("DEEPAUDIT_SPAWN") else None)
    # arrays come back through shared memory, one block per file in flight (audit.handoff)
    blocks = BlockPool.for_scan(n_workers * 4, _block_bytes(opts))
    with contextlib.ExitStack() as stack, ProcessPoolExecutor(n_workers, mp_context=ctx) as pool:
        if blocks is not None:
            stack.callback(blocks.close)  # after the workers are gone, on any exit
        in_flight: set[Future] = set()
        submitted: dict[Future, tuple[Path, str | None]] = {}
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
                block = blocks.lend() if blocks is not None else None
                fut = pool.submit(_examine_into, str(p), opts, block)
                submitted[fut] = (p, block)
                in_flight.add(fut)
            if not in_flight:
                return
            finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for f in finished:
                path, block = submitted.pop(f)
                try:
                    rec = f.result()
                except Exception as exc:  # a worker died (e.g. out of memory on a bomb)
                    if blocks is not None:
                        blocks.release(block)
                    yield {"path": str(path), "kind": "other", "error": error_record(exc, path)}
                    continue
                yield blocks.take(rec, block) if blocks is not None else rec


def _examine_into(path: str, opts: ScanOptions, block: str | None) -> dict[str, Any]:
    """A worker's :func:`examine_file`, its arrays placed in shared-memory ``block``."""
    from deepaudit.audit.handoff import write_block

    return write_block(examine_file(path, opts), block)


def _block_bytes(opts: ScanOptions) -> int:
    """One file's arrays: every fixed-size crop, per sampled frame for a clip; on the GPU
    path a JPEG's bytes up to 4 MiB. Larger ones are pickled (audit.handoff)."""
    crops = sum(3 * spec.size**2 for spec in opts.input_specs if spec.size)
    need = crops * max(1, opts.frames)
    return max(need, 4 << 20) if opts.gpu_decode else need


def score_records(
    records: list[dict[str, Any]], loaded: list[_LoadedDetector], batch_size: int = 32
) -> None:
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
                # fixed-size forward passes: a flush of clips has many frames, and one pass
                # per flush made activation memory (and the allocator's peak) follow it
                batch_size=batch_size,
            )
        except Exception as exc:  # one detector failing must not lose the files
            for k in owners:
                records[k].setdefault("detector_errors", {})[ld.key] = str(exc)
            continue
        for k, result in zip(owners, results, strict=True):
            records[k].setdefault("scores", {})[ld.key] = result.to_json()


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    return str(o)
