"""Evaluation grids and the `detectors train|evaluate` commands."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from deepaudit.cli import app
from deepaudit.detectors import create_detector
from deepaudit.detectors.data import load_items
from deepaudit.detectors.evaluate import cross_generator, evaluate_detector
from deepaudit.detectors.train import train_detector

runner = CliRunner()


def test_evaluate_writes_metrics_predictions_and_plots(detector_data, tmp_path):
    items = load_items(detector_data)
    det = create_detector("spectral")
    train_detector(det, items, tmp_path / "det")
    result = evaluate_detector(det, items.split("test"), tmp_path / "eval", bootstrap=100)
    assert {g: r["auc"] > 0.8 for g, r in result["per_generator"].items()} == {
        "pixel-ddim": True,
        "pixel-euler": True,
    }
    assert set(result["robustness"]) >= {"jpeg:75", "resize:0.5", "blur:2", "noise:5"}
    shortcut = result["format_shortcut"]
    assert shortcut["auc_reencoded"] == result["overall"]["auc"]  # scored re-encoded
    assert shortcut["auc_drop"] == pytest.approx(
        shortcut["auc_original"] - shortcut["auc_reencoded"]
    )
    assert result["shortcuts"]["format_shortcut"] == shortcut
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["overall"] == result["overall"] and saved["format_shortcut"] == shortcut
    lines = (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert len(lines) == len(items.split("test"))
    assert {"id", "path", "label", "score", "generator", "split", "attributes"} <= set(first)
    for f in ("metrics.json", "roc.png", "scores.png", "robustness.png"):
        assert (tmp_path / "eval" / f).stat().st_size > 0
    cross = cross_generator("spectral", {}, items, tmp_path / "cross")
    matrix = cross["train_on_rows_test_on_columns"]
    assert set(matrix) == {"pixel-ddim", "pixel-euler"} and matrix["pixel-ddim"]["pixel-ddim"] > 0.8


def test_train_and_evaluate_commands(detector_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    listed = runner.invoke(app, ["detectors", "list", "--json"])
    assert {"spectral", "timm", "npr"} <= {r["name"] for r in json.loads(listed.stdout)}
    trained = runner.invoke(
        app,
        [
            "detectors",
            "train",
            "--data",
            str(detector_data),
            "--detector",
            "timm",
            "--out",
            "det",
            "--set",
            "epochs=2",
            "--device",
            "cpu",
            "--register",
            "tiny-timm",
            "--json",
        ],
    )
    assert trained.exit_code == 0, trained.output
    out = json.loads(trained.stdout)
    assert out["metrics"]["registered_version"] == "1"
    ev = runner.invoke(
        app,
        [
            "detectors",
            "evaluate",
            "--detector",
            "det",
            "--data",
            str(detector_data),
            "--out",
            "ev",
            "--no-robustness",
        ],
    )
    assert ev.exit_code == 0, ev.output
    assert "AUC" in ev.stdout and (tmp_path / "ev" / "predictions.jsonl").is_file()
    bad = runner.invoke(
        app, ["detectors", "train", "--data", str(detector_data), "--detector", "cnn", "--out", "x"]
    )
    assert bad.exit_code != 0 and "unknown detector 'cnn'" in bad.output


def test_ddp_training_under_torchrun(detector_data, tmp_path):
    """Two CPU processes with the gloo backend: the DDP code path runs and rank 0 saves."""
    import subprocess
    import sys

    cmd = [
        sys.executable,  # torchrun itself, without relying on its script being on this venv's PATH
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        "-m",
        "deepaudit",
        "detectors",
        "train",
        "--data",
        str(detector_data),
        "--detector",
        "timm",
        "--out",
        str(tmp_path / "ddp"),
        "--set",
        "epochs=1",
        "--device",
        "cpu",
        "--no-track",
        "--json",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["metrics"]["test"]["n"] > 0
    assert (tmp_path / "ddp" / "model.safetensors").is_file()


def test_evaluate_on_one_class_reports_the_rates_that_exist(detector_data, tmp_path):
    items = load_items(detector_data)
    det = create_detector("spectral")
    train_detector(det, items, tmp_path / "det")
    test = items.split("test")
    real, synthetic = test.where(label=0), test.where(label=1)
    ev = evaluate_detector(det, real, tmp_path / "real", robustness=("jpeg:75",), bootstrap=50)
    ov = ev["overall"]
    flagged = sum(
        json.loads(line)["score"] >= det.operating_threshold
        for line in (tmp_path / "real" / "predictions.jsonl").read_text().splitlines()
    )
    assert ov["fpr"] == pytest.approx(flagged / len(real), abs=1e-6)  # reported to 6 places
    assert ov["auc"] is None and ov["fnr"] is None and ov["ci95"]["fpr"][0] is not None
    assert "only real items" in ev["note"] and "FPR" in ev["note"]
    assert ev["robustness"]["jpeg:75"]["fpr"] is not None
    # no empty ROC: the plot is left out and the reason recorded
    assert not (tmp_path / "real" / "roc.png").exists()
    assert "needs both" in ev["plots_left_out"]["roc.png"]
    saved = json.loads((tmp_path / "real" / "metrics.json").read_text())
    assert saved["plots_left_out"] == ev["plots_left_out"]
    ev = evaluate_detector(det, synthetic, tmp_path / "syn", robustness=(), bootstrap=50)
    assert ev["overall"]["fpr"] is None and 0 <= ev["overall"]["fnr"] <= 1
    assert "only synthetic items" in ev["note"]
