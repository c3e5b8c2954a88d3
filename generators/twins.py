"""Real photo + synthetic twin: one pair id, one size, one file format.

A detector trained on pairs can only use what differs within a pair. So the twin of a JPEG
photo is written as a JPEG with the photo's own quantisation tables, chroma subsampling
and progressive flag; a PNG stays a PNG; greyscale stays greyscale; an EXIF orientation
is written back the same way; the ICC profile travels along. The real photo is linked (or
copied) into the dataset unchanged, beside its twin, and both carry the same ``pair`` id
(a prefix of the photo's SHA-256), so ``manifest split --group-by pair`` keeps them in one
split, and twins of one photo made by several entries share it too.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.errors import MediaError
from deepaudit.manifest import AttributeValue, ManifestItem

__all__ = [
    "REAL_FOLDER",
    "ImageEncoding",
    "RealPhoto",
    "estimate_jpeg_quality",
    "list_real_photos",
    "pair_items",
    "read_encoding",
    "write_twin",
]

REAL_FOLDER = "real"  # where the reals of a paired dataset live; ids are real/<pair>
_PAIR_CHARS = 16  # 64 bits of the SHA-256: no collision in any dataset this will see
_SUBSAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}
_WEBP_LOSSY_QUALITY = 90  # WebP keeps no quality setting to estimate from
# Formats a twin can be written in, with the suffix used when the real's own does not fit.
_WRITABLE = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}
_WRITABLE |= {"GIF": ".gif"}
_WRITABLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
# ImageOps.exif_transpose turns a stored image upright; these turn an upright one back.
_TO_STORED = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE"}
_TO_STORED |= {6: "ROTATE_90", 7: "TRANSVERSE", 8: "ROTATE_270"}


@dataclass(frozen=True)
class RealPhoto:
    """A real image a twin is made from, with what its manifest said about it."""

    path: Path
    source: str
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    split: str | None = None


def list_real_photos(src: str | os.PathLike[str]) -> list[RealPhoto]:
    """The real images of a manifest folder (with attributes and splits), a folder of image
    files (sorted), or one file."""
    from deepaudit.manifest import MANIFEST_NAME, read_manifest
    from deepaudit.manifest_import import iter_files
    from deepaudit.media_formats import IMAGE_FORMATS

    root = Path(src)
    if (root / MANIFEST_NAME).is_file():
        m = read_manifest(root)
        return [
            RealPhoto(m.resolve(i), i.source, dict(i.attributes), i.split)
            for i in m.items
            if i.kind == "image" and i.label == "real"
        ]
    if root.is_dir():
        exts = {e for _, found in IMAGE_FORMATS.values() for e in found}
        return [RealPhoto(p, root.name) for p in iter_files(root) if p.suffix.lower() in exts]
    return [RealPhoto(root, root.parent.name or "real")]


@dataclass(frozen=True)
class ImageEncoding:
    """How an image file was encoded, as far as a twin can repeat it."""

    format: str  # Pillow's name: JPEG, PNG, WEBP, ...
    suffix: str
    mode: str  # "RGB" or "L": what the twin is written in
    quality: int | None = None  # JPEG: the IJG quality whose tables match best
    qtables: Any = None  # JPEG: the file's own tables, written back as they are
    subsampling: int | None = None  # JPEG chroma subsampling (Pillow's code)
    progressive: bool = False
    lossless: bool | None = None  # WebP
    orientation: int = 1  # EXIF orientation tag
    icc_profile: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": self.format.lower(), "mode": self.mode}
        if self.format == "JPEG":
            out.update(
                quality=self.quality,
                tables="copied",
                subsampling=_SUBSAMPLING.get(self.subsampling or 0, "other"),
                progressive=self.progressive,
            )
        if self.format == "WEBP":
            out["lossless"] = self.lossless
            if not self.lossless:
                out["quality"] = _WEBP_LOSSY_QUALITY
        if self.orientation != 1:
            out["orientation"] = self.orientation
        return out


def read_encoding(path: str | os.PathLike[str]) -> ImageEncoding:
    """The encoding of an image file (headers only; pixels are not decoded)."""
    from PIL import Image, JpegImagePlugin

    from deepaudit.media import image_exif
    from deepaudit.media_formats import extension_matches

    p = Path(path)
    try:
        with Image.open(p) as im:
            fmt = "JPEG" if im.format == "MPO" else (im.format or "")  # phones write MPO
            if fmt not in _WRITABLE:
                raise MediaError(
                    p,
                    f"cannot write a twin as {im.format or 'this format'}; convert the real "
                    "images to PNG or JPEG first",
                )
            exif = image_exif(im)
            orientation = int(exif.get(0x0112, 1)) if exif is not None else 1
            suffix = p.suffix.lower()
            # a PNG named .jpg stays a PNG (its twin is a .png); .jfif and such become .jpg
            if suffix not in _WRITABLE_SUFFIXES or not extension_matches(p, fmt.lower()):
                suffix = _WRITABLE[fmt]
            common: dict[str, Any] = {
                "format": fmt,
                "suffix": suffix,
                "mode": "L" if im.mode in ("L", "LA", "1", "I;16", "I") else "RGB",
                "orientation": orientation if orientation in _TO_STORED else 1,
                "icc_profile": im.info.get("icc_profile"),
            }
            if fmt == "JPEG":
                tables = getattr(im, "quantization", None) or None
                sampling = JpegImagePlugin.get_sampling(im)
                return ImageEncoding(
                    **common,
                    quality=estimate_jpeg_quality(tables) if tables else None,
                    qtables=tables,
                    subsampling=sampling if sampling in _SUBSAMPLING else None,
                    progressive=bool(im.info.get("progressive") or im.info.get("progression")),
                )
            if fmt == "WEBP":
                return ImageEncoding(**common, lossless=_webp_is_lossless(p))
            return ImageEncoding(**common)
    except OSError as exc:
        raise MediaError(p, f"cannot read the real image's encoding ({exc})") from None


def _webp_is_lossless(p: Path) -> bool:
    """Lossless WebP stores a VP8L chunk, lossy a 'VP8 ' one (after VP8X in extended files)."""
    with open(p, "rb") as fh:
        head = fh.read(1 << 16)
    return b"VP8L" in head[12:] and b"VP8 " not in head[12:]


@functools.lru_cache(maxsize=1)
def _ijg_tables() -> dict[int, tuple[np.ndarray, ...]]:
    """The tables Pillow (libjpeg's IJG scaling) writes at each quality 1-100, read back in
    the same form as a file's, so the comparison needs no zigzag bookkeeping."""
    from PIL import Image

    out = {}
    grey = Image.new("RGB", (8, 8))
    for q in range(1, 101):
        buf = io.BytesIO()
        grey.save(buf, "JPEG", quality=q)
        with Image.open(buf) as im:
            out[q] = tuple(np.asarray(im.quantization[k], float) for k in sorted(im.quantization))
    return out


def estimate_jpeg_quality(qtables: Mapping[int, Any]) -> int | None:
    """The IJG quality (1-100) whose standard tables are closest to a file's own.

    Exact for files written by libjpeg-based encoders (cameras' own tables land on the
    nearest quality); the twin is written with the file's tables themselves, so this figure
    is for the manifest, not for the encoder.
    """
    have = [np.asarray(qtables[k], float) for k in sorted(qtables)][:2]
    if not have or any(t.size != 64 for t in have):
        return None
    best, best_err = None, float("inf")
    for q, ref in _ijg_tables().items():
        err = sum(float(np.abs(h - r).sum()) for h, r in zip(have, ref, strict=False))
        if err < best_err:
            best, best_err = q, err
    return best


def write_twin(stem: str | os.PathLike[str], pixels: np.ndarray, enc: ImageEncoding) -> Path:
    """Write ``pixels`` (upright RGB uint8) at ``stem`` + the real's suffix, encoded as the
    real image was."""
    from PIL import Image

    from deepaudit.media import write_image

    path = Path(f"{os.fspath(stem)}{enc.suffix}")
    im = Image.fromarray(np.ascontiguousarray(pixels[..., :3]))
    if enc.mode == "L":
        im = im.convert("L")
    params: dict[str, Any] = {}
    if enc.orientation != 1:  # stored as the real one is: sideways, with the same tag
        im = im.transpose(getattr(Image.Transpose, _TO_STORED[enc.orientation]))
        exif = Image.Exif()
        exif[0x0112] = enc.orientation
        params["exif"] = exif.tobytes()
    if enc.icc_profile:
        params["icc_profile"] = enc.icc_profile
    quality = 95
    if enc.format == "JPEG" and enc.qtables:
        # quality -1: the tables as they are (any other quality would rescale them)
        params.update(qtables=enc.qtables, progressive=enc.progressive, quality=-1)
        params["subsampling"] = enc.subsampling if enc.subsampling is not None else 2
    elif enc.format == "JPEG":
        quality = enc.quality or 95
    elif enc.format == "WEBP":
        params["lossless"] = bool(enc.lossless)
        quality = _WEBP_LOSSY_QUALITY
    return write_image(path, np.asarray(im), quality=quality, save_params=params)


def _place_real(src: Path, dst: Path) -> None:
    """The real file, byte for byte: a hard link where the file system allows, else a copy."""
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except OSError as exc:
        raise MediaError(dst, f"cannot place the real image {src}: {exc.strerror or exc}") from exc


def pair_items(
    out: Path,
    twin_stem: Path,
    twin_id: str,
    pixels: np.ndarray,
    real: RealPhoto,
    *,
    source: str,
    generator: Any,
    mask: np.ndarray | None = None,
    extra: Mapping[str, Any] | None = None,
    sign: Callable[[Path], None] | None = None,
) -> tuple[ManifestItem, ManifestItem]:
    """Write the twin (and place the real, once) and return (real item, twin item)."""
    from deepaudit.media import file_sha256, write_image

    real_sha = file_sha256(real.path)
    pair = real_sha[:_PAIR_CHARS]
    enc = read_encoding(real.path)
    h, w = pixels.shape[:2]
    if (h, w) != _upright_size(real.path):
        raise MediaError(real.path, f"the twin came out {w}x{h}, not the real image's size")
    real_rel = f"{REAL_FOLDER}/{pair}{real.path.suffix.lower()}"
    _place_real(real.path, out / real_rel)
    twin_path = write_twin(twin_stem, pixels, enc)
    if sign is not None:
        sign(twin_path)
    twin_extra: dict[str, Any] = {**(extra or {}), "pair": pair, "encoding": enc.to_json()}
    if mask is not None:
        mask_path = write_image(Path(f"{twin_stem}.mask.png"), mask)
        twin_extra["mask"] = mask_path.relative_to(out).as_posix()
    common = {
        "kind": "image",
        "split": real.split,
        "attributes": dict(real.attributes),
        "width": int(w),
        "height": int(h),
        "frames": 1,
    }
    real_item = ManifestItem(
        id=f"{REAL_FOLDER}/{pair}",
        path=real_rel,
        sha256=real_sha,
        label="real",
        source=real.source,
        extra={"pair": pair, "encoding": enc.to_json()},
        **common,  # type: ignore[arg-type]
    )
    twin = ManifestItem(
        id=twin_id,
        path=twin_path.relative_to(out).as_posix(),
        sha256=file_sha256(twin_path),
        label="synthetic",
        source=source,
        generator=generator,
        extra=twin_extra,
        **common,  # type: ignore[arg-type]
    )
    return real_item, twin


def _upright_size(path: Path) -> tuple[int, int]:
    from deepaudit.media import probe

    info = probe(path)
    return int(info.height or 0), int(info.width or 0)
