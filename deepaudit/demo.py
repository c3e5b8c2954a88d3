"""``deepaudit demo``: the toolkit end to end on built-in data, with nothing downloaded.

It runs the parts of the main job that exist and says which those are; as generators,
detectors and the scan land, they join here. Part of the CLI layer: it may import layers.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["pan_clip", "png_bomb_header", "run_demo"]


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


def _build_inbox(inbox: Path, good_jpeg: Path, clip: Path, gif: Path) -> None:
    """An inbox as users get them: good files, misnamed ones and broken ones."""
    inbox.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(good_jpeg, inbox / "photo.jpg")
    shutil.copyfile(clip, inbox / "clip.mp4")
    shutil.copyfile(gif, inbox / "animation.gif")
    shutil.copyfile(good_jpeg, inbox / "really_a_jpeg.png")  # misleading extension
    (inbox / "empty.jpg").write_bytes(b"")
    data = good_jpeg.read_bytes()
    (inbox / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (inbox / "notes.png").write_text("not an image, whatever the name says\n")
    (inbox / "invoice.mp4").write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    (inbox / "bomb.png").write_bytes(png_bomb_header(100_000, 100_000))
    clip_bytes = clip.read_bytes()
    (inbox / "cut_short.mp4").write_bytes(clip_bytes[: len(clip_bytes) // 2])


def run_demo(out: str | os.PathLike[str], *, on_step: Callable[[str], None] | None = None) -> dict:
    """Build a dataset from built-in photos, inspect an inbox, split/validate, track the run."""
    from deepaudit.manifest import ManifestWriter, read_manifest, validate_manifest
    from deepaudit.manifest_import import item_from_file, iter_files
    from deepaudit.media import probe_files, read_image, read_video, write_image, write_video
    from deepaudit.photos import write_builtin_photos
    from deepaudit.tracking import Tracker, default_tracking_uri

    say = on_step or (lambda msg: None)
    root = Path(out)
    dataset = root / "dataset"

    manifest = write_builtin_photos(dataset)
    say(f"wrote {len(manifest)} built-in real photos to {dataset}")

    photos = [i for i in manifest if i.path.startswith("real/builtin/")]
    with ManifestWriter(dataset) as writer:
        for item in photos:
            file = dataset / "real" / "jpeg75" / (Path(item.path).stem + ".jpg")
            rel = file.relative_to(dataset).as_posix()
            if rel in writer:
                continue
            write_image(file, read_image(dataset / item.path), quality=75)
            writer.write(
                item_from_file(
                    file,
                    root=dataset,
                    label="real",
                    source=item.source,
                    attributes=dict(item.attributes),
                    transforms=("jpeg:q=75",),
                )
            )
        clips = []
        for item in photos[:3]:
            stem = Path(item.path).stem
            frames = pan_clip(read_image(dataset / item.path))
            for ext in (".mp4", ".gif"):
                file = dataset / "real" / "clips" / f"{stem}_pan{ext}"
                rel = file.relative_to(dataset).as_posix()
                if rel not in writer:
                    write_video(file, frames, fps=12)
                    writer.write(
                        item_from_file(
                            file,
                            root=dataset,
                            label="real",
                            source=item.source,
                            attributes={**item.attributes, "scene": "pan"},
                            transforms=("pan-clip",),
                        )
                    )
                clips.append(file)
    say("added JPEG (q=75) copies and pan clips (H.264 MP4 and GIF)")

    manifest = read_manifest(dataset).with_splits(ratios=(0.6, 0.2, 0.2))
    manifest.write()
    problems = validate_manifest(dataset, check_files=True, check_hashes=True)
    say(f"split the manifest 60/20/20 by hash of id; validation: {len(problems)} problems")

    clip = read_video(clips[0], num_frames=8)
    say(f"decoded 8 of {clip.frame_count} frames of {clips[0].name} at {clip.fps:g} fps")

    inbox = root / "inbox"
    first_jpeg = next(dataset / i.path for i in read_manifest(dataset) if i.path.endswith(".jpg"))
    _build_inbox(inbox, first_jpeg, clips[0], clips[1])
    results = probe_files(iter_files(inbox), hashes=True)
    unreadable = [r for r in results if r.error is not None]
    say(f"inspected {len(results)} inbox files: {len(unreadable)} unreadable, each with a reason")

    summary = manifest.summary().to_json()
    report = {
        "summary": {
            "dataset": str(dataset),
            "items": summary["items"],
            "by_kind": summary["by_kind"],
            "by_split": summary["by_split"],
            "manifest_problems": len(problems),
            "inbox_files": len(results),
            "inbox_unreadable": {Path(r.path).name: r.error.reason for r in unreadable},
            "inbox_misnamed": [
                Path(r.path).name for r in results if r.info and not r.info.extension_matches
            ],
        },
        "inbox": [r.to_json() for r in results],
        "not_yet": [
            "synthetic images/videos from the generator suite",
            "detector training and scores",
            "C2PA provenance, AI metadata and watermarks in a scan report",
        ],
    }

    if "MLFLOW_TRACKING_URI" in os.environ:
        uri = default_tracking_uri()
    else:
        uri = f"sqlite:///{(root / 'mlflow.db').resolve()}"
    tracker = Tracker(uri)
    with tracker.start_run("deepaudit-demo", run_name="demo", params={"out": str(root)}) as run:
        run.log_metrics(
            {
                "items": summary["items"],
                "images": summary["by_kind"].get("image", 0),
                "videos": summary["by_kind"].get("video", 0),
                "inbox_unreadable": len(unreadable),
                "manifest_problems": len(problems),
            }
        )
        run.log_artifact(manifest.path)
        run.log_dict(report["summary"], "summary.json")
    report["mlflow"] = {"tracking_uri": uri, "run_id": run.run_id}
    say(f"recorded mlflow run {run.run_id[:8]} in {uri}")

    (root / "summary.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report
