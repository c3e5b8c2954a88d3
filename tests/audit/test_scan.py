"""deepaudit scan over a folder of real, generated, signed, stripped, video and broken files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser

import numpy as np
import pytest

from deepaudit.audit.scan import run_scan
from deepaudit.manifest import read_manifest
from deepaudit.media import write_image, write_video


def _rows(out):
    return {
        os.path.basename(r["path"]): r
        for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())
    }


def test_scan_rows_states_verdicts_and_reasons(inbox, spectral, creds, tmp_path):
    out = tmp_path / "scan"
    summary = run_scan(
        [inbox["box"]], out, detectors=[spectral], trust_anchors=creds["ca"], workers=2, csv=True
    )
    rows = _rows(out)
    assert summary.files == len(rows) == 13  # the loop adds nothing; every file once
    assert rows["signed.png"]["provenance"]["state"] == "trusted"
    assert rows["signed.png"]["verdict"] == "synthetic"
    assert rows["signed.png"]["reasons"][0]["source"] == "c2pa-trusted"
    assert rows["stripped.png"]["provenance"]["state"] == "absent"
    assert rows["tampered.png"]["provenance"]["state"] == "invalid"
    assert rows["tampered.png"]["verdict"] == "needs-review"
    assert rows["fake.png"]["verdict"] == "likely-synthetic"
    assert rows["fake.png"]["reasons"][0]["source"] == "detector"
    real = rows["real.png"]
    assert real["scores"]["spectral"]["score"] < real["scores"]["spectral"]["threshold"]
    assert real["verdict"] == "no-evidence"
    # the low score is stated, pointing neither way (a low score is not proof)
    assert [(r["source"], r["points_to"]) for r in real["reasons"]] == [("detector", "neither")]
    assert " calibrated, trained on deepaudit manifest" in real["reasons"][0]["text"]
    assert "≤ 0.2" in real["reasons"][0]["text"]
    assert rows["fake.png"]["fused"]["rule"] == "mean-logit"
    assert summary.to_json()["fusion"] == {
        "rule": "mean-logit",
        "band": [0.2, 0.8],
        "not_fused": [],
    }
    assert real["provenance"]["state"] == "absent" and real["metadata"]["signals"] == []
    assert real["scores"]["spectral"]["score"] < rows["fake.png"]["scores"]["spectral"]["score"]
    # a trusted capture claim on pixels the detector flags: the conflict is shown
    assert rows["capture.png"]["verdict"] == "needs-review"
    assert {r["points_to"] for r in rows["capture.png"]["reasons"]} == {"authentic", "synthetic"}
    assert rows["clip.mp4"]["kind"] == "video" and "spectral" in rows["clip.mp4"]["scores"]
    for name, why in [
        ("empty.jpg", "empty file"),
        ("truncated.jpg", "truncated JPEG image data"),
        ("notes.png", "not an image"),
        ("invoice.mp4", "not an image or video"),
        ("bomb.png", "pixels"),
        ("pipe.png", "not a regular file"),
    ]:
        assert rows[name]["verdict"] == "error", name
        error = rows[name]["error"]
        assert error["class"] == "MediaError", error
        assert error["message"].startswith(str(inbox["box"] / name)) and why in error["message"]
    assert summary.by_verdict["error"] == 6 and summary.attention >= 9
    assert (out / "results.csv").read_text().count("\n") == 14
    summary_json = json.loads((out / "summary.json").read_text())
    assert summary_json["by_provenance_state"]["trusted"] == 2


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.text, self.imgs = [], 0

    def handle_data(self, data):
        self.text.append(data)

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs += 1
            assert dict(attrs)["src"].startswith("data:image/png;base64,")  # self-contained
        if tag in ("script", "link"):
            raise AssertionError("the report must not load anything")


def test_report_is_self_contained_and_lists_what_to_review(inbox, spectral, creds, tmp_path):
    out = tmp_path / "scan"
    run_scan([inbox["box"]], out, detectors=[spectral], trust_anchors=creds["ca"], workers=0)
    parser = _Text()
    parser.feed((out / "report.html").read_text())
    text = " ".join(parser.text)
    assert parser.imgs >= 1
    assert "Look at these first" in text and "tampered.png" in text and "needs-review" in text
    assert "Verdicts" in text and "trusted" in text


def test_rescan_skips_unchanged_and_redoes_changed_files(inbox, spectral, tmp_path):
    out = tmp_path / "scan"
    run_scan([inbox["box"]], out, detectors=[spectral], workers=0)
    again = run_scan([inbox["box"]], out, detectors=[spectral], workers=0)
    assert again.scanned == 0 and again.skipped_unchanged == 13
    write_image(inbox["box"] / "real.png", np.zeros((40, 40, 3), np.uint8))
    third = run_scan([inbox["box"]], out, detectors=[spectral], workers=0)
    assert third.scanned == 1
    from deepaudit.errors import DeepauditError

    with pytest.raises(DeepauditError, match="other detectors or settings"):
        run_scan([inbox["box"]], out, workers=0)


def test_killed_scan_resumes_without_duplicates_or_gaps(tmp_path, spectral, detector_data):
    box = tmp_path / "many"
    box.mkdir()
    m = read_manifest(detector_data)
    for i, item in enumerate(m.items[:60]):
        (box / f"{i:03d}.png").write_bytes((detector_data / item.path).read_bytes())
    out = tmp_path / "scan"
    cmd = [
        sys.executable,
        "-m",
        "deepaudit",
        "scan",
        str(box),
        "-o",
        str(out),
        "-d",
        str(spectral),
        "--workers",
        "0",
        "--batch-size",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if results.is_file() and results.read_text().count("\n") >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = results.read_text().count("\n")
    assert 5 <= partial < 60
    with results.open("a") as fh:
        fh.write('{"path": "torn')  # a half-written last line
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-1500:]
    paths = [json.loads(line)["path"] for line in results.read_text().splitlines()]
    assert len(paths) == len(set(paths)) == 60


def test_animated_gif_is_scanned_as_a_clip(tmp_path, clip, spectral):
    box = tmp_path / "gifs"
    box.mkdir()
    write_video(box / "anim.gif", clip, fps=8)
    write_image(box / "still.gif", clip[0])
    run_scan([box], tmp_path / "scan", detectors=[spectral], workers=0, frames=4)
    rows = _rows(tmp_path / "scan")
    assert rows["anim.gif"]["kind"] == "video" and rows["anim.gif"]["frames_sampled"] == 4
    assert rows["still.gif"]["kind"] == "image"
    assert "spectral" in rows["anim.gif"]["scores"]


def test_finish_keeps_the_engine_the_scoring_processes_reported(spectral, tmp_path):
    """A Ray scan's actors report which engine ran each detector; the driver's own copy of
    the detector never scores, so finishing must not overwrite their record with nothing."""
    from deepaudit.audit.scan import finish_scan, prepare_scan

    plan = prepare_scan(tmp_path / "scan", detectors=[spectral], device="cpu")
    (key,) = plan.summary.detectors
    ran = {"engine": "torch", "precision": "bf16", "device": "cpu", "threads": 1, "why": "x"}
    plan.summary.detectors[key]["engine"] = ran  # as run_scan_ray records it from the actors
    summary = finish_scan(plan, compact=False, csv=False, report=False)
    assert summary.detectors[key]["engine"] == ran
    saved = json.loads((tmp_path / "scan" / "summary.json").read_text())
    assert saved["detectors"][key]["engine"] == ran
    # a scan whose loaded copy did not score and that nobody reported for: recorded as None
    plan = prepare_scan(tmp_path / "again", detectors=[spectral], device="cpu")
    assert (
        finish_scan(plan, compact=False, csv=False, report=False).detectors[key]["engine"] is None
    )


def test_the_cluster_driver_learns_the_detectors_facts_without_loading_them(
    spectral, tmp_path, monkeypatch
):
    """A Ray scan's driver needs a detector's identity, thresholds and input spec, not its
    network: after one load they come from a per-user cache keyed by the folder's files, so a
    second driver imports neither torch nor timm. The ONNX engine's cache inside the folder
    does not count; a changed file does."""
    import shutil

    from deepaudit.audit import scan
    from deepaudit.detectors import create_detector

    monkeypatch.setenv("DEEPAUDIT_CACHE_DIR", str(tmp_path / "cache"))
    det = shutil.copytree(spectral, tmp_path / "spectral")
    loads: list[int] = []
    real = scan.load_scan_detectors
    monkeypatch.setattr(scan, "load_scan_detectors", lambda *a: loads.append(1) or real(*a))
    first = scan.describe_scan_detectors([det], "auto", "auto")
    again = scan.describe_scan_detectors([det], "auto", "auto")
    assert len(loads) == 1
    (ld,) = real([det], "cpu", "auto", "auto", 0)
    assert again[0].to_json() == first[0].to_json() == scan.DetectorFacts.of(ld).to_json()
    assert again[0].spec == ld.spec and again[0].key == "spectral"
    (det / "engine").mkdir()
    (det / "engine" / "timing.json").write_text("{}")  # the engine's cache: not the detector
    scan.describe_scan_detectors([det], "auto", "auto")
    assert len(loads) == 1
    cfg = det / "config.json"
    os.utime(cfg, ns=(cfg.stat().st_atime_ns, cfg.stat().st_mtime_ns + 1))
    scan.describe_scan_detectors([det], "auto", "auto")
    assert len(loads) == 2
    # a video detector's facts follow its base image detector's folder too
    video = create_detector("video-frames", base=str(det)).save_pretrained(tmp_path / "video")
    before = scan.detector_files(video)
    os.utime(cfg, ns=(cfg.stat().st_atime_ns, cfg.stat().st_mtime_ns + 1))
    assert scan.detector_files(video) != before
    # a second driver process, with a timm detector seen once: no torch, no timm
    net = create_detector("timm", input_size=32, device="cpu").save_pretrained(tmp_path / "net")
    scan.describe_scan_detectors([net], "auto", "auto")
    probe = (
        "import sys\n"
        "from deepaudit.audit.scan import describe_scan_detectors\n"
        f"(f,) = describe_scan_detectors([{str(net)!r}], 'auto', 'auto')\n"
        "assert f.spec.size == 32, f\n"
        "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stderr[-2000:]
