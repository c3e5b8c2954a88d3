"""The review app over a real scan: the browser flow, its safety, and feedback into a dataset."""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request

import pytest
from typer.testing import CliRunner

pytest.importorskip("fastapi", reason="the review app needs the 'review' extra (fastapi)")
pytest.importorskip("uvicorn", reason="the review app needs the 'review' extra (uvicorn)")

from deepaudit.audit.feedback import read_feedback
from deepaudit.audit.results import top_for_review
from deepaudit.audit.review import ReviewQueue
from deepaudit.audit.review_app import ReviewServer
from deepaudit.audit.scan import run_scan
from deepaudit.cli import app
from deepaudit.detectors import create_detector, load_detector
from deepaudit.detectors.data import load_items
from deepaudit.detectors.inference import score_items
from deepaudit.detectors.metrics import auc
from deepaudit.detectors.train import train_detector
from deepaudit.errors import DeepauditError
from deepaudit.manifest import read_manifest
from deepaudit.media import write_video

runner = CliRunner()


@pytest.fixture(scope="module")
def scanned(detector_data, tmp_path_factory, clip):
    """A small scan, as the demo's quick inbox is made: real and generated test images, a
    video and an unreadable file, scored by a spectral detector."""
    root = tmp_path_factory.mktemp("review")
    det = root / "spectral"
    train_detector(create_detector("spectral"), load_items(detector_data), det, target_fpr=0.1)
    box = root / "inbox"
    box.mkdir()
    m = read_manifest(detector_data)
    truth = {}
    for label in ("real", "synthetic"):
        for i in [i for i in m.items if i.label == label and i.split == "test"][:8]:
            name = f"{label}_{os.path.basename(i.path)}"
            shutil.copyfile(detector_data / i.path, box / name)
            truth[str(box / name)] = label
    write_video(box / "clip.mp4", clip, fps=8)
    (box / "notes.png").write_text("not an image")
    run_scan([box], root / "scan", detectors=[det], workers=0)
    return {"root": root, "scan": root / "scan", "box": box, "truth": truth, "detector": det}


@pytest.fixture
def scan_dir(scanned, tmp_path):
    """A fresh copy of the scan folder per test (feedback starts empty)."""
    out = tmp_path / "scan"
    shutil.copytree(scanned["scan"], out)
    return out


@pytest.fixture
def server(scan_dir):
    srv = ReviewServer(ReviewQueue(scan_dir, reviewer="ana")).start()
    yield srv
    srv.stop()


def _request(url, *, data=None, headers=None, method=None):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install playwright (uses Debian's chromium)")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip(
            "no Chromium here: .ci/run installs Debian's chromium (apt-get install chromium)"
        )
    return sync_playwright, path


def test_review_three_files_with_the_keyboard_in_a_browser(server, scan_dir):
    sync_playwright, chromium = _browser()
    queue = ReviewQueue(scan_dir, reviewer="ana")
    flagged = [r["path"] for r in top_for_review(scan_dir / "results.jsonl", 1000)]
    assert [e.path for e in queue.entries[: len(flagged)]] == flagged  # the report's order
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(server.url)
        page.wait_for_selector("body[data-shown='0']", state="attached")
        assert queue.entries[0].path in page.inner_text("#main-body")
        page.keyboard.press("r")
        page.wait_for_selector("body[data-shown='1']", state="attached")
        page.keyboard.press("n")
        page.keyboard.type("smooth skin, odd ear")
        page.keyboard.press("Enter")
        page.keyboard.press("s")
        page.wait_for_selector("body[data-saved='2']", state="attached")
        page.keyboard.press("u")
        page.wait_for_selector("body[data-saved='3']", state="attached")
        assert page.inner_text("#progress").startswith("3 of")
        # the next file's picture and scores are on the page
        page.wait_for_selector("#main-body table td")
        browser.close()
    assert not errors
    lines = [json.loads(x) for x in (scan_dir / "feedback.jsonl").read_text().splitlines()]
    assert [x["label"] for x in lines] == ["real", "synthetic", "unsure"]
    assert [x["note"] for x in lines] == ["", "smooth skin, odd ear", ""]
    for x, e in zip(lines, queue.entries, strict=False):
        assert x["path"] == e.path and x["sha256"] == e.record["sha256"]
        assert x["verdict"] == e.record["verdict"] and x["reviewer"] == "ana" and x["time"]


