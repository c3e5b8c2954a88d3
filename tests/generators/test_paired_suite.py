"""`deepaudit generate --suite` with twin generators: paired, format-matched, resumable."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from deepaudit.cli.app import app
from deepaudit.generators.self_inpaint import SelfInpaintGenerator, object_mask
from deepaudit.generators.suite import SuiteError, load_suite, run_suite
from deepaudit.manifest import read_manifest, validate_manifest
from deepaudit.media import read_image

runner = CliRunner()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from deepaudit.generators.tiny_pipelines import write_tiny_autoencoder, write_tiny_pipeline

    root = tmp_path_factory.mktemp("twin-models")
    return {
        "vae4": write_tiny_autoencoder(root / "vae4"),
        "vae16": write_tiny_autoencoder(
            root / "sd3-vae.safetensors", latent_channels=16, single_file=True
        ),
        "inpaint": write_tiny_pipeline("inpaint", root / "inpaint"),
    }


@pytest.fixture
def reals(tmp_path, photo):
    folder = tmp_path / "reals"
    folder.mkdir()
    Image.fromarray(photo[:24, :32]).save(folder / "a.jpg", quality=77, subsampling=2)
    Image.fromarray(photo[40:64, 60:92]).save(folder / "b.png")  # one size: one batch
    Image.fromarray(photo[:16, 64:88]).convert("L").save(folder / "c.jpg", quality=90)
    (folder / "notes.txt").write_text("not an image")
    return folder


def _suite(tmp_path, models, extra=""):
    spec = tmp_path / "suite.toml"
    spec.write_text(
        f"""
[suite]
name = "pairs"
batch_size = 2

[[generate]]
generator = "vae-reconstruct"
model = "{models["vae4"]}"
init_from = "reals"

[[generate]]
generator = "vae-reconstruct"
name = "sd3"
model = "{models["vae16"]}"
init_from = "reals"
options = {{ layout = "sd3" }}

[[generate]]
generator = "self-inpaint"
model = "{models["inpaint"]}"
init_from = "reals"
count = 2
options = {{ steps = 2, guidance = 1.0, mask = "object" }}

[[generate]]
generator = "self-inpaint"
name = "whole"
model = "{models["inpaint"]}"
init_from = "reals"
count = 1
options = {{ steps = 2, guidance = 1.0, whole = true }}
{extra}"""
    )
    return spec


@pytest.mark.slow
def test_generate_makes_paired_format_matched_twins_and_resumes(tmp_path, models, reals):
    spec = _suite(tmp_path, models)
    result = runner.invoke(
        app, ["generate", "--suite", str(spec), "--out", str(tmp_path / "straight"), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["generated"] == 3 + 3 + 2 + 1
    root = tmp_path / "straight"
    assert validate_manifest(root, check_hashes=True) == []
    m = read_manifest(root)
    by_pair: dict[str, list] = {}
    for item in m.items:
        by_pair.setdefault(item.extra["pair"], []).append(item)
    assert len(by_pair) == 3  # three photos, each with one real item and its twins
    for pair, items in by_pair.items():
        (real,) = [i for i in items if i.label == "real"]
        twins = [i for i in items if i.label == "synthetic"]
        assert real.id == f"real/{pair}" and len(twins) in (2, 3, 4)
        with Image.open(root / real.path) as r:
            for twin in twins:
                with Image.open(root / twin.path) as t:
                    assert (t.format, t.mode, t.size) == (r.format, r.mode, r.size)
                    if r.format == "JPEG":
                        assert t.quantization == r.quantization
                assert (twin.width, twin.height) == r.size
    whole = [i for i in m.items if i.source == "whole"]
    assert all(read_image(root / i.extra["mask"]).min() == 255 for i in whole)
    assert all(
        read_image(root / i.extra["mask"]).max() == 255 for i in m.items if "mask" in i.extra
    )

    # killed after two batches (3 items), then rerun: the files of the uninterrupted run
    partial = run_suite(load_suite(spec), tmp_path / "resumed", device="cpu", limit_batches=2)
    assert partial.generated == 3
    again = runner.invoke(
        app, ["generate", "--suite", str(spec), "--out", str(tmp_path / "resumed"), "--json"]
    )
    assert json.loads(again.stdout)["skipped"] == 3
    resumed = {i.id: i.sha256 for i in read_manifest(tmp_path / "resumed").items}
    assert resumed == {i.id: i.sha256 for i in m.items}

    split = runner.invoke(app, ["manifest", "split", str(root), "--group-by", "pair"])
    assert split.exit_code == 0, split.output
    for items in _groups(read_manifest(root)).values():
        assert len({i.split for i in items}) == 1


def _groups(m):
    out: dict[str, list] = {}
    for item in m.items:
        out.setdefault(item.extra["pair"], []).append(item)
    return out


def test_paired_entries_refuse_what_would_tell_a_twin_from_its_real(tmp_path, reals):
    cases = [
        ('[[generate]]\ngenerator = "vae-reconstruct"\nmodel = "reals"\n', "needs init_from"),
        (
            '[[generate]]\ngenerator = "vae-reconstruct"\nmodel = "reals"\ninit_from = "reals"\n'
            'post = ["jpeg:70"]\n',
            "post would tell a twin from its real",
        ),
        (
            '[[generate]]\ngenerator = "vae-reconstruct"\nname = "real"\nmodel = "reals"\n'
            'init_from = "reals"\n',
            "where the real photos go",
        ),
    ]
    for text, message in cases:
        p = tmp_path / "bad.toml"
        p.write_text(text)
        with pytest.raises(SuiteError, match=message) as info:
            load_suite(p)
        assert str(info.value).startswith(str(p))
    p = tmp_path / "wm.toml"
    p.write_text('[suite]\nwatermark = "sdxl"\n' + cases[0][0] + 'init_from = "reals"\n')
    with pytest.raises(SuiteError, match="suite's post and watermark"):
        load_suite(p)


def test_object_masks_follow_an_object():
    image = np.full((64, 80, 3), 40, np.uint8)
    yy, xx = np.mgrid[:64, :80]
    disk = (yy - 30) ** 2 + (xx - 44) ** 2 < 15**2
    image[disk] = (220, 180, 30)
    mask = object_mask(image, seed=0) > 127
    assert mask[disk].mean() > 0.95  # the whole object
    assert mask[~disk].mean() < 0.15  # and little else


@pytest.mark.slow
def test_restored_background_keeps_the_real_pixels_outside_the_mask(models, photo):
    gen = SelfInpaintGenerator(
        model=models["inpaint"], steps=2, guidance=1.0, restore_background=True, device="cpu"
    )
    from deepaudit.generators.base import GenerationRequest

    image = np.ascontiguousarray(photo[:22, :29])  # not a multiple of 8
    (item,) = gen.generate([GenerationRequest(seed=3, init_image=image)])
    keep = item.mask == 0
    assert item.pixels.shape == image.shape and 0 < keep.mean() < 1
    assert np.array_equal(item.pixels[keep], image[keep])
    assert not np.array_equal(item.pixels[~keep], image[~keep])
    assert item.info.params["task"] == "self-inpaint"
