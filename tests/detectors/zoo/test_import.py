"""Importing published checkpoints: what is refused, what is recorded, and the scan with two
imported detectors (CNNDetection's format, random weights made here)."""

import json
import os
import pickle

import numpy as np
import pytest
from typer.testing import CliRunner

from deepaudit.cli import app
from deepaudit.detectors import load_detector
from deepaudit.detectors.zoo import import_detector
from deepaudit.errors import DeepauditError

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """``blur_jpg_prob0.5.pth`` as the authors save it: ``{'model': state_dict}`` (plus the
    training bookkeeping their trainer stores), random weights with a tame last layer."""
    torch.manual_seed(0)
    net = torchvision.models.resnet50(num_classes=1)
    with torch.no_grad():
        net.fc.weight.mul_(0.02)
    path = tmp_path_factory.mktemp("authors") / "blur_jpg_prob0.5.pth"
    torch.save({"model": net.state_dict(), "total_steps": 1000}, path)
    return path


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_import_records_identity_and_checks_the_weights_hash(ckpt, tmp_path):
    out = import_detector("cnndetection", [ckpt], tmp_path / "cnn")
    cfg = json.loads((out / "config.json").read_text())
    imp = cfg["imported"]
    assert cfg["detector"] == "imported-cnndetection"
    assert imp["licence"].startswith("CC BY-NC-SA 4.0") and imp["non_commercial"] is True
    assert imp["inputs"][0]["file"] == "blur_jpg_prob0.5.pth"
    import hashlib

    assert imp["inputs"][0]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert imp["preprocessing"]["crop"] is None and imp["preprocessing"]["resize"] is None
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]
    det = load_detector(out)
    assert det.identity()["source"] == "https://github.com/PeterWang512/CNNDetection"
    # the weights change after import: loading refuses, naming the file
    data = bytearray((out / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (out / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(DeepauditError, match=r"model\.safetensors: sha256 .* does not match"):
        load_detector(out)


class Gadget:
    def __reduce__(self):
        return (print, ("this would run at load",))


@pytest.mark.parametrize(
    "make, why",
    [
        (lambda p, ck: p.write_bytes(b"not a checkpoint at all"), "not a torch checkpoint"),
        (lambda p, ck: p.write_bytes(ck.read_bytes()[:4_000_000]), "corrupt or truncated"),
        (lambda p, ck: p.write_bytes(pickle.dumps({"model": Gadget()})), "refused"),
        (
            lambda p, ck: torch.save(
                {"model": torchvision.models.resnet18(num_classes=1).state_dict()}, p
            ),
            "does not fit the cnndetection architecture: missing key 'layer1.0.conv3.weight'",
        ),
        (
            lambda p, ck: torch.save(
                {"model": torchvision.models.resnet50(num_classes=2).state_dict()}, p
            ),
            r"'fc.weight' has shape \(2, 2048\), the architecture needs \(1, 2048\)",
        ),
        (lambda p, ck: torch.save({"optimizer": {}}, p), "holds no tensors where the weights"),
    ],
    ids=["garbage", "truncated", "foreign-pickle", "wrong-arch", "wrong-shape", "no-weights"],
)
def test_bad_checkpoints_give_one_line_and_write_nothing(ckpt, tmp_path, make, why):
    bad = tmp_path / "bad.pth"
    make(bad, ckpt)
    out = tmp_path / "out"
    res = _invoke("detectors", "import", "cnndetection", bad, "--out", out)
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: "), res.output
    import re

    assert re.search(why, lines[0]), lines[0]
    assert "Traceback" not in res.output and "this would run" not in res.output
    assert not out.exists() and not (tmp_path / "out.part").exists()


def test_unknown_kind_expected_hash_and_existing_folder(ckpt, tmp_path):
    with pytest.raises(DeepauditError, match="did you mean 'cnndetection'"):
        import_detector("cnndetecton", [ckpt], tmp_path / "x")
    with pytest.raises(DeepauditError, match="is not among the expected hashes"):
        import_detector("cnndetection", [ckpt], tmp_path / "x", expect_sha256=["0" * 64])
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(DeepauditError, match="exists and is not empty"):
        import_detector("cnndetection", [ckpt], tmp_path / "taken")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


@pytest.mark.slow
def test_calibrate_then_scan_with_two_imported_detectors(ckpt, tmp_path, detector_data):
    a = import_detector("cnndetection", [ckpt], tmp_path / "imported_cnndetection")
    from tests.detectors.zoo.test_npr import authors_state

    torch.save(authors_state(), tmp_path / "model_epoch_last_3090.pth")
    b = import_detector("npr", [tmp_path / "model_epoch_last_3090.pth"], tmp_path / "imported_npr")
    res = _invoke(
        "detectors", "calibrate", a, "--data", detector_data, "--target-fpr", "0.1", "--json"
    )
    assert res.exit_code == 0, res.output
    cal = json.loads(res.output)
    assert cal["method"] == "platt" and set(cal["report"]) >= {"before", "after"}
    info = _invoke("detectors", "info", a)
    assert "calibrated (platt)" in info.output and "NON-COMMERCIAL" in info.output
    assert "blur_jpg_prob0.5.pth (weights) sha256" in info.output

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    from deepaudit.media import write_image

    rng = np.random.default_rng(0)
    for i in range(3):
        write_image(
            inbox / f"img{i}.png", rng.integers(0, 256, (48 + 8 * i, 64, 3), dtype=np.uint8)
        )
    out = tmp_path / "scan"
    res = _invoke("scan", inbox, "-o", out, "-d", a, "-d", b, "--workers", "0", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    dets = summary["detectors"]
    assert dets["imported_cnndetection"]["calibration"]["method"] == "platt"
    assert dets["imported_npr"]["calibration"] is None
    assert dets["imported_npr"]["non_commercial"] is True
    assert dets["imported_cnndetection"]["licence"].startswith("CC BY-NC-SA")
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    for r in rows:
        s = r["scores"]
        assert "raw" in s["imported_cnndetection"] and "raw" not in s["imported_npr"]
        ps = [s[k]["score"] for k in s]
        logit = np.mean([np.log(p / (1 - p)) for p in np.clip(ps, 1e-6, 1 - 1e-6)])
        assert r["fused"]["score"] == pytest.approx(1 / (1 + np.exp(-logit)))
        assert any("imported_cnndetection" in x["text"] for x in r["reasons"])
    report = (out / "report.html").read_text()
    assert "CC BY-NC-SA 4.0" in report and "fused" in report


def test_model_card_of_an_imported_detector_names_licence_and_source(ckpt, tmp_path):
    from deepaudit.audit.transparency import write_model_card

    out = import_detector("cnndetection", [ckpt], tmp_path / "cnn")
    paths = write_model_card(out)
    md = paths["markdown"].read_text()
    assert "CC BY-NC-SA 4.0" in md and "**non-commercial**" in md
    assert "blur_jpg_prob0.5.pth" in md and "PeterWang512/CNNDetection" in md
    card = json.loads(paths["json"].read_text())
    assert card["identity"]["non_commercial"] is True
    assert any("may not be used commercially" in x for x in card["limitations"])


def test_cli_one_line_errors_for_a_tampered_folder_and_a_missing_backbone(ckpt, tmp_path):
    out = import_detector("cnndetection", [ckpt], tmp_path / "cnn")
    data = bytearray((out / "model.safetensors").read_bytes())
    data[-3] ^= 0x01
    (out / "model.safetensors").write_bytes(bytes(data))
    for args in (("detectors", "info", out), ("scan", tmp_path, "-o", tmp_path / "s", "-d", out)):
        res = _invoke(*args)
        assert res.exit_code == 1
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and "model.safetensors: sha256" in lines[0], res.output
        assert "does not match" in lines[0] and "Traceback" not in res.output
    head = tmp_path / "fc_weights.pth"
    torch.save({"weight": torch.zeros(1, 768), "bias": torch.zeros(1)}, head)
    res = _invoke("detectors", "import", "univfd", head, "--out", tmp_path / "u")
    lines = res.output.strip().splitlines()
    assert res.exit_code == 1 and len(lines) == 1 and "CLIP" in lines[0], res.output
    assert not (tmp_path / "u").exists()