def test_only_listed_files_with_the_token_and_csrf(server, scanned, scan_dir, tmp_path):
    base = f"http://127.0.0.1:{server.port}"
    tok = f"token={server.token}"
    outside_before = sorted(p for p in tmp_path.rglob("*") if scan_dir not in p.parents)
    for path in ("/", "/api/queue", "/media/1/thumb"):
        assert _request(base + path)[0] == 403
        assert _request(base + path + "?token=wrong")[0] == 403
    assert _request(base + "/", headers={"Host": "evil.example"})[0] == 400  # DNS rebinding
    status, body = _request(f"{base}/?{tok}")
    assert status == 200 and b"deepaudit review" in body
    queue = json.loads(_request(f"{base}/api/queue?{tok}")[1])
    files = queue["files"]
    assert {f["path"] for f in files} == {str(p) for p in scanned["box"].iterdir()}
    image = next(f["index"] for f in files if f["kind"] == "image")
    status, png = _request(f"{base}/media/{image}/thumb?{tok}")
    assert status == 200 and png.startswith(b"\x89PNG")
    # files are addressed by their place in the queue: nothing else can be asked for
    for bad in (
        f"/media/{len(files)}/thumb",
        "/media/-1/thumb",
        "/media/..%2F..%2F..%2Fetc%2Fpasswd/thumb",
        "/media/../../../../etc/passwd",
        "/media/%2Fetc%2Fpasswd/thumb",
        "/api/item/..%2Fsummary.json",
    ):
        status, body = _request(f"{base}{bad}?{tok}")
        assert status in (404, 422) and b"root:" not in body, bad
    # a video's frames, a detector's heatmap (made on request, kept in the scan folder)
    video = next(f["index"] for f in files if f["kind"] == "video")
    item = json.loads(_request(f"{base}/api/item/{video}?{tok}")[1])
    assert item["frames"] >= 2 and item["media_problem"] is None
    assert _request(f"{base}/media/{video}/frame/1?{tok}")[1].startswith(b"\x89PNG")
    item = json.loads(_request(f"{base}/api/item/{image}?{tok}")[1])
    assert item["heatmaps"] == ["spectral"] and "provenance" in item["record"]
    status, heat = _request(f"{base}/media/{image}/heatmap/spectral?{tok}")
    assert status == 200 and heat.startswith(b"\x89PNG")
    assert len(list((scan_dir / "review-heatmaps").iterdir())) == 1
    # state changes: the token, the CSRF token, JSON and the app's own origin
    url = f"{base}/api/feedback?{tok}"
    body = json.dumps({"index": image, "label": "real", "note": "ok"}).encode()
    good = {"Content-Type": "application/json", "X-CSRF-Token": server.csrf}
    assert _request(f"{base}/api/feedback", data=body, headers=good)[0] == 403
    assert _request(url, data=body, headers={"Content-Type": "application/json"})[0] == 403
    form = {**good, "Content-Type": "application/x-www-form-urlencoded"}
    assert _request(url, data=body, headers=form)[0] == 403
    evil = {**good, "Origin": "http://evil.example"}
    assert _request(url, data=body, headers=evil)[0] == 403
    assert not (scan_dir / "feedback.jsonl").exists()
    bad_label = json.dumps({"index": image, "label": "fake", "note": ""}).encode()
    status, msg = _request(url, data=bad_label, headers=good)
    assert status == 400 and b"real, synthetic, unsure" in msg
    own = {**good, "Origin": base}
    assert _request(url, data=body, headers=own)[0] == 200
    assert [r.label for r in read_feedback(scan_dir)] == ["real"]
    # a listed file changed since the scan is not shown as if it were the one scanned
    listed = files[image]["path"]
    copy = tmp_path / "keep.bin"
    shutil.copyfile(listed, copy)
    try:
        with open(listed, "ab") as fh:
            fh.write(b"\0")
        status, msg = _request(f"{base}/media/{image}/thumb?{tok}")
        assert status == 409 and b"changed since the scan" in msg
    finally:
        shutil.copyfile(copy, listed)
        copy.unlink()
    outside_after = sorted(p for p in tmp_path.rglob("*") if scan_dir not in p.parents)
    assert outside_after == outside_before  # the app wrote inside the scan folder only


