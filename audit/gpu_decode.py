"""The scan's GPU decode: JPEGs decoded in batches in the main process, on the scan's device.

Where the decode happens (docs/scan.md, "GPU decoding"): a worker still hashes the file and
reads its C2PA manifest and metadata; for a JPEG :func:`deepaudit.jpeg_batch.jpeg_header`
accepts, it hands over the compressed bytes and the EXIF orientation instead of the
detectors' crops, and the main process decodes a flush of them in one batched call
(nvJPEG on CUDA) and prepares the detectors' inputs from those pixels. The invisible
watermark is read from full-resolution pixels on the CPU (its votes are thresholds that a
decoder differing by one level could flip), so a worker that checks watermarks still
decodes the image: ``auto`` turns the GPU decode on only for a CUDA scan without the
watermark check, where the workers then decode nothing. A file the batched decoder rejects
is read by the CPU reader here; one that reader rejects too gets the usual error row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from deepaudit.errors import error_record

__all__ = ["GPU_DECODE_CHOICES", "GpuDecode", "decode_pending", "resolve_gpu_decode"]

logger = logging.getLogger(__name__)

GpuDecodeChoice = Literal["auto", "on", "off"]
GPU_DECODE_CHOICES = ("auto", "on", "off")


@dataclass
class GpuDecode:
    """The choice and what it did, for ``summary.json``."""

    requested: str
    on: bool
    device: str
    reason: str
    decoded: int = 0  # files whose detector inputs came from the batched decoder
    cpu_fallback: int = 0  # files it rejected, read by the CPU reader instead
    errors: int = 0  # of those, files the CPU reader rejected too (error rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "on": self.on,
            "device": self.device if self.on else None,
            "reason": self.reason,
            "decoded": self.decoded,
            "cpu_fallback": self.cpu_fallback,
            "errors": self.errors,
        }


def resolve_gpu_decode(
    choice: str, device: str, *, watermark: bool, has_detectors: bool
) -> GpuDecode:
    """``auto``: on for a CUDA scan with detectors and without the watermark check; ``on``
    forces it (on a CPU device it runs torchvision's CPU decoder, the same code path)."""
    if choice not in GPU_DECODE_CHOICES:
        allowed = ", ".join(GPU_DECODE_CHOICES)
        raise ValueError(f"gpu_decode must be one of {allowed}, got {choice!r}")
    if choice == "off":
        return GpuDecode(choice, False, device, "off as asked")
    if not has_detectors:
        return GpuDecode(choice, False, device, "no detectors: nothing to decode for")
    from deepaudit.devices import select_device

    concrete = select_device(device)
    if choice == "on":
        return GpuDecode(choice, True, concrete, "on as asked")
    if not concrete.startswith("cuda"):
        return GpuDecode(choice, False, concrete, "the scan's device is not CUDA")
    if watermark:
        return GpuDecode(
            choice,
            False,
            concrete,
            "the watermark check decodes every image on the CPU in the workers anyway",
        )
    return GpuDecode(choice, True, concrete, "CUDA device, no watermark check")


def decode_pending(records: list[dict[str, Any]], specs: tuple[Any, ...], state: GpuDecode) -> None:
    """Decode the flush's handed-over JPEGs in one batch and prepare each detector's input
    (``rec["_inputs"]``), as the worker would have from ``read_image``."""
    from deepaudit.jpeg_batch import decode_jpegs
    from deepaudit.media import read_image

    todo = [r for r in records if "_jpeg" in r]
    if not todo:
        return
    blobs = [r.pop("_jpeg") for r in todo]
    orientations = [int(r.pop("_orientation", 1)) for r in todo]
    images = decode_jpegs(blobs, orientations, state.device)
    for rec, img in zip(todo, images, strict=True):
        p = Path(rec["path"])
        if img is None:
            state.cpu_fallback += 1
            try:
                img = read_image(p)
            except Exception as exc:  # the row the CPU path would have written
                state.errors += 1
                rec.pop("width", None)
                rec.pop("height", None)
                rec["error"] = error_record(exc, p)
                rec["_inputs"] = {}
                continue
        else:
            state.decoded += 1
        try:
            rec["_inputs"] = {spec: spec.prepare(img) for spec in specs}
        except Exception as exc:
            rec["error"] = error_record(exc, p)
            rec["_inputs"] = {}
