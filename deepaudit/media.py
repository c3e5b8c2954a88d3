"""Decode and encode images and videos, recognised by content, with guard rails.

Images come back as RGB ``uint8`` arrays of shape (H, W, 3) with EXIF orientation applied.
Videos come back as a :class:`Video` of sampled frames (T, H, W, 3); frames that are not
selected are skipped without being kept, so a long file never sits in memory whole.
Every failure is a :class:`~deepaudit.errors.MediaError` naming the file and the reason.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import os
import re
import stat
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from deepaudit.errors import MediaError, error_record
from deepaudit.media_formats import (
    IMAGE_FORMATS,
    VIDEO_CONTAINERS,
    FormatGuess,
    extension_matches,
    sniff_bytes,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_PIXELS",
    "IN_MEMORY_BYTES",
    "LoadedFile",
    "MediaInfo",
    "ProbeResult",
    "Video",
    "WrittenVideo",
    "file_sha256",
    "image_exif",
    "iter_video_frames",
    "load_file",
    "probe",
    "probe_files",
    "read_image",
    "read_video",
    "sample_frame_indices",
    "sniff_format",
    "write_image",
    "write_video",
]

logger = logging.getLogger(__name__)

#: Pillow's own hard limit (2 × ``Image.MAX_IMAGE_PIXELS``): ~179 Mpx, e.g. 13,400 × 13,400.
DEFAULT_MAX_PIXELS = 178_956_970
#: About 55 minutes at 30 fps; raise it for long footage you trust.
DEFAULT_MAX_FRAMES = 100_000
#: Largest decoded frame stack :func:`read_video` returns when asked for every frame.
DEFAULT_MAX_BYTES = 4 * 1024**3

MediaKind = Literal["image", "video"]
VideoCodec = Literal["auto", "h264", "mp4v", "mjpg", "xvid", "ffv1", "vp8", "gif", "webp"]

_SNIFF_BYTES = 4096
#: Files up to this size are read into memory once and every reader parses that copy.
IN_MEMORY_BYTES = 64 << 20
# FFmpeg inside OpenCV prints every decoding hiccup to stderr; our errors say it in one line.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
_pil_limit_lock = threading.Lock()


@dataclass(frozen=True)
class MediaInfo:
    """What a file is, found from its content: kind, format and geometry."""

    path: str
    kind: MediaKind
    format: str  # "jpeg", "png", "mp4", "gif", ... (see deepaudit.media_formats)
    mime: str
    size_bytes: int
    width: int
    height: int
    frames: int  # 1 for a still image
    fps: float | None  # None for a still image
    extension_matches: bool  # False for e.g. a PNG named .jpg (decoded by content anyway)

    @property
    def duration_s(self) -> float | None:
        return self.frames / self.fps if self.fps else None


@dataclass(frozen=True)
class Video:
    """Frames sampled from a video: ``frames[i]`` is frame number ``indices[i]`` of the file."""

    path: str
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    indices: tuple[int, ...]
    fps: float
    frame_count: int  # frames in the file (counted when its header did not say or lied)
    truncated: bool = False  # the header promised more frames than could be decoded

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])


@dataclass(frozen=True)
class WrittenVideo:
    """Where a clip was written and with which codec."""

    path: Path
    codec: str
    frames: int
    fps: float


# --------------------------------------------------------------------------- identification


def file_sha256(path: str | os.PathLike[str], *, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(chunk_size):
                digest.update(block)
    except OSError as exc:
        raise MediaError(path, _os_reason(exc)) from exc
    return digest.hexdigest()


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return f"cannot read: {exc.strerror or exc}"


@dataclass(frozen=True)
class LoadedFile:
    """One read of a file, handed to every reader so each file is opened and sniffed once.

    ``data`` holds the whole file when it is at most :data:`IN_MEMORY_BYTES` (C2PA, metadata
    and pixel readers then parse that copy); larger files keep only their first bytes and
    readers open the path. ``guess`` raises the MediaError :func:`sniff_format` would.
    """

    path: Path
    size: int
    mtime_ns: int
    head: bytes
    data: bytes | None = None

    @functools.cached_property
    def guess(self) -> FormatGuess:
        return _classify(self.path, self.head)

    @functools.cached_property
    def sha256(self) -> str:
        if self.data is not None:
            return hashlib.sha256(self.data).hexdigest()
        return file_sha256(self.path)

    def stream(self) -> BinaryIO:
        """The bytes as a binary file object (memory when held, else the file, opened now)."""
        if self.data is not None:
            return io.BytesIO(self.data)
        try:
            return open(self.path, "rb")
        except OSError as exc:
            raise MediaError(self.path, _os_reason(exc)) from exc


def load_file(
    path: str | os.PathLike[str], *, in_memory_bytes: int = IN_MEMORY_BYTES
) -> LoadedFile:
    """Read a file once (whole when small); MediaError for folders, pipes and I/O errors."""
    p = Path(path)
    fh, st = _open_regular(p)
    try:
        with fh:
            if st.st_size <= in_memory_bytes:
                data = fh.read()
                return LoadedFile(p, len(data), st.st_mtime_ns, data[:_SNIFF_BYTES], data)
            head = fh.read(_SNIFF_BYTES)
    except OSError as exc:
        raise MediaError(p, _os_reason(exc)) from exc
    return LoadedFile(p, st.st_size, st.st_mtime_ns, head)


def open_media(path: str | os.PathLike[str]) -> tuple[LoadedFile, BinaryIO]:
    """Open a file once for a reader that streams it: its first bytes (a :class:`LoadedFile`
    without ``data``) and the open file at offset 0, which the caller closes. Errors as
    :func:`load_file`."""
    p = Path(path)
    fh, st = _open_regular(p)
    try:
        head = fh.read(_SNIFF_BYTES)
        fh.seek(0)
    except OSError as exc:
        fh.close()
        raise MediaError(p, _os_reason(exc)) from exc
    except BaseException:  # e.g. KeyboardInterrupt: the caller never gets the file to close
        fh.close()
        raise
    return LoadedFile(p, st.st_size, st.st_mtime_ns, head), fh


def _open_regular(p: Path) -> tuple[BinaryIO, os.stat_result]:
    """(open file, stat) of a regular file, which the caller closes. MediaError for folders,
    pipes, devices, invalid paths and I/O errors. A plain function, not a context manager:
    the provenance read calls it per file (benchmarks/provenance.py)."""
    try:
        st = os.stat(p)  # before opening: opening a FIFO would block
        if stat.S_ISDIR(st.st_mode):
            raise MediaError(p, "is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
            raise MediaError(p, "not a regular file (a pipe, socket or device)")
        return open(p, "rb"), st  # the caller closes it
    except ValueError as exc:  # e.g. an embedded NUL byte in the path
        raise MediaError(p, f"invalid path ({exc})") from exc
    except OSError as exc:
        raise MediaError(p, _os_reason(exc)) from exc


def sniff_format(path: str | os.PathLike[str]) -> FormatGuess:
    """Recognise a media file by its first bytes; raise MediaError for anything else."""
    return load_file(path, in_memory_bytes=0).guess  # reads the first bytes only


def _classify(p: Path, head: bytes) -> FormatGuess:
    if not head:
        raise MediaError(p, "empty file (0 bytes)")
    guess = sniff_bytes(head)
    if guess.kind == "other":
        ext = p.suffix.lower()
        hint = f" despite the {ext} extension" if ext and ext.lstrip(".") in _MEDIA_EXTS else ""
        raise MediaError(p, f"not an image or video: {guess.description}{hint}")
    if guess.kind == "unsupported":
        raise MediaError(p, f"unsupported format: {guess.description}")
    return guess


_MEDIA_EXTS = {
    e.lstrip(".") for fmt in (*IMAGE_FORMATS.values(), *VIDEO_CONTAINERS.values()) for e in fmt[1]
}


def probe(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    verify: bool = True,
    source: LoadedFile | None = None,
) -> MediaInfo:
    """Identify a file by content and read its geometry.

    With ``verify`` (the default) the pixels are decoded too, so a truncated image fails
    here; for a video the first and the last frame its header promises are decoded.
    ``source``: the file already read by :func:`load_file` (not read or sniffed again).
    """
    p = Path(path)
    guess = source.guess if source is not None else sniff_format(p)
    size = source.size if source is not None else p.stat().st_size
    fps: float | None
    if guess.format in VIDEO_CONTAINERS:
        with _open_capture(p, guess) as (cap, width, height, frames, fps):
            _check_pixels(p, width, height, max_pixels)
            if verify:
                frames = _verify_capture(p, guess, cap, frames)
        kind: MediaKind = "video"
    else:
        with _open_pil(p, guess, max_pixels, source) as im:
            frames = _pil_frame_count(p, im)
            if verify:
                _pil_load(p, guess, im, frames - 1, max_pixels)  # needs every byte before it
            fps = _pil_fps(im, frames) if frames > 1 else None
            width, height = _oriented_size(im)
        kind = "video" if frames > 1 else "image"
    return MediaInfo(
        path=str(p),
        kind=kind,
        format=guess.format,
        mime=guess.mime,
        size_bytes=size,
        width=width,
        height=height,
        frames=frames,
        fps=fps,
        extension_matches=extension_matches(p, guess.format),
    )


# --------------------------------------------------------------------------- images


def read_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    source: LoadedFile | None = None,
) -> np.ndarray:
    """Decode an image file (first frame of an animation) to RGB uint8 (H, W, 3), upright.

    ``source``: the file already read by :func:`load_file` (not read or sniffed again).
    """
    p = Path(path)
    guess = source.guess if source is not None else sniff_format(p)
    if guess.format in VIDEO_CONTAINERS:
        raise MediaError(p, f"is a {guess.description}, not an image (use read_video)")
    with _open_pil(p, guess, max_pixels, source) as im:
        try:
            im.seek(0)
            im.load()
            upright = _exif_transpose(p, im)
            return _to_rgb_array(upright)
        except MediaError:
            raise
        except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ...
            raise MediaError(p, _decode_reason(guess, exc)) from exc


def _decode_reason(guess: FormatGuess, exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "truncated" in text.lower() or isinstance(exc, EOFError):
        return f"truncated {guess.description} data ({text})"
    return f"corrupt {guess.description} data ({text})"


@contextlib.contextmanager
def _open_pil(
    p: Path, guess: FormatGuess, max_pixels: int, source: LoadedFile | None = None
) -> Iterator[Image.Image]:
    try:
        with _pil_pixel_limit(max_pixels), warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(source.stream() if source is not None else p)
    except Image.DecompressionBombError as exc:
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"claims {int(claimed.group(1)) / 1e6:,.1f} Mpx, " if claimed else ""
        raise MediaError(
            p,
            f"{size}over the pixel limit of {max_pixels / 1e6:.1f} Mpx (possible decompression "
            "bomb; raise max_pixels if you trust the file)",
        ) from exc
    except UnidentifiedImageError as exc:
        raise MediaError(p, f"corrupt {guess.description}: header cannot be parsed") from exc
    except OSError as exc:
        if exc.errno is None:  # Pillow's "Truncated File Read": damaged data, not an I/O error
            raise MediaError(p, _decode_reason(guess, exc)) from exc
        raise MediaError(p, _os_reason(exc)) from exc
    except Exception as exc:
        raise MediaError(p, _decode_reason(guess, exc)) from exc
    try:
        _check_pixels(p, im.width, im.height, max_pixels)
        yield im
    finally:
        im.close()


@contextlib.contextmanager
def _pil_pixel_limit(max_pixels: int) -> Iterator[None]:
    # Pillow refuses images over 2 × MAX_IMAGE_PIXELS inside open(); our limit must win both
    # ways, so lift Pillow's only while opening when the caller allows more.
    if max_pixels <= 2 * (Image.MAX_IMAGE_PIXELS or 0) or Image.MAX_IMAGE_PIXELS is None:
        yield
        return
    with _pil_limit_lock:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels // 2 + 1
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _check_pixels(p: Path, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise MediaError(p, f"invalid size {width}×{height}")
    if width * height > max_pixels:
        raise MediaError(
            p,
            f"{width}×{height} = {width * height / 1e6:.1f} Mpx is over the pixel limit of "
            f"{max_pixels / 1e6:.1f} Mpx (possible decompression bomb; raise max_pixels "
            "if you trust the file)",
        )


def image_exif(im: Image.Image) -> Image.Exif | None:
    """An opened image's EXIF without decoding pixels (None when there is none to read).

    Pillow's ``getexif()`` on a PNG without an eXIf chunk before the pixel data decodes the
    whole image to look after it; probing and metadata readers must not pay for that.
    """
    if im.format == "PNG" and "exif" not in im.info:
        return None
    try:
        return im.getexif()
    except Exception:  # a broken EXIF block must not hide the image
        return None


def _oriented_size(im: Image.Image) -> tuple[int, int]:
    exif = image_exif(im)
    orientation = exif.get(0x0112, 1) if exif is not None else 1
    if orientation in (5, 6, 7, 8):
        return im.height, im.width
    return im.width, im.height


def _exif_transpose(p: Path, im: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(im)
    except Exception as exc:
        logger.warning("%s: EXIF orientation ignored (%s)", p, exc)
        return im


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if mode == "F" and arr.size and np.nanmax(arr) <= 1.0:
            arr = arr * 255.0
        elif arr.size and np.nanmax(arr) > 255:
            arr = arr / 257.0  # 16-bit range to 8-bit
        grey = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
        return np.ascontiguousarray(np.stack([grey] * 3, axis=-1))
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode != "RGB":
        im = im.convert("RGB")  # alpha is dropped, not composited: detectors see the pixels
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


def _pil_frame_count(p: Path, im: Image.Image) -> int:
    try:
        return int(getattr(im, "n_frames", 1))
    except Exception as exc:
        raise MediaError(p, f"corrupt animation ({exc})") from exc


def _pil_fps(im: Image.Image, frames: int) -> float:
    durations = []
    for i in range(min(frames, 16)):  # the first frames are enough to know the rate
        try:
            im.seek(i)
            im.load()  # WebP fills in a frame's duration only once it is loaded
        except Exception:
            break
        durations.append(float(im.info.get("duration") or 0))
    im.seek(0)
    mean_ms = float(np.mean(durations)) if durations else 0.0
    # Browsers show GIF frames of 0-10 ms as 100 ms; do the same.
    if mean_ms <= 10:
        mean_ms = 100.0
    return 1000.0 / mean_ms


def write_image(
    path: str | os.PathLike[str],
    image: np.ndarray,
    *,
    quality: int = 95,
    lossless: bool = False,
    save_params: Mapping[str, object] | None = None,
) -> Path:
    """Encode an RGB (or greyscale) uint8 array; the format follows the extension.

    The file appears atomically (written beside it, then renamed), so an interrupted writer
    never leaves a half file. ``quality`` applies to JPEG and lossy WebP; ``save_params``
    (Pillow's, e.g. ``qtables``, ``subsampling``, ``icc_profile``) override the defaults, so
    a synthetic twin can be encoded exactly as its real photo was.
    """
    p = Path(path)
    fmt = _IMAGE_WRITE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise MediaError(
            p,
            f"cannot write images with extension {p.suffix or '(none)'!r}; use one of "
            + ", ".join(sorted(_IMAGE_WRITE_FORMATS)),
        )
    arr = _as_uint8_image(p, image)
    params: dict[str, object] = {}
    if fmt == "JPEG":
        params = {"quality": int(quality), "subsampling": 0 if quality >= 90 else 2}
    elif fmt == "WEBP":
        params = {"quality": int(quality), "lossless": lossless, "method": 4}
    elif fmt == "PNG":
        params = {"compress_level": 6}
    params.update(save_params or {})
    with _atomic_path(p) as tmp:
        Image.fromarray(arr).save(tmp, format=fmt, **params)
    return p


_IMAGE_WRITE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".gif": "GIF",
}


def _as_uint8_image(p: Path, image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise MediaError(p, f"image array must be uint8, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise MediaError(p, f"image array must be (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    return np.ascontiguousarray(arr)


@contextlib.contextmanager
def _atomic_path(p: Path) -> Iterator[Path]:
    """A temporary sibling path (same extension) that replaces ``p`` on success."""
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.stem}.tmp{os.getpid()}-{threading.get_ident()}{p.suffix}")
    try:
        yield tmp
        os.replace(tmp, p)
    except OSError as exc:
        raise MediaError(p, f"cannot write: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# --------------------------------------------------------------------------- videos


def sample_frame_indices(
    total: int, *, num_frames: int | None = None, every: int | None = None
) -> list[int]:
    """Frame numbers to decode: all, every k-th, or N spread evenly (segment centres)."""
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    if num_frames is not None and every is not None:
        raise ValueError("give num_frames or every, not both")
    if every is not None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        return list(range(0, total, every))
    if num_frames is None or num_frames >= total:
        if num_frames is not None and num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        return list(range(total))
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    # The centre of each of num_frames equal segments (TSN's test-time sampling): distinct,
    # deterministic, and never only the black first frame.
    return [int((i + 0.5) * total / num_frames) for i in range(num_frames)]


def read_video(
    path: str | os.PathLike[str],
    *,
    num_frames: int | None = None,
    every: int | None = None,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_truncated: bool = False,
    source: LoadedFile | None = None,
) -> Video:
    """Decode a video (MP4, MOV, AVI, MKV, WebM, animated GIF/WebP/PNG) to sampled frames.

    With neither ``num_frames`` nor ``every`` every frame is returned (refused when that would
    take more than ``max_bytes``). A file whose header promises more frames than decode is
    an error, unless ``allow_truncated``: then the frames that do decode are sampled and the
    result is marked ``truncated``. ``source``: the file already read by :func:`load_file`.
    """
    p = Path(path)
    guess = source.guess if source is not None else sniff_format(p)
    if guess.format in VIDEO_CONTAINERS:  # OpenCV's FFmpeg reads the path itself
        return _read_cv2_video(
            p, guess, num_frames, every, max_frames, max_pixels, max_bytes, allow_truncated
        )
    return _read_pil_animation(
        p, guess, num_frames, every, max_frames, max_pixels, max_bytes, source
    )


def iter_video_frames(
    path: str | os.PathLike[str],
    *,
    every: int = 1,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[tuple[int, np.ndarray]]:
    """Stream ``(frame_number, rgb_frame)`` for every ``every``-th frame, one at a time."""
    p = Path(path)
    guess = sniff_format(p)
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if guess.format in VIDEO_CONTAINERS:
        with _open_capture(p, guess) as (cap, width, height, count, _fps):
            _check_pixels(p, width, height, max_pixels)
            _check_frame_limit(p, count, max_frames)
            index = 0
            yielded = 0
            while index < max_frames and cap.grab():
                if index % every == 0:
                    ok, bgr = cap.retrieve()
                    if not ok:
                        break
                    yielded += 1
                    yield index, _bgr_to_rgb(bgr)
                index += 1
            if yielded == 0:
                raise MediaError(p, _no_frames(guess))
            if count and index < min(count, max_frames) - _tolerance(count):
                raise MediaError(
                    p,
                    f"truncated {guess.description}: its header promises {count} frames, "
                    f"only {index} decode",
                )
        return
    with _open_pil(p, guess, max_pixels) as im:
        count = _pil_frame_count(p, im)
        _check_frame_limit(p, count, max_frames)
        for index in range(0, count, every):
            yield index, _pil_frame(p, guess, im, index, max_pixels)


def _check_frame_limit(p: Path, count: int, max_frames: int) -> None:
    if count > max_frames:
        raise MediaError(
            p,
            f"video has {count:,} frames, over the frame limit of {max_frames:,} "
            "(raise max_frames if you trust the file)",
        )


def _check_bytes(p: Path, n: int, width: int, height: int, max_bytes: int) -> None:
    need = n * width * height * 3
    if need > max_bytes:
        raise MediaError(
            p,
            f"decoding {n:,} frames of {width}×{height} needs {need / 2**30:.1f} GiB, over "
            f"max_bytes={max_bytes / 2**30:.1f} GiB; sample with num_frames or every",
        )


@contextlib.contextmanager
def _open_capture(p: Path, guess: FormatGuess) -> Iterator[tuple[object, int, int, int, float]]:
    import cv2

    cap = cv2.VideoCapture(str(p), cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened():
            raise MediaError(
                p,
                f"cannot open {guess.description} (truncated or corrupt container, or a codec "
                "the installed OpenCV lacks)",
            )
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        if width <= 0 or height <= 0:
            raise MediaError(p, f"{guess.description} has no video stream")
        if not np.isfinite(fps) or fps <= 0 or fps > 1000:
            fps = 25.0  # an unknown rate; 25 is the most common broadcast rate
        yield cap, width, height, max(count, 0), fps
    finally:
        cap.release()


def _no_frames(guess: FormatGuess) -> str:
    return f"{guess.description} has no decodable frames (truncated or corrupt)"


def _tolerance(count: int) -> int:
    # Some containers (WebM, MKV) only estimate their frame count from the duration.
    return max(1, count // 50)


_VERIFY_WALK_FRAMES = 600  # frames probe(verify=True) decodes one by one; seeks beyond


def _verify_capture(p: Path, guess: FormatGuess, cap: Any, count: int) -> int:
    """Decode the first frame and the last one the header promises; return the frame count."""
    cv2 = _cv2()
    ok, _ = cap.read()
    if not ok:
        raise MediaError(p, _no_frames(guess))
    if count <= 1:
        return max(count, 1)
    if count > _VERIFY_WALK_FRAMES:
        # Long videos: seek to the last promised frame. FFmpeg may land on an earlier
        # keyframe of a truncated H.264 file, so short videos are walked instead.
        cap.set(cv2.CAP_PROP_POS_FRAMES, count - 1)
        if cap.grab() and cap.retrieve()[0]:
            return count
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
    actual = 1 + _count_frames(cap, count)
    if actual < count - _tolerance(count):
        raise MediaError(
            p,
            f"truncated {guess.description}: its header promises {count} frames, "
            f"only {actual} decode",
        )
    return actual


def _bgr_to_rgb(bgr: np.ndarray) -> np.ndarray:
    if bgr.ndim == 2:
        return np.ascontiguousarray(np.stack([bgr] * 3, axis=-1))
    return np.ascontiguousarray(bgr[..., 2::-1])


def _grab_selected(cap: object, wanted: Sequence[int], stop: int) -> tuple[list, list, int]:
    """Walk the stream once, keeping only wanted frames; returns frames, indices, frames seen."""
    wanted_set = set(wanted)
    last = max(wanted) if wanted else -1
    frames: list[np.ndarray] = []
    got: list[int] = []
    index = 0
    while index <= last and index < stop:
        if not cap.grab():
            return frames, got, index
        if index in wanted_set:
            ok, bgr = cap.retrieve()
            if not ok:
                return frames, got, index
            frames.append(_bgr_to_rgb(bgr))
            got.append(index)
        index += 1
    return frames, got, index


def _count_frames(cap: object, stop: int) -> int:
    n = 0
    while n < stop and cap.grab():
        n += 1
    return n


def _read_cv2_video(
    p, guess, num_frames, every, max_frames, max_pixels, max_bytes, allow_truncated
) -> Video:
    with _open_capture(p, guess) as (cap, width, height, count, fps):
        _check_pixels(p, width, height, max_pixels)
        _check_frame_limit(p, count, max_frames)
        header_count = count
        if count == 0:  # the container does not say: count by walking the stream once
            count = _count_frames(cap, max_frames + 1)
            _check_frame_limit(p, count, max_frames)
            cap.set(_cv2().CAP_PROP_POS_FRAMES, 0)
        wanted = sample_frame_indices(count, num_frames=num_frames, every=every)
        _check_bytes(p, len(wanted), width, height, max_bytes)
        frames, got, seen = _grab_selected(cap, wanted, max_frames)
    truncated = False
    if len(got) < len(wanted) and seen < count:
        # The header promised `count` frames but only `seen` decode: sample those instead.
        truncated = seen < count - _tolerance(count)
        if truncated and not allow_truncated:
            raise MediaError(
                p,
                f"truncated {guess.description}: its header promises {count} frames, only "
                f"{seen} decode (allow_truncated=True samples those)",
            )
        if truncated:
            logger.warning("%s: header says %d frames, %d decode", p, count, seen)
        count = seen
        wanted = sample_frame_indices(count, num_frames=num_frames, every=every)
        if wanted and wanted != got:
            with _open_capture(p, guess) as (cap, *_):
                frames, got, _ = _grab_selected(cap, wanted, max_frames)
    if not frames:
        raise MediaError(p, _no_frames(guess))
    if header_count == 0:
        count = max(count, len(frames))
    return Video(
        path=str(p),
        frames=np.stack(frames),
        indices=tuple(got),
        fps=fps,
        frame_count=count,
        truncated=truncated,
    )


def _cv2():
    import cv2

    return cv2


def _pil_load(
    p: Path, guess: FormatGuess, im: Image.Image, index: int, max_pixels: int | None = None
) -> None:
    """Seek to frame ``index`` and decode it, with the same checks as the first frame."""
    before = im.size
    try:
        im.seek(index)
        if im.size != before and guess.format == "tiff":
            # Pages of a TIFF may differ in size; a video's frames may not.
            raise MediaError(p, f"page {index} is {im.size[0]}×{im.size[1]}, not {before}")
        if max_pixels is not None:
            _check_pixels(p, im.width, im.height, max_pixels)
        im.load()
    except MediaError:
        raise
    except Exception as exc:
        where = f"frame {index}: " if index or getattr(im, "n_frames", 1) > 1 else ""
        raise MediaError(p, where + _decode_reason(guess, exc)) from exc


def _pil_frame(
    p: Path, guess: FormatGuess, im: Image.Image, index: int, max_pixels: int | None = None
) -> np.ndarray:
    _pil_load(p, guess, im, index, max_pixels)
    return _to_rgb_array(im)


def _read_pil_animation(
    p, guess, num_frames, every, max_frames, max_pixels, max_bytes, source=None
) -> Video:
    with _open_pil(p, guess, max_pixels, source) as im:
        count = _pil_frame_count(p, im)
        _check_frame_limit(p, count, max_frames)
        fps = _pil_fps(im, count) if count > 1 else 1.0
        wanted = sample_frame_indices(count, num_frames=num_frames, every=every)
        _check_bytes(p, len(wanted), im.width, im.height, max_bytes)
        frames = [_pil_frame(p, guess, im, i, max_pixels) for i in wanted]
    if not frames:
        raise MediaError(p, f"{guess.description} has no frames")
    return Video(
        path=str(p),
        frames=np.stack(frames),
        indices=tuple(wanted),
        fps=fps,
        frame_count=count,
    )


# Extension → (codec choices in order of preference). "auto" picks the first that works.
_VIDEO_CODECS: dict[str, tuple[str, ...]] = {
    ".mp4": ("h264", "mp4v"),
    ".m4v": ("h264", "mp4v"),
    ".mov": ("h264", "mp4v"),
    ".avi": ("mjpg", "xvid"),
    ".mkv": ("ffv1",),
    ".webm": ("vp8",),
    ".gif": ("gif",),
    ".webp": ("webp",),
}
_FOURCC = {"mp4v": "mp4v", "mjpg": "MJPG", "xvid": "XVID", "ffv1": "FFV1", "vp8": "VP80"}


def write_video(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    *,
    fps: float,
    codec: VideoCodec = "auto",
    crf: int = 18,
) -> WrittenVideo:
    """Encode RGB uint8 frames (an array (T, H, W, 3) or any iterable of (H, W, 3)).

    MP4/MOV use H.264 (browsers play it) through imageio-ffmpeg's bundled ffmpeg when it is
    installed, else OpenCV's MPEG-4 Part 2 (``mp4v``); AVI uses MJPG, MKV lossless FFV1, WebM
    VP8, GIF and WebP Pillow. Frames stream to the encoder; the file appears atomically.
    """
    p = Path(path)
    ext = p.suffix.lower()
    choices = _VIDEO_CODECS.get(ext)
    if choices is None:
        raise MediaError(
            p,
            f"cannot write video with extension {ext or '(none)'!r}; use one of "
            + ", ".join(sorted(_VIDEO_CODECS)),
        )
    if not (fps > 0 and np.isfinite(fps)):
        raise MediaError(p, f"fps must be a positive number, got {fps}")
    if codec != "auto" and codec not in choices:
        raise MediaError(p, f"codec {codec!r} cannot be written to {ext}; use one of {choices}")
    it = iter(frames)
    try:
        first = np.asarray(next(it))
    except StopIteration:
        raise MediaError(p, "no frames to write") from None
    first = _check_frame(p, first, None, 0)
    height, width = first.shape[:2]
    candidates = choices if codec == "auto" else (codec,)
    chosen = backend = None
    refused_odd = None
    for name in candidates:
        encoder = _encoder(name, ext)
        if encoder is None:
            continue
        if encoder[1] and (width % 2 or height % 2):
            refused_odd = refused_odd or name
            continue
        chosen, backend = name, encoder[0]
        break
    if chosen is None:
        if refused_odd is not None:
            raise MediaError(
                p,
                f"{refused_odd} needs even width and height, got {width}×{height}; crop or pad "
                "the frames, or write .mkv (lossless FFV1, any size)",
            )
        raise MediaError(p, f"no working encoder for {ext} (tried {', '.join(candidates)})")
    all_frames = _chain_checked(p, first, it, (height, width))
    with _atomic_path(p) as tmp:
        if backend == "ffmpeg":
            n = _write_ffmpeg(tmp, all_frames, width, height, fps, chosen, crf)
        elif backend == "pil":
            n = _write_pil_animation(tmp, all_frames, fps, chosen)
        else:
            n = _write_cv2(tmp, all_frames, width, height, fps, _FOURCC[chosen])
    return WrittenVideo(path=p, codec=chosen, frames=n, fps=float(fps))


def _check_frame(p: Path, frame: np.ndarray, shape: tuple[int, int] | None, i: int) -> np.ndarray:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise MediaError(
            p, f"frame {i}: expected uint8 (H, W, 3), got {frame.dtype} {tuple(frame.shape)}"
        )
    if shape is not None and frame.shape[:2] != shape:
        raise MediaError(p, f"frame {i}: size {frame.shape[:2]} differs from the first {shape}")
    return np.ascontiguousarray(frame)


def _chain_checked(p, first, rest, shape) -> Iterator[np.ndarray]:
    yield first
    for i, frame in enumerate(rest, start=1):
        yield _check_frame(p, np.asarray(frame), shape, i)


@functools.cache
def _encoder(name: str, ext: str) -> tuple[str, bool] | None:
    """(backend, needs even width and height) that writes ``name`` into ``ext``, or None."""
    if name in ("gif", "webp"):
        from PIL import features

        return ("pil", False) if name == "gif" or features.check("webp") else None
    if name in ("h264", "ffv1") and _has_ffmpeg():
        return "ffmpeg", name == "h264"  # 4:2:0 H.264 needs even sizes; RGB FFV1 does not
    if name in _FOURCC and _cv2_fourcc_works(_FOURCC[name], ext):
        return "cv2", True  # OpenCV crops odd sizes to even without a word, for every codec
    logger.info("video codec %s for %s unavailable; trying the next", name, ext)
    return None


@functools.cache
def _has_ffmpeg() -> bool:
    """imageio-ffmpeg's bundled ffmpeg binary is installed (it writes H.264 and RGB FFV1)."""
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
        return True
    except Exception:
        return False


def _cv2_fourcc_works(fourcc: str, ext: str) -> bool:
    import tempfile

    cv2 = _cv2()
    with tempfile.TemporaryDirectory() as d, _quiet_stderr():
        writer = cv2.VideoWriter(
            os.path.join(d, f"probe{ext}"), cv2.VideoWriter_fourcc(*fourcc), 10, (16, 16)
        )
        ok = bool(writer.isOpened())
        writer.release()
    return ok


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the C libraries' stderr while probing encoders that may not exist."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


def _write_cv2(tmp: Path, frames, width, height, fps, fourcc) -> int:
    cv2 = _cv2()
    with _quiet_stderr():  # OpenCV complains about tags it then maps by itself (VP80 in WebM)
        writer = cv2.VideoWriter(
            str(tmp), cv2.VideoWriter_fourcc(*fourcc), float(fps), (width, height)
        )
    if not writer.isOpened():
        raise MediaError(tmp, f"OpenCV cannot open a {fourcc} writer")
    n = 0
    try:
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[..., ::-1]))
            n += 1
    finally:
        writer.release()
    return n


