"""The scan's contracts: the detector inference contract, unique detector keys, verdicts that
see the whole ingredient tree, sidecars, and one walker shared with inspect and imports."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from deepaudit.audit.provenance import inspect_provenance
from deepaudit.audit.scan import run_scan
from deepaudit.c2pa_layer import sign_file
from deepaudit.detectors import create_detector, load_detector
from deepaudit.detectors.data import ItemSet, LabeledItem, load_items
from deepaudit.detectors.inference import detector_keys, score_items
from deepaudit.detectors.train import train_detector
from deepaudit.errors import DeepauditError
from deepaudit.manifest_import import iter_files
from deepaudit.media import write_image, write_video
from deepaudit.walk import walk_files


def _rows(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def spectral(detector_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("det") / "spectral"
    train_detector(create_detector("spectral"), load_items(detector_data), out, target_fpr=0.1)
    return out


def test_scan_scores_are_the_contract_scores(tmp_path, detector_data, spectral, clip):
    """The scan, score_items and predict_proba give one score per file, by one code path."""
    box = tmp_path / "box"
    box.mkdir()
    items = load_items(detector_data).split("test").items[:6]
    for it in items:
        shutil.copy(it.path, box / it.path.name)
    write_video(box / "clip.mp4", clip, fps=8)
    run_scan([box], tmp_path / "out", detectors=[spectral], workers=0, report=False)
    rows = {r["path"]: r for r in _rows(tmp_path / "out")}
    det = load_detector(spectral)
    listed = [LabeledItem(str(i), box / it.path.name, it.label) for i, it in enumerate(items)]
    listed.append(LabeledItem("clip", box / "clip.mp4", 0, kind="video"))
    expected = score_items(det, ItemSet(listed))
    for item, want in zip(listed, expected, strict=True):
        got = rows[str(item.path)]["scores"]["spectral"]
        assert got["score"] == pytest.approx(want, abs=1e-9)
        assert got["threshold"] == (det.calibration or det).threshold  # calibrated at training
    clip_score = rows[str(box / "clip.mp4")]["scores"]["spectral"]
    # a clip's file score is the mean of its 8 frame scores, whose max is reported too
    assert clip_score["frames"] == 8 and clip_score["aggregation"] == "mean"
    assert clip_score["frame_max"] >= clip_score["score"]
    from deepaudit.media import read_image

    image = read_image(listed[0].path)
    assert det.predict_proba([image])[0] == pytest.approx(expected[0], abs=1e-9)


def test_detector_keys_are_unique(tmp_path, spectral):
    for d in ("a", "b"):
        shutil.copytree(spectral, tmp_path / d / "model")
    paths = [tmp_path / "a" / "model", tmp_path / "b" / "model", spectral]
    assert detector_keys(paths) == ["a/model", "b/model", "spectral"]
    with pytest.raises(DeepauditError, match="given twice"):
        detector_keys([spectral, spectral.parent / ".." / spectral.parent.name / "spectral"])
    box = tmp_path / "box"
    box.mkdir()
    write_image(box / "x.png", np.full((40, 40, 3), 120, np.uint8))
    run_scan([box], tmp_path / "out", detectors=paths[:2], workers=0, report=False)
    (row,) = _rows(tmp_path / "out")
    assert set(row["scores"]) == {"a/model", "b/model"}


def _tamper_signature(signed, out):
    """Flip bytes inside the COSE signature until c2pa reports claimSignature.mismatch."""
    data = signed.read_bytes()
    start = data.index(b"c2pa.signature")
    for off in range(100, 3000, 50):
        bad = bytearray(data)
        bad[start + off] ^= 0x5A
        out.write_bytes(bytes(bad))
        if "claimSignature.mismatch" in inspect_provenance(out).codes:
            return out
    raise AssertionError("no byte of the signature box breaks the signature")


def test_an_invalid_ingredient_needs_review(tmp_path, photo, creds):
    gen = sign_file(write_image(tmp_path / "g.png", photo), creds["signing"], tmp_path / "gen.png")
    broken = _tamper_signature(gen, tmp_path / "gen-broken.png")
    box = tmp_path / "box"
    box.mkdir()
    edit = sign_file(
        write_image(tmp_path / "e.png", photo[:, ::-1].copy()),
        creds["signing"],
        box / "edit.png",
        parent=broken,
        digital_source_type="digitalCapture",
    )
    rec = inspect_provenance(edit, trust_anchors=creds["ca"])
    assert rec.state == "trusted"  # the active manifest itself is valid
    (ing,) = rec.ingredients
    assert ing.state == "invalid" and "claimSignature.mismatch" in ing.codes
    run_scan([box], tmp_path / "out", trust_anchors=creds["ca"], workers=0, report=False)
    (row,) = _rows(tmp_path / "out")
    assert row["verdict"] == "needs-review"
    tampered = [r for r in row["reasons"] if r["points_to"] == "tampered"]
    assert any(
        "gen-broken.png" in r["text"] and "claimSignature.mismatch" in r["text"] for r in tampered
    )
    # the integrity rubric's words for it, quoted
    assert any(
        "(integrity rubric: " in r["text"] and "Found trust failures: " in r["text"]
        for r in tampered
    )


def test_sidecars_are_attached_or_listed(tmp_path, photo, creds):
    box = tmp_path / "box"
    box.mkdir()
    signed = sign_file(
        write_image(tmp_path / "s.png", photo), creds["signing"], box / "a.png", sidecar=True
    )
    assert (box / "a.c2pa").is_file()
    shutil.copy(box / "a.c2pa", box / "orphan.c2pa")
    summary = run_scan([box], tmp_path / "out", workers=0, report=False)
    rows = {r["path"]: r for r in _rows(tmp_path / "out")}
    assert set(rows) == {str(signed), str(box / "orphan.c2pa")}
    assert rows[str(signed)]["provenance"]["sidecar"] == str(box / "a.c2pa")
    orphan = rows[str(box / "orphan.c2pa")]
    assert orphan["kind"] == "sidecar" and "without its asset" in orphan["error"]["message"]
    assert summary.sidecars_attached == [str(box / "a.c2pa")]
    assert summary.files == 2


def test_one_walker_for_scan_inspect_and_imports(tmp_path, photo):
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    write_image(root / "a.png", photo)
    write_image(root / "sub" / "b.jpg", photo)
    write_image(root / ".hidden" / "c.png", photo)
    (root / "notes.jsonl").write_text("{}\n")
    (root / "sub" / "loop").symlink_to(root)  # a link back up: walked once
    (root / "alias.png").symlink_to(root / "a.png")  # a second route to a.png
    errors: list[str] = []
    walked = list(walk_files([root], errors=errors))
    assert [p.relative_to(root).as_posix() for p in walked] == [
        "a.png",
        "notes.jsonl",
        "sub/b.jpg",
    ]
    assert list(iter_files(root)) == walked
    globbed = list(walk_files([str(root / "*.png"), str(root / "missing.png")], errors=errors))
    assert globbed == [root / "a.png"]
    assert errors == [f"{root / 'missing.png'}: no such file or folder"]


def test_a_changed_sidecar_rescans_its_asset(tmp_path, photo, creds):
    box = tmp_path / "box"
    box.mkdir()
    asset = write_image(box / "a.png", photo)
    first = run_scan([box], tmp_path / "out", workers=0, report=False)
    assert first.scanned == 1 and _rows(tmp_path / "out")[0]["provenance"]["state"] == "absent"
    again = run_scan([box], tmp_path / "out", workers=0, report=False)
    assert again.scanned == 0 and again.skipped_unchanged == 1
    # a sidecar manifest appears beside the unchanged asset: its provenance changed
    signed = sign_file(asset, creds["signing"], tmp_path / "signed.png", sidecar=True)
    shutil.copy(signed.with_suffix(".c2pa"), box / "a.c2pa")
    third = run_scan([box], tmp_path / "out", workers=0, report=False)
    assert third.scanned == 1
    (row,) = _rows(tmp_path / "out")
    assert row["provenance"]["sidecar"] == str(box / "a.c2pa")
    assert row["provenance"]["state"] == "untrusted"


def test_workers_forked_after_an_in_process_scan_still_verify(tmp_path, photo, creds):
    """A c2pa Context made in the main process is not valid in forked workers."""
    box = tmp_path / "box"
    box.mkdir()
    sign_file(write_image(tmp_path / "s.png", photo), creds["signing"], box / "signed.png")
    for workers in (0, 2):
        out = tmp_path / f"out{workers}"
        run_scan([box], out, trust_anchors=creds["ca"], workers=workers, report=False)
        (row,) = _rows(out)
        assert row["provenance"]["state"] == "trusted", (workers, row["provenance"]["reason"])
