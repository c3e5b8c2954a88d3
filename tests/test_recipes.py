"""docs/recipes.md end to end with a tiny local autoencoder: generate → split → train → evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from deepaudit.cli.app import app

runner = CliRunner()


@pytest.mark.slow
def test_aligned_training_recipe_runs_end_to_end(tmp_path, monkeypatch):
    from deepaudit.generators.tiny_pipelines import write_tiny_autoencoder
    from deepaudit.manifest import read_manifest
    from deepaudit.photos import builtin_photos

    monkeypatch.chdir(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    k = 0
    for p in builtin_photos():  # 48 px crops of real photographs, half JPEG, half PNG
        for y in range(0, min(p.image.shape[0], 144) - 47, 48):
            crop = Image.fromarray(np.ascontiguousarray(p.image[y : y + 48, 8:56]))
            if k % 2:
                crop.save(photos / f"{k:03d}.png")
            else:
                crop.save(photos / f"{k:03d}.jpg", quality=85)
            k += 1
    assert k >= 16
    write_tiny_autoencoder(tmp_path / "vae", sample_size=64)
    steps = [
        ["manifest", "import-folder", "photos", "--label", "real", "--out", "real"],
        ["generate", "--suite", "aligned.toml", "--out", "aligned"],
        ["manifest", "split", "aligned", "--group-by", "pair", "--ratios", "0.5,0.25,0.25"],
        [
            "detectors",
            "train",
            "--data",
            "aligned",
            "--detector",
            "spectral",
            "--out",
            "det",
            "--device",
            "cpu",
            "--no-track",
        ],
        [
            "detectors",
            "evaluate",
            "--detector",
            "det",
            "--data",
            "aligned",
            "--out",
            "eval",
            "--no-robustness",
            "--no-track",
            "--device",
            "cpu",
            "--json",
        ],
    ]
    (tmp_path / "aligned.toml").write_text(
        '[suite]\nname = "aligned"\n[[generate]]\ngenerator = "vae-reconstruct"\n'
        'name = "tiny-vae"\nmodel = "vae"\ninit_from = "real"\n'
    )
    for args in steps:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    m = read_manifest(tmp_path / "aligned")
    assert m.summary().by_label == {"real": k, "synthetic": k}
    metrics = json.loads(result.stdout)
    assert "tiny-vae" in json.dumps(metrics)  # per-generator figures name the twin's source
