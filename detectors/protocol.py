"""The evaluation protocol with no shortcuts: what `detectors evaluate` does by default.

Test sets of this field hand a detector easy ways to separate the classes that have nothing
to do with generation: real photos are JPEGs and fakes PNGs (Grommelt et al., "Fake or
JPEG?", 2024), real photos are large and fakes 512², and a resize changes which of them a
detector sees at native resolution (a 2026 audit of training-free detectors saw per-generator
AUROC move by up to 0.38 between native size and 512 px). So, before scoring:

1. **Identical re-encoding.** Every test image, real or synthetic, is decoded and encoded
   again with one :class:`EncodePolicy` (format, quality, chroma subsampling, size policy;
   JPEG q95 4:2:0 at native size by default). ``--as-is`` scores the files as they are.
2. **Resize audit.** The same set is scored at native size, as a centred square crop, and
   with the shorter side resized to 256 and to 512; the AUC spread (overall and per
   generator) is reported, with a warning when it exceeds 0.05.
3. **Format shortcut.** The AUC of the files as they are against the AUC after re-encoding
   both classes identically (the protocol's policy; JPEG q95 under ``--as-is``): a drop over
   0.1 means the detector reads the file format.
4. **Format note.** Which formats and sizes each class came in.

Everything comes from one pass over the files: each is decoded once, and every variant
(the protocol's, the robustness sweep's) is derived from the decoded pixels in memory.
"""

from __future__ import annotations

import io
import logging
import math
import os
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from deepaudit.detectors.data import ItemSet, LabeledItem
from deepaudit.detectors.inference import DEFAULT_FRAMES, score_prepared
from deepaudit.detectors.metrics import auc
from deepaudit.errors import DeepauditError

__all__ = [
    "DEFAULT_ENCODE",
    "FORMAT_DROP_WARN",
    "RESIZE_AUDIT",
    "RESIZE_SPREAD_WARN",
    "EncodePolicy",
    "FileFacts",
    "ScoredVariants",
    "Variant",
    "parse_encode",
    "per_generator_auc",
    "protocol_variants",
    "score_variants",
    "shortcut_report",
]

logger = logging.getLogger(__name__)

RESIZE_AUDIT: tuple[str, ...] = ("native", "center-crop", "resize:256", "resize:512")
RESIZE_SPREAD_WARN = 0.05
FORMAT_DROP_WARN = 0.1
_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


@dataclass(frozen=True)
class EncodePolicy:
    """How every test image is re-encoded before scoring, whatever its class.

    ``max_side`` is the size policy: None keeps the native size; a number scales larger
    images down (bicubic) so their longer side is at most that, before encoding.
    """

    format: Literal["jpeg", "png", "webp"] = "jpeg"
    quality: int = 95
    subsampling: Literal["4:4:4", "4:2:2", "4:2:0"] = "4:2:0"
    max_side: int | None = None

    def __post_init__(self) -> None:
        if self.format not in ("jpeg", "png", "webp"):
            raise ValueError(f"encode format must be jpeg, png or webp, got {self.format!r}")
        if not 1 <= int(self.quality) <= 100:
            raise ValueError(f"encode quality must be 1-100, got {self.quality}")
        if self.subsampling not in _SUBSAMPLING:
            raise ValueError(f"chroma subsampling must be one of {sorted(_SUBSAMPLING)}")
        if self.max_side is not None and self.max_side < 8:
            raise ValueError(f"max_side must be at least 8 pixels, got {self.max_side}")

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """Encode an (H, W, 3) uint8 image under this policy and decode it again."""
        from PIL import Image

        im = Image.fromarray(np.ascontiguousarray(rgb[..., :3] if rgb.ndim == 3 else rgb))
        im = im.convert("RGB")
        if self.max_side is not None and max(im.size) > self.max_side:
            s = self.max_side / max(im.size)
            size = (max(1, round(im.width * s)), max(1, round(im.height * s)))
            im = im.resize(size, Image.Resampling.BICUBIC)
        if self.format == "png":
            return np.asarray(im)  # lossless: encoding would give these pixels back
        buf = io.BytesIO()
        if self.format == "jpeg":
            im.save(buf, "JPEG", quality=self.quality, subsampling=_SUBSAMPLING[self.subsampling])
        else:
            im.save(buf, "WEBP", quality=self.quality)
        buf.seek(0)
        return np.asarray(Image.open(buf).convert("RGB"))

    def describe(self) -> str:
        size = "native size" if self.max_side is None else f"longer side <= {self.max_side}"
        if self.format == "png":
            return f"png (lossless), {size}"
        chroma = f" {self.subsampling}" if self.format == "jpeg" else ""
        return f"{self.format} q{self.quality}{chroma}, {size}"

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "quality": None if self.format == "png" else self.quality,
            "subsampling": self.subsampling if self.format == "jpeg" else None,
            "max_side": self.max_side,
            "description": self.describe(),
        }


DEFAULT_ENCODE = EncodePolicy()


