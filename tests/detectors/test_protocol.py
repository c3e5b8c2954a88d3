"""The no-shortcut evaluation protocol (identical re-encoding, resize audit, format check)
and the generalisation reports (seen vs held-out generators, the fold matrix)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageFilter
from typer.testing import CliRunner

from deepaudit.cli import app
from deepaudit.detectors import create_detector
from deepaudit.detectors.data import load_items
from deepaudit.detectors.evaluate import evaluate_detector
from deepaudit.detectors.generalisation import fold_matrix
from deepaudit.detectors.protocol import (
    DEFAULT_ENCODE,
    RESIZE_AUDIT,
    EncodePolicy,
    parse_encode,
)
from deepaudit.generator_folds import leave_one_out
from deepaudit.manifest import read_manifest
from deepaudit.public_datasets import import_real_fake

runner = CliRunner()
PHOTOS = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]


def _crops(n: int, size: int = 64, seed: int = 0):
    """``n`` random crops of real photographs, both classes drawing from every photo."""
    rng = np.random.default_rng(seed)
    for k in range(n):
        im = PHOTOS[k % len(PHOTOS)]
        y = int(rng.integers(0, im.shape[0] - size))
        x = int(rng.integers(0, im.shape[1] - size))
        yield Image.fromarray(np.ascontiguousarray(im[y : y + size, x : x + size]))


def test_encode_policy_treats_every_image_alike():
    rgb = np.asarray(next(_crops(1)))
    a, b = DEFAULT_ENCODE.apply(rgb), DEFAULT_ENCODE.apply(rgb.copy())
    assert np.array_equal(a, b) and not np.array_equal(a, rgb)
    full = EncodePolicy("jpeg", 95, "4:4:4").apply(rgb)
    assert not np.array_equal(full, a)  # chroma subsampling is part of the policy
    assert np.array_equal(EncodePolicy("png").apply(rgb), rgb)
    assert EncodePolicy(max_side=32).apply(rgb).shape == (32, 32, 3)
    assert parse_encode("webp:80").describe() == "webp q80, native size"
    with pytest.raises(ValueError, match="jpeg, png or webp"):
        parse_encode("gif:3")


@pytest.fixture(scope="module")
def jpeg_vs_png(tmp_path_factory):
    """Reals saved as JPEG q30, fakes as PNG, same photographs: only the format differs,
    and a spectral detector trained on it learns the format."""
    root = tmp_path_factory.mktemp("fmt")
    for k, crop in enumerate(_crops(120)):
        if k % 2:
            (root / "fake").mkdir(exist_ok=True)
            crop.save(root / "fake" / f"{k}.png")
        else:
            (root / "real").mkdir(exist_ok=True)
            crop.save(root / "real" / f"{k}.jpg", quality=30)
    import_real_fake(root).manifest.with_splits(ratios=(0.5, 0, 0.5)).write()
    items = load_items(root)
    det = create_detector("spectral", input_size=64)
    det.fit(items.split("train"), None)
    return det, items.split("test")


def test_protocol_exposes_a_format_shortcut_and_decodes_each_file_once(
    jpeg_vs_png, tmp_path, monkeypatch
):
    import deepaudit.media as media

    det, test = jpeg_vs_png
    reads = []
    real_read = media.read_image
    monkeypatch.setattr(media, "read_image", lambda p, **kw: reads.append(p) or real_read(p, **kw))
    r = evaluate_detector(det, test, tmp_path / "ev", encode=parse_encode("jpeg:30"), bootstrap=0)
    assert len(reads) == len(test)  # nine robustness variants, four sizes, one decode
    sc = r["shortcuts"]
    fs = sc["format_shortcut"]
    assert fs["auc_original"] > 0.85 and r["overall"]["auc"] < fs["auc_original"] - 0.2
    assert fs["auc_reencoded"] == r["overall"]["auc"] and fs["shortcut_suspected"]
    assert r["format_shortcut"] == fs  # still where model cards read it
    assert sc["input"]["formats_match"] is False
    assert sc["input"]["real"]["formats"] == {"jpeg": sum(test.labels == 0)}
    assert sc["reencoded"]["description"] == "jpeg q30 4:2:0, native size"
    audit = sc["resize_audit"]
    assert list(audit["variants"]) == list(RESIZE_AUDIT)
    assert audit["variants"]["native"]["auc"] == r["overall"]["auc"]
    aucs = [v["auc"] for v in audit["variants"].values()]
    assert audit["spread"] == pytest.approx(max(aucs) - min(aucs))
    assert (audit["warning"] is not None) == (audit["max_spread"] > 0.05)
    assert any("re-encoded identically" in w for w in sc["warnings"])
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["shortcuts"]["resize_audit"]["spread"] == audit["spread"]
    as_is = evaluate_detector(det, test, tmp_path / "raw", encode=None, robustness=(), bootstrap=0)
    assert as_is["overall"]["auc"] == fs["auc_original"]
    assert any("scored as-is although" in w for w in as_is["shortcuts"]["warnings"])


_OPS = {
    "blur": lambda im: im.filter(ImageFilter.GaussianBlur(1.2)),
    "noise": lambda im: Image.fromarray(
        np.clip(np.asarray(im) + np.random.default_rng(1).normal(0, 8, (64, 64, 3)), 0, 255)
        .round()
        .astype(np.uint8)
    ),
    "posterise": lambda im: im.quantize(24).convert("RGB"),
}


def _three_generators(root, n=24):
    """Reals plus three stand-in 'generators' (blur, noise, posterise) of the same photos."""
    for k, crop in enumerate(_crops(n * 4, seed=3)):
        which = k % 4
        if which == 3:
            folder = root / "real"
        else:
            name = list(_OPS)[which]
            folder = root / name / "fake"
            crop = _OPS[name](crop)
        folder.mkdir(parents=True, exist_ok=True)
        crop.save(folder / f"{k}.png")
    import_real_fake(root).manifest.with_splits(ratios=(0.6, 0, 0.4)).write()
    return read_manifest(root)


def _genimage_tree(root, per_folder=(8, 4)):
    """GenImage's layout with the stand-in generators: <gen>/{train,val}/{ai,nature}/."""
    crops = _crops(len(_OPS) * 2 * sum(per_folder), seed=5)
    for gen, op in _OPS.items():
        for split, n in zip(("train", "val"), per_folder, strict=True):
            for k in range(n):
                real, fake = next(crops), next(crops)
                (root / gen / split / "nature").mkdir(parents=True, exist_ok=True)
                (root / gen / split / "ai").mkdir(parents=True, exist_ok=True)
                real.save(root / gen / split / "nature" / f"{k}.png")
                op(fake).save(root / gen / split / "ai" / f"{k}.png")


