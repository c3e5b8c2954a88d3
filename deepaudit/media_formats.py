"""Recognise media formats from their first bytes (magic numbers), never from the name."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "IMAGE_FORMATS",
    "VIDEO_CONTAINERS",
    "FormatGuess",
    "extension_matches",
    "sniff_bytes",
]

# format → (MIME type, extensions). Formats Pillow decodes; GIF/WebP/PNG may be animated.
IMAGE_FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "jpeg": ("image/jpeg", (".jpg", ".jpeg", ".jpe", ".jfif")),
    "png": ("image/png", (".png", ".apng")),
    "gif": ("image/gif", (".gif",)),
    "webp": ("image/webp", (".webp",)),
    "bmp": ("image/bmp", (".bmp", ".dib")),
    "tiff": ("image/tiff", (".tif", ".tiff")),
    "avif": ("image/avif", (".avif",)),
}
# Containers OpenCV's FFmpeg backend decodes.
VIDEO_CONTAINERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mp4": ("video/mp4", (".mp4", ".m4v")),
    "mov": ("video/quicktime", (".mov", ".qt")),
    "avi": ("video/x-msvideo", (".avi",)),
    "mkv": ("video/x-matroska", (".mkv",)),
    "webm": ("video/webm", (".webm",)),
    "flv": ("video/x-flv", (".flv",)),
    "mpeg-ts": ("video/mp2t", (".ts", ".mts", ".m2ts")),
    "mpeg-ps": ("video/mpeg", (".mpg", ".mpeg", ".vob")),
    "asf": ("video/x-ms-asf", (".wmv", ".asf")),
}

_DESCRIPTIONS = {
    "jpeg": "JPEG image",
    "png": "PNG image",
    "gif": "GIF image",
    "webp": "WebP image",
    "bmp": "BMP image",
    "tiff": "TIFF image",
    "avif": "AVIF image",
    "mp4": "MP4 video",
    "mov": "QuickTime (MOV) video",
    "avi": "AVI video",
    "mkv": "Matroska (MKV) video",
    "webm": "WebM video",
    "flv": "Flash (FLV) video",
    "mpeg-ts": "MPEG transport stream",
    "mpeg-ps": "MPEG program stream",
    "asf": "Windows Media (ASF/WMV) video",
}

Kind = Literal["image", "video", "unsupported", "other"]


@dataclass(frozen=True)
class FormatGuess:
    """The format a file's first bytes announce.

    ``kind`` is "image" for still-image formats (which may still hold an animation),
    "video" for containers, "unsupported" for media deepaudit cannot decode, and "other"
    for content that is not media at all (PDF, ZIP, text, ...).
    """

    kind: Kind
    format: str
    description: str

    @property
    def mime(self) -> str:
        table = IMAGE_FORMATS if self.kind == "image" else VIDEO_CONTAINERS
        entry = table.get(self.format)
        return entry[0] if entry else "application/octet-stream"


def _media(fmt: str) -> FormatGuess:
    kind: Kind = "image" if fmt in IMAGE_FORMATS else "video"
    return FormatGuess(kind, fmt, _DESCRIPTIONS[fmt])


def _unsupported(fmt: str, description: str) -> FormatGuess:
    return FormatGuess("unsupported", fmt, description)


def _other(fmt: str, description: str) -> FormatGuess:
    return FormatGuess("other", fmt, description)


_ISO_IMAGE_BRANDS = {
    b"avif": "avif",
    b"avis": "avif",
    b"heic": "heic",
    b"heix": "heic",
    b"hevc": "heic",
    b"heim": "heic",
    b"heis": "heic",
    b"mif1": "heif",
    b"msf1": "heif",
}
_ISO_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A "}
_QT_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}


def _sniff_iso_bmff(head: bytes) -> FormatGuess:
    brand = head[8:12]
    compatible = {head[i : i + 4] for i in range(16, min(len(head), 64), 4)}
    for b in (brand, *sorted(compatible)):
        fmt = _ISO_IMAGE_BRANDS.get(b)
        if fmt == "avif":
            return _avif_or_unsupported()
        if fmt is not None:
            return _unsupported(fmt, f"{fmt.upper()} image (no decoder installed)")
        if b in (brand,) and b in _ISO_AUDIO_BRANDS:
            return _unsupported("m4a", "MPEG-4 audio without video")
    if brand == b"qt  ":
        return _media("mov")
    if brand.startswith(b"3g"):
        return _media("mp4")  # 3GPP is an MP4 profile
    return _media("mp4")


def _avif_or_unsupported() -> FormatGuess:
    try:
        from PIL import features

        if features.check("avif"):
            return _media("avif")
    except Exception:
        pass
    return _unsupported("avif", "AVIF image (this Pillow has no AVIF decoder)")


def _looks_like_text(head: bytes) -> bool:
    sample = head[:512]
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character cut at the sample's end is still text
        try:
            sample[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


def sniff_bytes(head: bytes) -> FormatGuess:
    """Guess a format from a file's first bytes (a few KiB is plenty)."""
    if head.startswith(b"\xff\xd8\xff"):
        return _media("jpeg")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _media("png")
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return _media("gif")
    if head[:4] == b"RIFF" and len(head) >= 12:
        sub = head[8:12]
        if sub == b"WEBP":
            return _media("webp")
        if sub == b"AVI ":
            return _media("avi")
        if sub == b"WAVE":
            return _unsupported("wav", "WAV audio")
        return _other("riff", f"RIFF container of type {sub!r}")
    if (
        head[:2] == b"BM"
        and len(head) >= 26
        and int.from_bytes(head[14:18], "little") in (12, 16, 40, 52, 56, 64, 108, 124)
    ):
        return _media("bmp")
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _media("tiff")
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return _sniff_iso_bmff(head)
    if (
        len(head) >= 8
        and head[4:8] in _QT_ATOMS
        and int.from_bytes(head[:4], "big") >= 8
        and not _looks_like_text(head)  # "The free…" is prose, not an atom
    ):
        return _media("mov")
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return _media("webm") if b"webm" in head[:64] else _media("mkv")
    if head[:3] == b"FLV":
        return _media("flv")
    if head[:4] == b"\x00\x00\x01\xba":
        return _media("mpeg-ps")
    if head[:1] == b"\x47" and len(head) > 376 and head[188] == 0x47 and head[376] == 0x47:
        return _media("mpeg-ts")
    if head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"):
        return _media("asf")
    # Media deepaudit does not decode
    if head[:2] == b"\xff\x0a" or head[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n":
        return _unsupported("jxl", "JPEG XL image (no decoder installed)")
    if head[:4] == b"8BPS":
        return _unsupported("psd", "Photoshop document")
    if head[:4] == b"\x00\x00\x01\x00":
        return _unsupported("ico", "Windows icon")
    if head[:4] == b"OggS":
        return _unsupported("ogg", "Ogg stream (audio or Theora video)")
    if head[:4] == b"fLaC":
        return _unsupported("flac", "FLAC audio")
    if head[:3] == b"ID3" or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"\xff\xfa"):
        return _unsupported("mp3", "MP3 audio")  # (an ID3 tag may front other streams too)
    # Not media at all
    if head[:5] == b"%PDF-":
        return _other("pdf", "content is a PDF document")
    if head[:4] == b"PK\x03\x04":
        return _other("zip", "content is a ZIP archive")
    if head[:2] == b"\x1f\x8b":
        return _other("gzip", "content is a gzip archive")
    if head[:4] == b"\x7fELF":
        return _other("elf", "content is an executable")
    stripped = head.lstrip()
    if stripped[:5].lower() == b"<?xml" or stripped[:4].lower() == b"<svg":
        if b"<svg" in head.lower():
            return _unsupported("svg", "SVG vector image (rasterise it first)")
        return _other("xml", "content is XML text")
    if stripped[:1] in (b"<",) and b"html" in head[:512].lower():
        return _other("html", "content is an HTML page")
    if _looks_like_text(head):
        return _other("text", "content is text")
    return _other("unknown", "unrecognised content (first bytes " + head[:8].hex(" ") + ")")


def extension_matches(path: str | os.PathLike[str], fmt: str) -> bool:
    """True when the file's extension is one of those of its detected format."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    entry = IMAGE_FORMATS.get(fmt) or VIDEO_CONTAINERS.get(fmt)
    return bool(entry) and ext in entry[1]
