"""mlflow tracking against a real sqlite store in a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pytest

from deepaudit.tracking import Tracker, default_tracking_uri


@pytest.fixture
def tracker(tmp_path) -> Tracker:
    return Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")


@pytest.mark.slow  # a fresh mlflow sqlite store: its migrations take seconds
def test_run_is_written_and_read_back(tracker, tmp_path):
    artifact = tmp_path / "notes.txt"
    artifact.write_text("detector trained on tiny data\n")
    with tracker.start_run(
        "unit", run_name="r1", params={"lr": 1e-3, "model": {"name": "resnet10t"}}, tags={"k": 1}
    ) as run:
        for step, auc in enumerate([0.6, 0.8, 0.9]):
            run.log_metrics({"val_auc": auc, "bad": float("nan")}, step=step)
        run.log_artifact(artifact)
        run.log_dict({"auc": 0.9}, "reports/summary.json")
    record = tracker.get_run(run.run_id)
    assert record.status == "FINISHED" and record.name == "r1"
    assert record.params == {"lr": "0.001", "model.name": "resnet10t"}
    assert record.metrics == {"val_auc": 0.9}
    assert record.tags["k"] == "1" and "deepaudit.version" in record.tags
    history = tracker.client.get_metric_history(run.run_id, "val_auc")
    assert [m.value for m in history] == [0.6, 0.8, 0.9]
    art_dir = Path(urlparse(record.artifact_uri).path)
    assert art_dir.is_relative_to(tmp_path)  # artifacts live beside the store, not in ./mlruns
    assert (art_dir / "notes.txt").read_text().startswith("detector")
    assert json.loads((art_dir / "reports" / "summary.json").read_text()) == {"auc": 0.9}


@pytest.mark.slow  # a fresh mlflow sqlite store: its migrations take seconds
def test_failed_run_is_marked_failed(tracker):
    with pytest.raises(RuntimeError), tracker.start_run("unit") as run:
        raise RuntimeError("boom")
    assert tracker.get_run(run.run_id).status == "FAILED"


@pytest.mark.slow  # a fresh mlflow sqlite store: its migrations take seconds
def test_resume_a_run(tracker):
    with tracker.start_run("unit") as run:
        run.log_metrics({"epoch": 1}, step=1)
    with tracker.start_run("unit", resume_run_id=run.run_id) as again:
        again.log_metrics({"epoch": 2}, step=2)
    assert again.run_id == run.run_id
    assert tracker.get_run(run.run_id).metrics["epoch"] == 2


@pytest.mark.slow  # a fresh mlflow sqlite store: its migrations take seconds
def test_list_runs_newest_first(tracker):
    ids = []
    for name in ("a", "b"):
        with tracker.start_run("listing", run_name=name) as run:
            ids.append(run.run_id)
    listed = tracker.list_runs("listing")
    assert {r.run_id for r in listed} == set(ids)
    assert tracker.list_runs("no-such-experiment") == []


def test_default_uri(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert default_tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert default_tracking_uri(tmp_path) == "http://127.0.0.1:5000"


@pytest.mark.slow  # a fresh mlflow sqlite store: its migrations take seconds
def test_bad_params_leave_the_run_failed_not_running(tracker):
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException), tracker.start_run("bad", params={"bad?key": 1}):
        pass
    assert [r.status for r in tracker.list_runs("bad")] == ["FAILED"]
