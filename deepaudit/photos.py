"""Real photographs that ship inside installed packages, so a fresh machine has real data.

scikit-image bundles a few photographs in its wheel (others it fetches with pooch, which
needs the network: those are not used). scikit-learn bundles two more. Nothing here touches
the network.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepaudit.manifest import Manifest, ManifestWriter

__all__ = [
    "BuiltinPhoto",
    "builtin_photos",
    "pan_clip",
    "png_bomb_header",
    "write_builtin_photos",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuiltinPhoto:
    """A real photograph bundled with an installed package."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    source: str  # e.g. "skimage.data.astronaut"
    scene: str  # a coarse scene tag, usable as a group attribute
    grayscale: bool = False


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _stereo(side: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return skimage.data.stereo_motorcycle()[side]

    return load


def _sklearn(index: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_images

        return load_sample_images().images[index]

    return load


# name, loader, source, scene. Only photographs of the world (no renders, no diagrams).
_COLOUR = [
    ("astronaut", _skimage("astronaut"), "skimage.data.astronaut", "portrait"),
    ("chelsea", _skimage("chelsea"), "skimage.data.chelsea", "animal"),
    ("coffee", _skimage("coffee"), "skimage.data.coffee", "object"),
    ("rocket", _skimage("rocket"), "skimage.data.rocket", "outdoor"),
    ("hubble_deep_field", _skimage("hubble_deep_field"), "skimage.data.hubble_deep_field", "sky"),
    (
        "immunohistochemistry",
        _skimage("immunohistochemistry"),
        "skimage.data.immunohistochemistry",
        "microscopy",
    ),
    ("retina", _skimage("retina"), "skimage.data.retina", "medical"),
    ("motorcycle_left", _stereo(0), "skimage.data.stereo_motorcycle", "object"),
    ("motorcycle_right", _stereo(1), "skimage.data.stereo_motorcycle", "object"),
    ("china", _sklearn(0), "sklearn.datasets.load_sample_images", "outdoor"),
    ("flower", _sklearn(1), "sklearn.datasets.load_sample_images", "nature"),
]
_GREY = [
    ("camera", _skimage("camera"), "skimage.data.camera", "portrait"),
    ("moon", _skimage("moon"), "skimage.data.moon", "sky"),
    ("coins", _skimage("coins"), "skimage.data.coins", "object"),
    ("clock", _skimage("clock"), "skimage.data.clock", "object"),
    ("grass", _skimage("grass"), "skimage.data.grass", "texture"),
    ("gravel", _skimage("gravel"), "skimage.data.gravel", "texture"),
    ("brick", _skimage("brick"), "skimage.data.brick", "texture"),
]


def builtin_photos(*, include_grayscale: bool = False) -> list[BuiltinPhoto]:
    """The bundled photographs that load offline, as RGB uint8 arrays.

    Eleven colour photos (up to 1411×1411); with ``include_grayscale`` seven grey ones more,
    replicated to three channels. A photo whose package is missing is skipped with a warning.
    """
    table = _COLOUR + (_GREY if include_grayscale else [])
    photos = []
    for name, load, source, scene in table:
        try:
            arr = np.asarray(load())
        except Exception as exc:  # an optional package missing or a file it could not open
            logger.warning("built-in photo %s unavailable: %s", name, exc)
            continue
        grey = arr.ndim == 2
        if grey:
            arr = np.stack([arr] * 3, axis=-1)
        arr = np.ascontiguousarray(arr[..., :3].astype(np.uint8))
        photos.append(BuiltinPhoto(name, arr, source, scene, grey))
    return photos


def write_builtin_photos(
    out: str | os.PathLike[str],
    *,
    include_grayscale: bool = False,
    subdir: str = "real/builtin",
) -> Manifest:
    """Write the bundled photos as PNG under ``out/subdir`` and record them in out's manifest.

    Resumable and idempotent: photos already in the manifest are not written again.
    """
    from deepaudit.manifest_import import item_from_file
    from deepaudit.media import write_image

    root = Path(out)
    folder = root / subdir
    with ManifestWriter(root) as writer:
        for photo in builtin_photos(include_grayscale=include_grayscale):
            file = folder / f"{photo.name}.png"
            item_id = Path(os.path.relpath(file, root)).as_posix()
            if item_id in writer:
                continue
            write_image(file, photo.image)
            writer.write(
                item_from_file(
                    file,
                    root=root,
                    label="real",
                    source=photo.source,
                    attributes={"scene": photo.scene, "grayscale": photo.grayscale},
                )
            )
    from deepaudit.manifest import read_manifest

    return read_manifest(root)


def pan_clip(image: np.ndarray, *, frames: int = 24, size: int = 128) -> np.ndarray:
    """A camera pan across a photo: ``frames`` square crops sliding left to right, resized."""
    from PIL import Image

    h, w = image.shape[:2]
    side = min(h, w) * 3 // 4
    xs = np.linspace(0, w - side, frames).round().astype(int)
    y = (h - side) // 2
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for i, x in enumerate(xs):
        crop = Image.fromarray(image[y : y + side, x : x + side])
        out[i] = np.asarray(crop.resize((size, size), Image.Resampling.BICUBIC))
    return out


def png_bomb_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` × ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
