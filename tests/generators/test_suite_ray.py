"""``deepaudit generate --ray`` on a real two-node local Ray cluster: the local run's bytes."""

from __future__ import annotations

import pytest

from deepaudit.generators.suite import load_suite, run_suite
from tests.generators.test_suite import _spec

pytest.importorskip("ray", reason="Ray is not installed: pip install 'deepaudit[scale]'")


def _files(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "suite.json"
    }


def test_ray_generation_is_the_local_run_byte_for_byte(tmp_path, pixel_model, ray_cluster):
    from deepaudit.generators.suite_ray import run_suite_ray

    spec = load_suite(_spec(tmp_path, pixel_model))
    run_suite(spec, tmp_path / "local", device="cpu")
    # a killed run left two batches; the cluster finishes it
    run_suite(spec, tmp_path / "ray", device="cpu", limit_batches=2)
    report = run_suite_ray(spec, tmp_path / "ray", address=ray_cluster, device="cpu")
    assert report.skipped == 4 and report.generated == 4 and not report.failed
    local, ray = _files(tmp_path / "local"), _files(tmp_path / "ray")
    assert set(ray) == set(local)  # manifest.jsonl included, in the same order
    assert [k for k in local if ray[k] != local[k]] == []
    again = run_suite_ray(spec, tmp_path / "ray", address=ray_cluster, device="cpu")
    assert again.generated == 0 and again.skipped == 8
