"""Face anonymisation: faces found and replaced, the rest untouched, the edit declared."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from deepaudit.cli.app import app
from deepaudit.generators.anonymize import (
    AnonymizeError,
    FaceDetector,
    ModelFaces,
    anonymize_file,
    face_mask,
)
from deepaudit.media import read_image, write_image

CHANGE_FLOOR = 15.0  # grey levels: a face replaced by another differs far more than this


@pytest.fixture(scope="module")
def face_photo(tmp_path_factory):
    """scikit-image's astronaut at 256²: one frontal face that OpenCV's Haar cascade finds."""
    import cv2
    import skimage.data

    img = cv2.resize(skimage.data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    return write_image(tmp_path_factory.mktemp("in") / "astronaut.png", img)


@pytest.fixture(scope="module")
def no_face_photo(tmp_path_factory):
    import skimage.data

    return write_image(tmp_path_factory.mktemp("in") / "coffee.png", skimage.data.coffee())


def test_haar_finds_the_face_and_the_mask_is_zero_outside_it(face_photo):
    image = read_image(face_photo)
    boxes = FaceDetector().detect(image)
    assert len(boxes) == 1
    b = boxes[0]
    assert 70 <= b.x <= 100 and 20 <= b.y <= 45 and 40 <= b.w <= 70  # the astronaut's face
    m = face_mask(image.shape[:2], boxes)
    assert m[b.y + b.h // 2, b.x + b.w // 2] == 1.0  # the face itself: fully replaced
    assert m[0, 0] == 0.0 and m[-1, -1] == 0.0
    assert 0 < (m > 0).mean() < 0.1  # a face, not the picture


def test_bad_yunet_model_is_a_one_line_error(tmp_path):
    with pytest.raises(AnonymizeError, match=r"missing\.onnx: YuNet model file not found"):
        FaceDetector(yunet=tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx")
    with pytest.raises(AnonymizeError, match=r"junk\.onnx: not a YuNet model"):
        FaceDetector(yunet=junk)


def test_face_replaced_and_nothing_else_changed(face_photo, pixel_model, creds, tmp_path):
    source = ModelFaces(pixel_model, steps=4, device="cpu")
    det = FaceDetector()
    r = anonymize_file(
        face_photo, tmp_path, detector=det, source=source, credentials=creds["signing"]
    )
    assert r.status == "anonymized" and r.output is not None and len(r.faces) == 1
    before, after = read_image(face_photo), read_image(r.output)
    assert before.shape == after.shape
    for b in r.faces:
        region = (slice(b.y, b.y + b.h), slice(b.x, b.x + b.w))
        diff = np.abs(after[region].astype(int) - before[region]).mean()
        assert diff > CHANGE_FLOOR
    outside = face_mask(before.shape[:2], r.faces) == 0
    assert np.array_equal(after[outside], before[outside])  # bit for bit outside the masks
    # the same photo gets the same new face on a rerun
    again = anonymize_file(
        face_photo, tmp_path / "again", detector=det, source=source, credentials=creds["signing"]
    )
    assert np.array_equal(read_image(again.output), after)


def test_anonymize_cli_declares_the_edit_and_scan_calls_it_ai_edited(
    face_photo, no_face_photo, pixel_model, creds, tmp_path
):
    from deepaudit.audit.provenance import inspect_provenance
    from deepaudit.audit.scan import run_scan
    from deepaudit.c2pa_layer import sign_file

    # the original carries its own manifest (a camera capture): it must survive as ingredient
    original = sign_file(
        face_photo,
        creds["signing"],
        tmp_path / "astronaut.png",
        digital_source_type="digitalCapture",
    )
    out = tmp_path / "anon"
    args = ["anonymize", str(original), str(no_face_photo), "--out", str(out)]
    args += ["--cert", str(creds["chain"]), "--key", str(creds["key"])]
    args += ["--model", str(pixel_model), "--steps", "4", "--device", "cpu", "--json"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    files = {f["source"].rsplit("/", 1)[-1]: f for f in json.loads(r.stdout)["files"]}
    assert files["coffee.png"]["status"] == "no-faces"
    assert "left unchanged" in files["coffee.png"]["reason"]
    assert not (out / "coffee.anon.png").exists()  # reported, not altered
    anon = out / "astronaut.anon.png"
    assert files["astronaut.png"]["output"] == str(anon)
    assert len((out / "anonymize.jsonl").read_text().splitlines()) == 2

    rec = inspect_provenance(anon, trust_anchors=creds["ca"])
    assert rec.state == "trusted" and rec.ai_declaration == "ai-edited"
    acts = [a.action for a in rec.manifest.actions]
    assert acts == ["c2pa.opened", "c2pa.edited"]
    assert any("compositeWithTrainedAlgorithmicMedia" in t for t in rec.digital_source_types)
    (parent,) = rec.ingredients
    assert parent.relationship == "parentOf" and parent.title == "astronaut.png"
    assert any("digitalCapture" in t for t in parent.digital_source_types)  # kept
    shown = CliRunner().invoke(
        app, ["provenance", str(anon), "--trust-anchors", str(creds["ca"]), "--json"]
    )
    assert '"ai_declaration": "ai-edited"' in shown.stdout, shown.output

    scan = tmp_path / "scan"
    run_scan([anon], scan, trust_anchors=creds["ca"], workers=0, report=False)
    row = json.loads((scan / "results.jsonl").read_text().splitlines()[0])
    assert row["verdict"] == "synthetic"
    assert any("declares AI-edited" in r["text"] for r in row["reasons"]), row["reasons"]
    untrusted = tmp_path / "scan2"
    run_scan([anon], untrusted, workers=0, report=False)
    row = json.loads((untrusted / "results.jsonl").read_text().splitlines()[0])
    assert row["verdict"] == "likely-synthetic"


def test_anonymize_cli_needs_one_face_generator(face_photo, creds, tmp_path):
    args = ["anonymize", str(face_photo), "--out", str(tmp_path)]
    args += ["--cert", str(creds["chain"]), "--key", str(creds["key"])]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and "--model DIR or --inpaint DIR" in r.output
    r = CliRunner().invoke(app, [*args, "--model", str(tmp_path)])
    assert r.exit_code == 1 and "not a deepaudit face model folder" in r.output


def test_inpainting_pipeline_replaces_the_face_too(face_photo, tiny_pipelines):
    from deepaudit.generators.anonymize import InpaintFaces, anonymize_image

    image = read_image(face_photo)
    boxes = FaceDetector().detect(image)
    source = InpaintFaces(tiny_pipelines["inpaint"], size=64, steps=2, device="cpu")
    out, mask = anonymize_image(image, boxes, source, seed=1)
    b = boxes[0]
    region = (slice(b.y, b.y + b.h), slice(b.x, b.x + b.w))
    assert np.abs(out[region].astype(int) - image[region]).mean() > CHANGE_FLOOR
    assert np.array_equal(out[mask == 0], image[mask == 0])