def _write_ffmpeg(tmp: Path, frames, width, height, fps, codec: str, crf: int) -> int:
    import imageio_ffmpeg

    if codec == "h264":
        ff_codec, pix_fmt, params = "libx264", "yuv420p", ["-crf", str(int(crf))]
        params += ["-movflags", "+faststart"]
    else:  # ffv1: lossless, RGB kept as is, any size
        ff_codec, pix_fmt, params = "ffv1", "bgr0", ["-level", "3"]
    gen = imageio_ffmpeg.write_frames(
        str(tmp),
        (width, height),
        fps=float(fps),
        codec=ff_codec,
        pix_fmt_in="rgb24",
        pix_fmt_out=pix_fmt,
        quality=None,
        macro_block_size=1,
        ffmpeg_log_level="error",
        output_params=params,
    )
    gen.send(None)
    n = 0
    try:
        for frame in frames:
            gen.send(frame)
            n += 1
    finally:
        gen.close()
    return n


def _write_pil_animation(tmp: Path, frames, fps, kind: str) -> int:
    images = [Image.fromarray(f) for f in frames]  # Pillow needs them all to save
    duration = max(1, round(1000.0 / fps))
    params: dict[str, object] = {"save_all": True, "append_images": images[1:], "loop": 0}
    params["duration"] = duration
    if kind == "webp":
        params.update(lossless=True, method=4)
    else:
        params.update(optimize=False, disposal=1)
    images[0].save(tmp, format=kind.upper(), **params)
    return len(images)


# --------------------------------------------------------------------------- many files


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of probing one file: its info, or the error that names why not."""

    path: str
    info: MediaInfo | None
    error: MediaError | None
    sha256: str | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"path": self.path}
        if self.info is not None:
            i = self.info
            out.update(
                kind=i.kind,
                format=i.format,
                mime=i.mime,
                size_bytes=i.size_bytes,
                width=i.width,
                height=i.height,
                frames=i.frames,
                fps=round(i.fps, 3) if i.fps else None,
                extension_matches=i.extension_matches,
            )
        if self.sha256 is not None:
            out["sha256"] = self.sha256
        if self.error is not None:
            out["error"] = error_record(self.error)
        return out


def probe_files(
    files: Iterable[str | os.PathLike[str]],
    *,
    hashes: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[ProbeResult]:
    """Probe each file; a broken file becomes a result with its error, never an exception."""
    paths = list(files)
    results = []
    for done, f in enumerate(paths, start=1):
        try:
            info = probe(f)
            digest = file_sha256(f) if hashes else None
            results.append(ProbeResult(os.fspath(f), info, None, digest))
        except MediaError as exc:
            results.append(ProbeResult(os.fspath(f), None, exc))
        if progress is not None:
            progress(done, len(paths))
    return results
