"""The scan's GPU path, run on the CPU through the same code: JPEGs handed to the main process
undecoded and decoded there in batches, crops back from the workers through shared memory.
The rows must be those of the plain scan, and no shared-memory block may outlive a scan."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepaudit.audit.gpu_decode import resolve_gpu_decode
from deepaudit.audit.handoff import NAME_PREFIX, BlockPool, read_block, write_block
from deepaudit.audit.scan import run_scan

SHM = Path("/dev/shm")


def _ours() -> set[str]:
    return {p.name for p in SHM.glob(f"{NAME_PREFIX}*")} if SHM.is_dir() else set()


def _rows(out: Path) -> dict[str, dict]:
    rows = {}
    for line in (out / "results.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows[Path(row["path"]).name] = row
    return rows


@pytest.fixture
def jpeg_inbox(tmp_path, clip):
    box = tmp_path / "jpegs"
    box.mkdir()
    frame = np.ascontiguousarray(clip[0])
    Image.fromarray(frame).save(box / "plain.jpg", quality=92)
    exif = Image.Exif()
    exif[0x0112] = 6  # shot with the camera turned: read_image turns it upright
    Image.fromarray(frame).save(box / "rotated.jpg", quality=92, exif=exif.tobytes())
    Image.fromarray(frame).save(box / "progressive.jpg", quality=85, progressive=True)
    Image.fromarray(frame).convert("CMYK").save(box / "cmyk.jpg")  # the CPU reader's
    Image.fromarray(frame[..., 1]).save(box / "grey.jpg")  # the CPU reader's
    data = bytearray((box / "plain.jpg").read_bytes())
    data[data.index(b"\xff\xda") + 5] = 9  # header fine, scan unreadable: an error row
    (box / "broken.jpg").write_bytes(bytes(data))
    (box / "cut.jpg").write_bytes((box / "plain.jpg").read_bytes()[:-300])
    Image.fromarray(frame).save(box / "still.png")
    return box


@pytest.mark.slow
def test_gpu_decode_path_gives_the_plain_scans_rows(jpeg_inbox, spectral, tmp_path):
    before = _ours()

    def scan(name, **kw):
        kw = {"workers": 0, "report": False, "device": "cpu", **kw}
        return run_scan([jpeg_inbox], tmp_path / name, detectors=[spectral], **kw), _rows(
            tmp_path / name
        )

    plain, rows = scan("plain", gpu_decode="off")
    # the watermark check keeps a CPU decode in the (real, separate) worker
    marked, marked_rows = scan("marked", gpu_decode="on", workers=1)
    # without it the worker decodes nothing: every JPEG it can take reaches the batch
    batched, batched_rows = scan("batched", gpu_decode="on", watermark=False)
    assert len(rows) == 8 and rows.keys() == marked_rows.keys() == batched_rows.keys()
    for other, keys in ((marked_rows, ("watermark",)), (batched_rows, ())):
        for name, row in rows.items():
            for key in ("verdict", "width", "height", "error", "sha256", *keys):
                assert row.get(key) == other[name].get(key), (name, key)
            for det, score in (row.get("scores") or {}).items():
                assert other[name]["scores"][det]["score"] == pytest.approx(
                    score["score"], abs=1e-6
                )
    assert rows["rotated.jpg"]["height"] > rows["rotated.jpg"]["width"]  # upright on all paths
    assert "scores" in batched_rows["rotated.jpg"] and "error" in batched_rows["broken.jpg"]
    assert "error" in batched_rows["cut.jpg"] and "error" not in batched_rows["cmyk.jpg"]
    # plain, rotated and progressive decoded in the batch; broken tried there, then on the CPU
    assert batched.gpu_decode == {
        "requested": "on", "on": True, "device": "cpu", "reason": "on as asked",
        "decoded": 3, "cpu_fallback": 1, "errors": 1,
    }  # fmt: skip
    assert marked.gpu_decode["decoded"] == 3 and marked.gpu_decode["cpu_fallback"] == 0
    assert plain.gpu_decode["on"] is False
    summary = json.loads((tmp_path / "batched" / "summary.json").read_text())
    assert summary["gpu_decode"]["decoded"] == 3
    assert _ours() == before  # every block unlinked


def test_auto_decodes_on_the_gpu_only_where_it_saves_the_workers_a_decode():
    assert not resolve_gpu_decode("auto", "cpu", watermark=False, has_detectors=True).on
    assert not resolve_gpu_decode("off", "cpu", watermark=False, has_detectors=True).on
    assert not resolve_gpu_decode("on", "cpu", watermark=True, has_detectors=False).on
    assert resolve_gpu_decode("on", "cpu", watermark=True, has_detectors=True).on
    with pytest.raises(ValueError, match="auto, on, off"):
        resolve_gpu_decode("yes", "cpu", watermark=False, has_detectors=True)


def test_arrays_round_trip_through_a_block_and_what_does_not_fit_stays_pickled():
    crop = np.arange(2 * 8 * 8 * 3, dtype=np.uint8).reshape(2, 8, 8, 3)
    big = np.ones((64, 64, 3), np.float32)
    with BlockPool(1, 1024) as pool:
        name = pool.lend()
        assert pool.lend() is None  # one file in flight per block
        rec = write_block({"path": "x", "_inputs": {"a": crop, "b": big}}, name)
        assert "a" not in rec["_inputs"] and rec["_inputs"]["b"] is big
        pool.take(rec, name)
        np.testing.assert_array_equal(rec["_inputs"]["a"], crop)
        assert rec["_inputs"]["b"] is big and "_placed" not in rec
        assert pool.lend() == name  # lent again
    read_block({"path": "y"}, memoryview(b""))  # nothing placed, nothing read
    assert not (SHM / name).exists()


@pytest.mark.skipif(not SHM.is_dir(), reason="no /dev/shm on this system")
def test_blocks_of_a_killed_scan_are_unlinked():
    code = (
        "import os, signal\n"
        "from deepaudit.audit.handoff import BlockPool\n"
        "pool = BlockPool(2, 4096)\n"
        "print(pool.lend(), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    name = proc.stdout.strip()
    assert name.startswith(NAME_PREFIX)
    deadline = time.monotonic() + 30  # the resource tracker cleans up once its parent is gone
    while (SHM / name).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (SHM / name).exists()
    assert not any(p.name.startswith(name.rsplit("-", 1)[0]) for p in SHM.iterdir())


def test_cli_refuses_an_unknown_gpu_decode_choice_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from deepaudit.cli import app

    result = CliRunner().invoke(
        app, ["scan", str(tmp_path), "-o", str(tmp_path / "out"), "--gpu-decode", "yes"]
    )
    assert result.exit_code == 2
    assert "gpu_decode must be one of auto, on, off, got 'yes'" in result.output
