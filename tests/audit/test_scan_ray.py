"""``deepaudit scan --ray`` on a real two-node local Ray cluster: the local scan's results."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from deepaudit.audit.scan import run_scan
from deepaudit.manifest import read_manifest

pytest.importorskip("ray", reason="Ray is not installed: pip install 'deepaudit[scale]'")


def _rows(out):
    lines = (out / "results.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == len({r["path"] for r in rows})  # one row per file
    return {r["path"]: r for r in rows}


def _summary(out):
    data = json.loads((out / "summary.json").read_text())
    for k in ("seconds", "files_per_s"):
        data.pop(k)
    return data


def test_ray_scan_gives_the_local_scans_rows(inbox, spectral, creds, tmp_path, ray_cluster):
    from deepaudit.audit.scan_ray import RayScanStats, run_scan_ray

    kw = {"detectors": [spectral], "trust_anchors": creds["ca"]}
    run_scan([inbox["box"]], tmp_path / "local", workers=1, **kw)
    stats: list[RayScanStats] = []
    run_scan_ray([inbox["box"]], tmp_path / "ray", address=ray_cluster, stats=stats, **kw)
    assert stats[0].nodes == 2 and stats[0].actors == 1 and not stats[0].gpu_actors
    local, ray = _rows(tmp_path / "local"), _rows(tmp_path / "ray")
    assert set(ray) == set(local) and len(ray) == 13
    for path, row in local.items():
        assert ray[path] == row, path  # verdicts, scores, reasons, provenance, errors alike
    assert {r["verdict"] for r in ray.values()} >= {"synthetic", "needs-review", "error"}
    assert _summary(tmp_path / "ray") == _summary(tmp_path / "local")
    assert (tmp_path / "ray" / "report.html").is_file()
    again = run_scan_ray([inbox["box"]], tmp_path / "ray", address=ray_cluster, **kw)
    assert again.scanned == 0 and again.skipped_unchanged == 13


def test_killed_ray_driver_resumes_without_duplicates_or_gaps(
    tmp_path, spectral, detector_data, ray_cluster
):
    box = tmp_path / "many"
    (box / "b").mkdir(parents=True)
    m = read_manifest(detector_data)
    for i, item in enumerate(m.items[:40]):
        folder = box / "b" if i % 2 else box
        (folder / f"{i:03d}.png").write_bytes((detector_data / item.path).read_bytes())
    out = tmp_path / "scan"
    cmd = [sys.executable, "-m", "deepaudit", "scan", str(box), "-o", str(out)]
    cmd += ["-d", str(spectral), "--ray", ray_cluster, "--batch-size", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if results.is_file() and results.read_text().count("\n") >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # kill -9 of the driver: no handler, no cleanup
    proc.wait()
    partial = results.read_text().count("\n")
    assert 3 <= partial < 40
    with results.open("a") as fh:
        fh.write('{"path": "torn')  # a half-written last line
    done = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-1500:]
    summary = json.loads(done.stdout)
    assert summary["skipped_unchanged"] == partial and summary["scanned_now"] == 40 - partial
    paths = [json.loads(line)["path"] for line in results.read_text().splitlines()]
    assert len(paths) == len(set(paths)) == 40