def parse_encode(
    spec: str, *, subsampling: str = "4:2:0", max_side: int | None = None
) -> EncodePolicy:
    """``jpeg:95``, ``webp:90`` or ``png`` → an :class:`EncodePolicy` (ValueError if not)."""
    fmt, _, quality = spec.strip().lower().partition(":")
    try:
        q = int(quality) if quality else 95
    except ValueError:
        raise ValueError(f"encode {spec!r}: quality {quality!r} is not a whole number") from None
    return EncodePolicy(fmt, q, subsampling, max_side)  # type: ignore[arg-type]


def _centre_square(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return np.ascontiguousarray(rgb[y : y + s, x : x + s])


def _shorter_side(size: int) -> Callable[[np.ndarray], np.ndarray]:
    def resize(rgb: np.ndarray) -> np.ndarray:
        from PIL import Image

        h, w = rgb.shape[:2]
        s = size / min(h, w)
        if s == 1:
            return rgb
        new = (max(1, round(w * s)), max(1, round(h * s)))
        return np.asarray(Image.fromarray(rgb).resize(new, Image.Resampling.BICUBIC))

    return resize


@dataclass(frozen=True)
class Variant:
    """One way to score the set: a transform of the protocol's pixels (or of the file's)."""

    name: str
    transform: Callable[[np.ndarray], np.ndarray] | None = None
    from_file: bool = False  # start from the decoded file, not the re-encoded pixels


def protocol_variants(
    *,
    encode: EncodePolicy | None,
    robustness: Sequence[Any] = (),
    resize_audit: bool = True,
    format_check: bool = True,
) -> list[Variant]:
    """The variants evaluate scores: ``main`` (the protocol's pixels as the detector
    prepares them), the robustness perturbations, the resize audit and the format check."""
    out = [Variant("main")]
    out += [Variant(p.spec, p.apply) for p in robustness]
    if resize_audit:
        out += [Variant("center-crop", _centre_square)]
        out += [Variant(n, _shorter_side(int(n.split(":")[1]))) for n in RESIZE_AUDIT[2:]]
    if format_check:  # the files as they are vs re-encoded (whichever main is not)
        out.append(
            Variant("as-is", None, from_file=True)
            if encode is not None
            else Variant("reencoded", DEFAULT_ENCODE.apply, from_file=True)
        )
    return out


@dataclass(frozen=True)
class FileFacts:
    """What a file was before the protocol touched it: format and size."""

    format: str
    width: int
    height: int


@dataclass
class ScoredVariants:
    """Scores per variant (NaN where a file could not be read) and each file's facts."""

    scores: dict[str, np.ndarray]
    facts: list[FileFacts | None] = field(default_factory=list)


def score_variants(
    det: Any,
    items: ItemSet,
    variants: Sequence[Variant],
    *,
    encode: EncodePolicy | None,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
    threads: int | None = None,
) -> ScoredVariants:
    """Decode each file once and score every variant of it (videos: frame by frame)."""
    from concurrent.futures import ThreadPoolExecutor

    from deepaudit.media import read_image, read_video, sniff_format

    spec = det.input_spec()
    frames = det.frames or DEFAULT_FRAMES

    def per_frame(fn: Callable[[np.ndarray], np.ndarray], media: np.ndarray, video: bool):
        return np.stack([fn(f) for f in media]) if video else fn(media)

    def load(item: LabeledItem) -> tuple[FileFacts, dict[str, np.ndarray]] | None:
        video = item.kind == "video"
        try:
            media = (
                read_video(item.path, num_frames=frames).frames if video else read_image(item.path)
            )
            shape = media.shape[1:3] if video else media.shape[:2]
            facts = FileFacts(sniff_format(item.path).format, int(shape[1]), int(shape[0]))
            base = per_frame(encode.apply, media, video) if encode is not None else media
            out = {}
            for v in variants:
                src = media if v.from_file else base
                x = per_frame(v.transform, src, video) if v.transform is not None else src
                out[v.name] = spec.prepare(x)
            return facts, out
        except DeepauditError as exc:
            logger.warning("skipping %s", exc)
            return None

    scores = {v.name: np.full(len(items), np.nan) for v in variants}
    facts: list[FileFacts | None] = [None] * len(items)
    n_threads = threads or min(8, max(1, (os.cpu_count() or 2)))
    # every variant of a chunk's files is held at once: whole-image inputs get small chunks
    step = batch_size if spec.size is not None else max(1, min(batch_size, 8))
    done = 0
    with ThreadPoolExecutor(n_threads) as pool:
        for start in range(0, len(items), step):
            chunk = items.items[start : start + step]
            loaded = list(pool.map(load, chunk))
            keep = [k for k, x in enumerate(loaded) if x is not None]
            for k in keep:
                facts[start + k] = loaded[k][0]
            for v in variants:
                results = score_prepared(
                    det,
                    [loaded[k][1][v.name] for k in keep],
                    video=[chunk[k].kind == "video" for k in keep],
                    batch_size=batch_size,
                )
                for k, r in zip(keep, results, strict=True):
                    if r is not None:
                        scores[v.name][start + k] = r.score
            done += len(chunk)
            if progress is not None:
                progress(done, len(items))
    return ScoredVariants(scores, facts)


def _auc(y: np.ndarray, s: np.ndarray) -> float | None:
    ok = ~np.isnan(s)
    value = auc(y[ok], s[ok]) if ok.any() else math.nan
    return None if math.isnan(value) else round(float(value), 6)


def per_generator_auc(items: ItemSet, y: np.ndarray, s: np.ndarray) -> dict[str, float | None]:
    """Each generator's items against every real item (NaN scores left out)."""
    gens = sorted({i.generator for i in items if i.label == 1 and i.generator})
    is_gen = {g: np.array([i.generator == g for i in items]) for g in gens}
    return {g: _auc(y[(y == 0) | is_gen[g]], s[(y == 0) | is_gen[g]]) for g in gens}


def _spread(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return round(max(got) - min(got), 6) if len(got) > 1 else None


def _format_note(items: ItemSet, facts: Sequence[FileFacts | None]) -> dict[str, Any]:
    classes: dict[str, dict[str, Any]] = {}
    for name, lab in (("real", 0), ("synthetic", 1)):
        got = [f for i, f in zip(items, facts, strict=True) if i.label == lab and f is not None]
        counts = Counter(f.format for f in got)
        classes[name] = {
            "formats": dict(counts.most_common()),
            "median_width": statistics.median(f.width for f in got) if got else None,
            "median_height": statistics.median(f.height for f in got) if got else None,
        }
    real, fake = classes["real"], classes["synthetic"]
    same_formats = set(real["formats"]) == set(fake["formats"])
    same_size = (real["median_width"], real["median_height"]) == (
        fake["median_width"],
        fake["median_height"],
    )
    parts = []
    if not same_formats:
        parts.append(
            "real files are "
            + ", ".join(real["formats"])
            + " and synthetic files "
            + ", ".join(fake["formats"])
        )
    if not same_size:
        parts.append(
            f"median sizes differ (real {real['median_width']}x{real['median_height']}, "
            f"synthetic {fake['median_width']}x{fake['median_height']})"
        )
    return {
        **classes,
        "formats_match": same_formats,
        "sizes_match": same_size,
        "note": "; ".join(parts) or "both classes came in the same formats and sizes",
    }


def shortcut_report(
    items: ItemSet,
    scored: ScoredVariants,
    *,
    encode: EncodePolicy | None,
    main_auc: float | None,
) -> dict[str, Any]:
    """The protocol's report: re-encoding, format note, resize audit and format shortcut."""
    y = items.labels
    s = scored.scores
    warnings: list[str] = []
    note = _format_note(items, scored.facts)
    report: dict[str, Any] = {
        "reencoded": encode.to_json() if encode is not None else None,
        "input": note,
    }
    if encode is None and not (note["formats_match"] and note["sizes_match"]):
        warnings.append(f"scored as-is although {note['note']}: the AUC may reflect that")
    if "center-crop" in s:
        names = [n for n in RESIZE_AUDIT if n in s or n == "native"]
        by = {n: s["main" if n == "native" else n] for n in names}
        variants = {
            n: {"auc": _auc(y, v), "per_generator": per_generator_auc(items, y, v)}
            for n, v in by.items()
        }
        gens = sorted({g for v in variants.values() for g in v["per_generator"]})
        per_gen = {g: _spread([variants[n]["per_generator"].get(g) for n in names]) for g in gens}
        overall = _spread([variants[n]["auc"] for n in names])
        worst = max([x for x in (overall, *per_gen.values()) if x is not None], default=None)
        warn = None
        if worst is not None and worst > RESIZE_SPREAD_WARN:
            where = "overall" if worst == overall else max(per_gen, key=lambda g: per_gen[g] or 0)
            warn = (
                f"AUC moves by {worst:.3f} ({where}) between native size, centre crop and "
                f"resizing to 256/512: the score depends on image size"
            )
            warnings.append(warn)
        report["resize_audit"] = {
            "variants": variants,
            "spread": overall,
            "per_generator_spread": per_gen,
            "max_spread": worst,
            "threshold": RESIZE_SPREAD_WARN,
            "warning": warn,
        }
    if "as-is" in s or "reencoded" in s:
        as_is = _auc(y, s["as-is"]) if "as-is" in s else main_auc
        again = _auc(y, s["reencoded"]) if "reencoded" in s else main_auc
        drop = None if as_is is None or again is None else round(as_is - again, 6)
        suspected = bool(drop is not None and drop > FORMAT_DROP_WARN)
        report["format_shortcut"] = {
            "auc_original": as_is,
            "auc_reencoded": again,
            "reencoded_as": (encode or DEFAULT_ENCODE).describe(),
            "auc_drop": drop,
            "shortcut_suspected": suspected,
        }
        if suspected:
            warnings.append(
                f"AUC drops by {drop:.3f} when both classes are re-encoded identically: the "
                "detector may be reading the file format"
            )
    report["warnings"] = warnings
    return report