def test_feedback_file_linking_out_of_the_scan_is_refused(scan_dir, tmp_path):
    (scan_dir / "feedback.jsonl").symlink_to(tmp_path / "elsewhere.jsonl")
    with pytest.raises(DeepauditError, match="link out of the scan folder"):
        ReviewQueue(scan_dir, reviewer="ana")
    assert not (tmp_path / "elsewhere.jsonl").exists()


def test_feedback_becomes_a_dataset_a_detector_trains_on(scanned, scan_dir, tmp_path):
    truth = scanned["truth"]
    ana = ReviewQueue(scan_dir, reviewer="ana")
    ben = ReviewQueue(scan_dir, reviewer="ben")
    index = {e.path: e.index for e in ana.entries}
    paths = sorted(truth)
    for p in paths:
        ana.decide(index[p], truth[p], "")
    ana.decide(index[paths[0]], "unsure", "second thoughts")  # the last decision counts
    ben.decide(index[paths[-1]], "real" if truth[paths[-1]] == "synthetic" else "synthetic", "")
    r = runner.invoke(
        app, ["manifest", "import-feedback", str(scan_dir), "--out", str(tmp_path / "ds")]
    )
    assert r.exit_code == 0, r.output
    assert "added 14" in r.stdout and "unsure 1" in r.stdout and "conflicting 1" in r.stdout
    m = read_manifest(tmp_path / "ds")
    assert len(m) == 14 and {i.label for i in m} == {"real", "synthetic"}
    for item in m:
        assert truth[str(m.resolve(item).resolve())] == item.label
        assert item.extra["review"]["reviewers"] == ["ana"]
    again = runner.invoke(
        app, ["manifest", "import-feedback", str(scan_dir), "-o", str(tmp_path / "ds"), "--json"]
    )
    assert json.loads(again.stdout)["added"] == 0  # importing again adds nothing twice
    data = load_items(tmp_path / "ds")
    train_detector(create_detector("spectral"), data, tmp_path / "det")
    # it learned the analyst's labels: the files called synthetic score higher
    assert auc(data.labels, score_items(load_detector(tmp_path / "det"), data)) > 0.8
    cal = runner.invoke(
        app,
        ["detectors", "calibrate", str(tmp_path / "det"), "--data", str(tmp_path / "ds"), "--json"],
    )
    assert cal.exit_code == 0, cal.output
    assert json.loads(cal.stdout)["fitted_on"]["items"] == 14


def test_bad_scan_folders_and_feedback_files_get_one_line_errors(tmp_path):
    r = runner.invoke(app, ["review", str(tmp_path), "--no-open"])
    assert r.exit_code == 1 and f"{tmp_path.resolve()}: no results.jsonl here" in r.output
    (tmp_path / "feedback.jsonl").write_text('{"path": "a.png", "label": "real"}\nnot json\n')
    r = runner.invoke(app, ["manifest", "import-feedback", str(tmp_path), "-o", str(tmp_path)])
    assert r.exit_code == 1 and "feedback.jsonl:1: not a feedback record" in r.output
    (tmp_path / "feedback.jsonl").unlink()
    r = runner.invoke(app, ["manifest", "import-feedback", str(tmp_path), "-o", str(tmp_path)])
    assert r.exit_code == 1 and "no feedback yet" in r.output
