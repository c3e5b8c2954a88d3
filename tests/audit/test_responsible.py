"""Model and dataset cards from real runs, explanations, the generator audit, and the
fairness report rendered in a real (headless) browser."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from deepaudit.audit.fairness import fairness_audit, load_predictions
from deepaudit.audit.generative import ManifestAttribute, ZeroShotCLIP, audit_generator, imbalance
from deepaudit.audit.report import write_fairness_report
from deepaudit.audit.transparency import (
    explain,
    save_explanation,
    write_dataset_card,
    write_model_card,
)
from deepaudit.detectors import create_detector
from deepaudit.detectors.data import load_items
from deepaudit.detectors.evaluate import evaluate_detector
from deepaudit.detectors.train import train_detector


@pytest.fixture(scope="module")
def trained(detector_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("rai")
    items = load_items(detector_data)
    out = {}
    for name, opts in (("spectral", {}), ("timm", {"epochs": 2, "device": "cpu"})):
        det = create_detector(name, **opts)
        train_detector(det, items, root / name)
        evaluate_detector(
            det, items.split("test"), root / f"eval-{name}", bootstrap=50, robustness=("jpeg:75",)
        )
        out[name] = det
    return root, out


def test_model_card_from_a_training_run(trained, detector_data):
    root, dets = trained
    data = load_predictions(root / "eval-spectral" / "predictions.jsonl", detector_data)
    rep = fairness_audit(
        data, ["group"], threshold=dets["spectral"].operating_threshold, min_n=5, bootstrap=50
    )
    (root / "fair.json").write_text(json.dumps(rep.to_json()))
    paths = write_model_card(
        root / "spectral", evaluation_dir=root / "eval-spectral", fairness_json=root / "fair.json"
    )
    md = paths["markdown"].read_text()
    card = json.loads(paths["json"].read_text())
    cfg = json.loads((root / "spectral" / "config.json").read_text())
    assert "## Intended use" in md and "## Limitations" in md and "## Fairness" in md
    assert card["metrics"]["test"]["auc"] == cfg["metrics"]["test"]["auc"]
    assert f"{cfg['metrics']['test']['auc']:.3f}" in md
    evaluated = json.loads((root / "eval-spectral" / "metrics.json").read_text())
    assert card["evaluation"]["robustness"] == evaluated["robustness"]  # what was measured
    assert isinstance(card["evaluation"]["robustness"]["jpeg:75"]["auc"], float)
    assert card["training_data"]["train"]["items"] == cfg["training"]["train"]["items"]


def test_dataset_card(detector_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(detector_data, root)
    paths = write_dataset_card(root)
    card = json.loads(paths["json"].read_text())
    assert set(card["generators"]) == {"pixel-ddim", "pixel-euler"}
    assert card["generators"]["pixel-ddim"]["samplers"] == ["ddim"]
    assert card["composition"]["by_label"] == {"real": 64, "synthetic": 64}
    assert "| pixel-euler | 32 |" in paths["markdown"].read_text()


def test_explanations_match_the_input(trained, photo, tmp_path):
    _, dets = trained
    for name in ("timm", "spectral"):
        e = explain(dets[name], photo)
        assert e.heatmap.shape == e.crop.shape[:2] == (32, 32)
        assert e.heatmap.min() >= 0.0 and e.heatmap.max() <= 1.0
        assert e.score == pytest.approx(dets[name].predict_proba([photo])[0], abs=1e-4)
        assert save_explanation(e, tmp_path / f"{name}.png").stat().st_size > 1000
    e = explain(dets["timm"], photo)
    assert e.kind == "grad-cam" and e.heatmap.max() > 0


def test_generator_audit(detector_data, trained, tmp_path):
    root, _ = trained
    res = audit_generator(
        detector_data,
        source="pixel-ddim",
        detectors=[root / "spectral"],
        classifier=lambda imgs: ["bright" if im.mean() > 100 else "dark" for im in imgs],
    )
    assert res["items"] == 32
    assert res["provenance_coverage"]["c2pa_valid"] == 0.0
    assert 0 < res["diversity"]["mean_pairwise_distance"] <= 2
    assert res["detectability"]["spectral"]["auc"] > 0.8
    counts = res["representation"]["overall"]["counts"]
    assert sum(counts.values()) == 32
    assert imbalance({"a": 3, "b": 1}) == {"mad_from_uniform": 0.25, "max_abs_deviation": 0.25}
    assert imbalance({"a": 4}, k=2)["mad_from_uniform"] == pytest.approx(0.5)
    attr = audit_generator(
        detector_data, source="pixel-ddim", classifier=ManifestAttribute("group")
    )
    assert attr["representation"]["overall"]["counts"] == {"n/a": 32}


def test_zero_shot_clip_from_local_weights(tmp_path, photo):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from deepaudit.generators.tiny_pipelines import _tokenizer

    tok = _tokenizer(tmp_path / "tok")
    cfg = CLIPConfig(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    CLIPModel(cfg).save_pretrained(tmp_path / "clip")
    proc = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=tok,
    )
    proc.save_pretrained(tmp_path / "clip")
    clf = ZeroShotCLIP(tmp_path / "clip", ["cat", "dog"])
    out = clf.predict([photo, photo[::-1]])
    assert len(out) == 2 and set(out) <= {"cat", "dog"}


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_fairness_report_in_a_headless_browser(trained, detector_data, tmp_path):
    root, dets = trained
    data = load_predictions(root / "eval-timm" / "predictions.jsonl", detector_data)
    rep = fairness_audit(
        data, ["group"], threshold=dets["timm"].operating_threshold, min_n=5, bootstrap=50
    )
    paths = write_fairness_report(rep, tmp_path / "fair", data=data)
    js = json.loads(paths["json"].read_text())
    assert sum(g["n"] for g in js["groups"]["group"]) == len(data.labels) > 0
    browser = _browser()
    if browser is None:
        pytest.skip(
            "no Chromium here: .ci/run installs Debian's chromium (apt-get install chromium)"
        )
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    shot = tmp_path / "shot.png"
    url = paths["html"].resolve().as_uri()
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", "--window-size=1200,1800", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "deepaudit fairness audit" in dom and "By group" in dom and "F_FPR" in dom
    assert dom.count("<img") >= 3
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape[1] == 1200 and img.std() > 5  # a rendered page, not a blank one