@pytest.mark.slow
def test_genimage_leave_one_out_recipe(tmp_path, monkeypatch):
    """The commands of docs/recipes.md "GenImage leave-one-out", on a tiny GenImage tree."""
    monkeypatch.chdir(tmp_path)
    _genimage_tree(tmp_path / "GenImage")

    def run(*args):
        r = runner.invoke(app, list(args))
        assert r.exit_code == 0, r.output
        return r

    run("manifest", "import-genimage", "GenImage", "--out", "genimage")
    run("manifest", "split", "genimage", "--leave-one-out", "--out", "folds")
    fold = read_manifest("folds/noise")
    assert not fold.filter(split="train", attributes={"subset": "noise"}).items
    run(
        "detectors", "train", "--data", "folds/noise", "--detector", "spectral",
        "--input-size", "64", "--out", "det/without-noise", "--no-track",
    )  # fmt: skip
    ev = run(
        "detectors", "evaluate", "--detector", "det/without-noise", "--data", "genimage",
        "--out", "eval/without-noise", "--no-robustness", "--no-track",
        "--protocol", "leave-one-out",
    )  # fmt: skip
    result = json.loads((tmp_path / "eval/without-noise/metrics.json").read_text())
    gen = result["generalisation"]
    assert gen["trained_on"] == ["blur", "posterise"]
    seen = {r["generator"]: r["seen_in_training"] for r in gen["generators"]}
    assert seen == {"blur": True, "noise": False, "posterise": True}
    assert "noise: AUC" in ev.stdout and "[held out]" in ev.stdout
    assert "resize audit: AUC native" in ev.stdout and "fold matrix" in ev.stdout
    matrix = json.loads((tmp_path / "eval/without-noise/fold_matrix.json").read_text())
    assert set(matrix["matrix"]) == {"without blur", "without noise", "without posterise"}
    assert matrix["held_out"]["without noise"] == ["noise"]


def test_fold_matrix_trains_one_detector_per_fold(tmp_path):
    m = _three_generators(tmp_path / "ds", n=12)
    result = fold_matrix("spectral", {"input_size": 64}, leave_one_out(m), tmp_path / "out")
    assert result["held_out"] == {g: [g] for g in ("blur", "noise", "posterise")}
    for row in result["matrix"].values():
        assert set(row) == {"blur", "noise", "posterise"}
        assert all(v is None or 0 <= v <= 1 for v in row.values())
    # the gap the protocol exists to show: generators left out of training score lower
    assert result["mean_auc_seen"] > result["mean_auc_held_out"]
    assert (tmp_path / "out" / "fold_matrix.json").is_file()
