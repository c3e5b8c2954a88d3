"""``deepaudit scan --ray`` on a real two-node local Ray cluster: the local scan's results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from deepaudit.audit.scan import run_scan
from deepaudit.manifest import read_manifest

pytest.importorskip("ray", reason="Ray is not installed: pip install 'deepaudit[scale]'")


def _rows(out):
    lines = (out / "results.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == len({r["path"] for r in rows})  # one row per file
    return {r["path"]: r for r in rows}


def _alike(a, b, path="row"):
    """Rows alike: equal, but for floats within 1e-3. Each process picks its detector engine
    (torch or ONNX) by measured speed, and their outputs differ in the last bits, which a
    value rounded to 4 decimals (the heatmap's max and area) can carry into the 4th."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-3), path
    elif isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), path
        for k in a:
            _alike(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _alike(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


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
        _alike(ray[path], row, path)  # verdicts, scores, reasons, provenance, errors alike
    assert {r["verdict"] for r in ray.values()} >= {"synthetic", "needs-review", "error"}
    summary_ray, summary_local = _summary(tmp_path / "ray"), _summary(tmp_path / "local")
    # where JPEGs were decoded for the detectors: the batched decode is the local scan's alone
    assert summary_ray.pop("gpu_decode")["on"] is False
    assert summary_local.pop("gpu_decode")["on"] is False  # auto on a CPU device
    assert summary_ray == summary_local
    assert (tmp_path / "ray" / "report.html").is_file()
    again = run_scan_ray([inbox["box"]], tmp_path / "ray", address=ray_cluster, **kw)
    assert again.scanned == 0 and again.skipped_unchanged == 13


def _actor_pids(cluster_sockets: list[str]) -> list[int]:
    """The detector actors' processes of this test's cluster (their raylet names its socket)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"_ScoreActor" not in (entry / "cmdline").read_bytes():
                continue
            ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            parent = Path("/proc", ppid, "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if any(sock.encode() in parent for sock in cluster_sockets):
            pids.append(int(entry.name))
    return pids


def test_killed_ray_driver_and_actor_leave_no_duplicates_or_gaps(
    tmp_path, spectral, detector_data, ray_cluster
):
    import ray

    box = tmp_path / "many"
    (box / "b").mkdir(parents=True)
    m = read_manifest(detector_data)
    # 120 files: several blocks of Ray's smallest (MIN_ROWS_PER_BLOCK), so both kills land
    # between blocks
    for i, item in enumerate(m.items[:120]):
        folder = box / "b" if i % 2 else box
        (folder / f"{i:03d}.png").write_bytes((detector_data / item.path).read_bytes())
    os.link(box / "000.png", box / "b" / "zz.png")  # a second route: still one file, one row
    out = tmp_path / "scan"
    cmd = [sys.executable, "-m", "deepaudit", "scan", str(box), "-o", str(out)]
    cmd += ["-d", str(spectral), "--ray", ray_cluster]
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
    assert 3 <= partial < 120
    with results.open("a") as fh:
        fh.write('{"path": "torn')  # a half-written last line
    # the rerun loses its detector actor (kill -9, as the kernel's OOM killer does) once it
    # has written a block: Ray restarts the actor and hands it the block again
    sockets = [n["RayletSocketName"] for n in ray.nodes() if n.get("Alive")]
    rerun = subprocess.Popen(
        [*cmd, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    killed = []
    deadline = time.time() + 120
    while not killed and rerun.poll() is None and time.time() < deadline:
        if results.read_text().count("\n") > partial:
            for pid in _actor_pids(sockets):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.02)
    stdout, stderr = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, stderr[-1500:]
    assert killed, "the actor was not seen"
    summary = json.loads(stdout)
    assert summary["skipped_unchanged"] == partial and summary["scanned_now"] == 120 - partial
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert len({r["path"] for r in rows}) == len(rows) == 120
    assert not [r["path"] for r in rows if "error" in r]  # the actor's block was scored again


def test_kept_detector_actors_serve_the_next_scan_then_expire(
    inbox, spectral, creds, tmp_path, ray_cluster
):
    import ray

    from deepaudit.audit.ray_kept import NAMESPACE, kept_actor_names, stop_kept_actors
    from deepaudit.audit.scan_ray import run_scan_ray

    kw = {"detectors": [spectral], "trust_anchors": creds["ca"], "report": False}
    run_scan([inbox["box"]], tmp_path / "local", workers=1, **kw)
    # the CLI: --keep-actors needs --ray
    from typer.testing import CliRunner

    from deepaudit.cli.app import app

    r = CliRunner().invoke(
        app, ["scan", str(inbox["box"]), "-o", str(tmp_path / "x"), "--keep-actors", "1"]
    )
    assert r.exit_code == 2 and "--keep-actors is for --ray scans" in r.output
    try:
        run_scan_ray([inbox["box"]], tmp_path / "a", address=ray_cluster, keep_actors=0.05, **kw)
        # the actor the scan kept: named after its detectors and how they are loaded
        how = {"device": "cpu", "precision": "auto", "engine": "auto", "threads": 1}
        (name,) = kept_actor_names(SimpleNamespace(detectors=[str(spectral.resolve())], **how), 1)
        actor = ray.get_actor(name, namespace=NAMESPACE)  # outlived the job
        pid = ray.get(actor.keep.remote(0.05))
        run_scan_ray([inbox["box"]], tmp_path / "b", address=ray_cluster, keep_actors=0.05, **kw)
        assert ray.get(actor.keep.remote(0.05)) == pid  # the second scan used the same process
        local = _rows(tmp_path / "local")
        for out in ("a", "b"):
            _alike(_rows(tmp_path / out), local)  # the same rows as the local scan
        # idle for 3 s (0.05 min): it ends itself, and its name is free again
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the kept actor did not expire")
    finally:
        stop_kept_actors()


def test_kept_actors_last_until_their_first_block_however_short_the_keep(
    inbox, spectral, creds, tmp_path, ray_cluster
):
    """An actor kept for 0.3 s after its last block must still be there for a job whose CPU
    stage takes longer than that before the first block arrives: the driver holds it while
    the job runs (``ray_kept.held``). Without that, the actor expired before scoring."""
    from deepaudit.audit.ray_kept import stop_kept_actors
    from deepaudit.audit.scan_ray import run_scan_ray

    kw = {"detectors": [spectral], "trust_anchors": creds["ca"], "report": False}
    run_scan([inbox["box"]], tmp_path / "local", workers=1, **kw)
    try:
        run_scan_ray([inbox["box"]], tmp_path / "ray", address=ray_cluster, keep_actors=0.005, **kw)
        _alike(_rows(tmp_path / "ray"), _rows(tmp_path / "local"))
    finally:
        stop_kept_actors()


def test_kept_actor_names_ignore_the_engine_cache_in_a_detector_folder(spectral, tmp_path):
    """The ONNX engine writes its graph and timings into ``DIR/engine`` on first use (CPUs
    without bf16): the next scan must still find the actors kept for that folder."""
    import shutil

    from deepaudit.audit.ray_kept import kept_actor_names

    det = shutil.copytree(spectral, tmp_path / "det")
    how = {"device": "cpu", "precision": "auto", "engine": "auto", "threads": 1}
    scorer = SimpleNamespace(detectors=[str(det)], **how)
    before = kept_actor_names(scorer, 2)
    (det / "engine").mkdir()
    (det / "engine" / "graph.onnx").write_bytes(b"\0" * 64)
    assert kept_actor_names(scorer, 2) == before
    (det / "config.json").write_text((det / "config.json").read_text() + "\n")  # retrained
    assert kept_actor_names(scorer, 2) != before
