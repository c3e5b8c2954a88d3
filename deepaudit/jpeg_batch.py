"""Batched JPEG decoding on a torch device (nvJPEG on CUDA), upright RGB like ``read_image``.

The scan's GPU path: workers keep the compressed bytes of the JPEGs this decoder can take
(:func:`jpeg_header` says which, from the header alone) and the main process decodes them
in batches with ``torchvision.io.decode_jpeg(list, device=...)``. The same code runs on the
CPU (``device="cpu"``: torchvision's libjpeg-turbo, pixel-identical to Pillow's), which is
how it is tested on machines without a GPU.

The pixels must be what :func:`deepaudit.media.read_image` returns, so the header check
sends to the CPU reader every file where the two could differ or where nvJPEG is not known
to fail loudly: not three-component 8-bit YCbCr (CMYK, YCCK, Adobe RGB-transform, grayscale),
not baseline/progressive Huffman (lossless, arithmetic), missing its end-of-image marker
(a truncated file must stay an error row, and nvJPEG may fill what is missing), or over the
pixel limit (the CPU reader's refusal is the error row). EXIF orientation is read here with
Pillow's rule (``ImageOps.exif_transpose``) and applied on the device.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepaudit.media import DEFAULT_MAX_PIXELS

__all__ = ["JpegHeader", "decode_jpegs", "jpeg_header"]

logger = logging.getLogger(__name__)

# SOF0 baseline, SOF1 extended, SOF2 progressive (Huffman): what nvJPEG and libjpeg both take
_DECODABLE_SOF = {0xC0, 0xC1, 0xC2}
_OTHER_SOF = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class JpegHeader:
    """What the main process needs of a JPEG it will decode: its upright size, the EXIF
    orientation (1-8, Pillow's numbering) to apply after decoding."""

    width: int
    height: int
    orientation: int


def jpeg_header(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> JpegHeader | None:
    """The header of a JPEG the batched decoder gives the same pixels for, else None (the
    file then goes to the CPU reader, which decodes it or gives its error)."""
    if len(data) < 4 or data[:2] != b"\xff\xd8" or data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        return None
    sof = _frame_header(data)
    if sof is None:
        return None
    marker, precision, height, width, components, adobe_transform = sof
    if marker not in _DECODABLE_SOF or precision != 8 or components != 3:
        return None
    if adobe_transform is not None and adobe_transform != 1:  # RGB-coded (0) or YCCK (2)
        return None
    if width <= 0 or height <= 0 or width * height > max_pixels:
        return None
    orientation = _orientation(data)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return JpegHeader(width, height, orientation)


def _frame_header(data: bytes) -> tuple[int, int, int, int, int, int | None] | None:
    """(SOF marker, precision, height, width, components, Adobe transform) from the markers
    before the first scan; None when they cannot be walked."""
    pos, n = 2, len(data)
    adobe: int | None = None
    sof: tuple[int, int, int, int, int] | None = None
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        body = data[pos + 4 : pos + 2 + length]
        if length < 2 or len(body) != length - 2:
            return None
        if marker == 0xEE and body[:5] == b"Adobe" and len(body) >= 12:
            adobe = body[11]
        elif marker in _DECODABLE_SOF or marker in _OTHER_SOF:
            if len(body) < 6:
                return None
            h = int.from_bytes(body[1:3], "big")
            w = int.from_bytes(body[3:5], "big")
            sof = (marker, body[0], h, w, body[5])
        elif marker == 0xDA:  # start of scan: the header is over
            break
        pos += 2 + length
    return None if sof is None else (*sof, adobe)


def _orientation(data: bytes) -> int:
    """EXIF orientation as ``ImageOps.exif_transpose`` reads it; 1 when unreadable, as
    ``read_image`` ignores an orientation it cannot read."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            value = int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:
        return 1
    return value if 1 <= value <= 8 else 1


def decode_jpegs(
    blobs: Sequence[bytes | np.ndarray], orientations: Sequence[int], device: str
) -> list[np.ndarray | None]:
    """Decode JPEGs in one batch on ``device`` to upright RGB uint8 (H, W, 3) host arrays;
    None for each file the decoder rejects (the caller reads those on the CPU).

    A rejected file fails the whole batched call, so the batch is then decoded one file at a
    time to find it; the others keep their pixels.
    """
    import torch

    if not blobs:
        return []
    tensors = [
        torch.from_numpy(b)
        if isinstance(b, np.ndarray) and b.flags.writeable
        else torch.frombuffer(bytearray(b), dtype=torch.uint8)  # torch wants writable memory
        for b in blobs
    ]
    try:
        decoded: list[torch.Tensor | None] = list(_decode(tensors, device))
    except Exception as exc:  # torchvision raises RuntimeError, its checks ValueError
        logger.debug("batched JPEG decode on %s failed (%s); decoding one by one", device, exc)
        decoded = []
        for t in tensors:
            try:
                decoded.append(_decode([t], device)[0])
            except Exception:
                decoded.append(None)
    out: list[np.ndarray | None] = []
    for chw, orientation in zip(decoded, orientations, strict=True):
        if chw is None:
            out.append(None)
            continue
        hwc = _upright(chw.permute(1, 2, 0), orientation)
        out.append(np.ascontiguousarray(hwc.cpu().numpy()))
    return out


def _decode(tensors: list, device: str) -> list:
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():  # torchvision 0.29 marks its image codecs deprecated
        warnings.simplefilter("ignore")
        return decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device)


def _upright(hwc, orientation: int):
    """Pillow's ``Image.Transpose`` for each EXIF orientation, on an (H, W, C) tensor."""
    import torch

    if orientation == 2:  # FLIP_LEFT_RIGHT
        return hwc.flip(1)
    if orientation == 3:  # ROTATE_180
        return hwc.flip(0).flip(1)
    if orientation == 4:  # FLIP_TOP_BOTTOM
        return hwc.flip(0)
    if orientation == 5:  # TRANSPOSE
        return hwc.transpose(0, 1)
    if orientation == 6:  # ROTATE_270 (counter-clockwise): a clockwise quarter turn
        return torch.rot90(hwc, -1, (0, 1))
    if orientation == 7:  # TRANSVERSE
        return hwc.transpose(0, 1).flip(0).flip(1)
    if orientation == 8:  # ROTATE_90 (counter-clockwise)
        return torch.rot90(hwc, 1, (0, 1))
    return hwc
