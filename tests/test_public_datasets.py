"""Importers for public dataset layouts: GenImage, Synthbuster, real/fake trees, Parquet / HF
datasets tables and DiffusionDB-style prompt tables, on small trees built here."""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from deepaudit.cli import app
from deepaudit.errors import DatasetLayoutError
from deepaudit.manifest import MANIFEST_NAME, read_manifest, validate_manifest
from deepaudit.manifest_import import STAGING_DIR
from deepaudit.media import write_image
from deepaudit.public_datasets import import_genimage, import_real_fake, import_synthbuster
from deepaudit.table_import import import_prompt_table, import_table

runner = CliRunner()


def _tile(photo, i):
    return photo[i : i + 24, i : i + 24]


def _genimage(root, photo):
    # the real download nests a subset folder; a hand-made tree may not
    for gen, mid in (("ADM", "imagenet_ai_0508_adm/"), ("Midjourney", "")):
        for split in ("train", "val"):
            for cls, ext in (("ai", "png"), ("nature", "JPEG")):
                for i in range(2):
                    write_image(root / f"{gen}/{mid}{split}/{cls}/{i}.{ext}", _tile(photo, i))
    (root / "README.txt").write_text("GenImage\n")


def test_genimage_keeps_generators_and_splits_and_resumes(tmp_path, photo):
    root = tmp_path / "genimage"
    _genimage(root, photo)
    report = import_genimage(root, out=tmp_path / "ds")
    m = report.manifest
    assert report.added == 16 and not report.problems
    fakes = m.filter(label="synthetic")
    assert {i.source for i in fakes} == {"ADM", "Midjourney"}
    assert {i.generator.model for i in fakes} == {"ADM", "Midjourney"}
    assert {i.source for i in m.filter(label="real")} == {"imagenet"}
    assert {(i.attributes["genimage_split"], i.split) for i in m} == {
        ("train", "train"),
        ("val", "test"),
    }
    assert {i.attributes["subset"] for i in m.filter(label="real")} == {"ADM", "Midjourney"}
    assert not validate_manifest(tmp_path / "ds", check_hashes=True)
    assert not (tmp_path / "ds" / STAGING_DIR).exists()
    again = import_genimage(root, out=tmp_path / "ds")
    assert again.added == 0 and again.skipped == 16


def test_malformed_genimage_tree_names_the_file_and_writes_nothing(tmp_path, photo):
    root = tmp_path / "genimage"
    _genimage(root, photo)
    stray = root / "ADM" / "imagenet_ai_0508_adm" / "train" / "fake" / "x.png"
    write_image(stray, _tile(photo, 3))
    with pytest.raises(DatasetLayoutError) as err:
        import_genimage(root, out=tmp_path / "ds")
    assert str(err.value).startswith(str(stray)) and "\n" not in str(err.value)
    assert not (tmp_path / "ds").exists()


def test_an_interrupted_import_leaves_no_manifest_and_resumes(tmp_path, photo):
    root = tmp_path / "genimage"
    _genimage(root, photo)
    out = tmp_path / "ds"

    def stop(done, total):
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_genimage(root, out=out, progress=stop)
    assert not (out / MANIFEST_NAME).exists()
    assert len(read_manifest(out / STAGING_DIR)) == 5  # the staged work is kept
    report = import_genimage(root, out=out)
    assert report.added == 16 and len(read_manifest(out)) == 16


def test_synthbuster_pairs_generators_with_raise_reals(tmp_path, photo):
    root = tmp_path / "synthbuster"
    for gen in ("dalle2", "midjourney-v5", "stable-diffusion-1-4"):
        for i, name in enumerate(("r0a1b2c3d", "r1f2e3d4c")):
            write_image(root / gen / f"{name}.png", _tile(photo, i))
    for i, name in enumerate(("r0a1b2c3d", "r1f2e3d4c")):
        write_image(tmp_path / "RAISE" / f"{name}.tif", _tile(photo, i + 5))
    m = import_synthbuster(root, raise_dir=tmp_path / "RAISE", out=tmp_path / "ds").manifest
    assert len(m) == 8
    assert {i.source for i in m.filter(label="synthetic")} == {
        "dalle2",
        "midjourney-v5",
        "stable-diffusion-1-4",
    }
    assert {i.source for i in m.filter(label="real")} == {"RAISE"}
    assert all(i.split is None for i in m)
    split = m.with_splits(group_by="pair", ratios=(0.5, 0, 0.5))
    for pair in ("r0a1b2c3d", "r1f2e3d4c"):
        assert len({i.split for i in split if i.attributes["pair"] == pair}) == 1
    write_image(root / "loose.png", _tile(photo, 1))
    with pytest.raises(DatasetLayoutError, match=r"loose\.png: sits at the top"):
        import_synthbuster(root, raise_dir=tmp_path / "RAISE", out=tmp_path / "ds2")
    assert not (tmp_path / "ds2").exists()


def test_real_fake_trees_wildrf_and_chameleon(tmp_path, photo):
    wild = tmp_path / "WildRF"
    for split in ("train", "test"):
        for platform in ("reddit", "twitter"):
            write_image(wild / split / platform / "real" / "a.jpg", _tile(photo, 0))
            write_image(wild / split / platform / "fake" / "b.png", _tile(photo, 1))
    m = import_real_fake(wild).manifest
    assert len(m) == 8
    assert {(i.source, i.split) for i in m} == {
        (p, s) for p in ("reddit", "twitter") for s in ("train", "test")
    }
    assert m.get("test/reddit/fake/b.png").label == "synthetic"
    cham = tmp_path / "Chameleon"
    write_image(cham / "test" / "0_real" / "x.jpg", _tile(photo, 2))
    write_image(cham / "test" / "1_fake" / "y.png", _tile(photo, 3))
    c = import_real_fake(cham).manifest
    assert {(i.label, i.source, i.split) for i in c} == {
        ("real", "Chameleon", "test"),
        ("synthetic", "Chameleon", "test"),
    }
    write_image(wild / "test" / "reddit" / "maybe" / "c.png", _tile(photo, 4))
    before = (wild / MANIFEST_NAME).read_bytes()
    with pytest.raises(DatasetLayoutError, match=r"maybe/c\.png: has no real/ or fake/ folder"):
        import_real_fake(wild)
    assert (wild / MANIFEST_NAME).read_bytes() == before


def _png_bytes(photo, i, fmt="PNG"):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_tile(photo, i)).save(buf, fmt)
    return buf.getvalue()


def test_parquet_and_arrow_tables_keep_bytes_labels_generators_and_splits(tmp_path, photo):
    import pyarrow as pa
    import pyarrow.parquet as pq

    hf_meta = {
        b"huggingface": json.dumps(
            {"info": {"features": {"label": {"_type": "ClassLabel", "names": ["real", "fake"]}}}}
        ).encode()
    }
    blobs = [_png_bytes(photo, 0), _png_bytes(photo, 1, "JPEG"), _png_bytes(photo, 2)]
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    (tmp_path / "hub" / "data").mkdir(parents=True)
    for split, rows in (("train", [0, 1]), ("test", [2])):
        table = pa.table(
            {
                "image": pa.array(
                    [{"bytes": blobs[r], "path": f"orig{r}.png"} for r in rows], image_type
                ),
                "label": [1 if r != 1 else 0 for r in rows],
                "model_name": ["sdxl" if r != 1 else "" for r in rows],
                "prompt": ["a cat" if r != 1 else "a photo" for r in rows],
                "aesthetic": [5.5 + r for r in rows],
            }
        ).replace_schema_metadata(hf_meta)
        pq.write_table(table, tmp_path / "hub" / "data" / f"{split}-00000-of-00001.parquet")
    report = import_table(tmp_path / "hub", out=tmp_path / "ds")
    m = report.manifest
    assert len(m) == 3 and not report.problems
    by_split = {i.split: i for i in m.filter(label="synthetic")}
    assert set(by_split) == {"train", "test"}
    fake = by_split["test"]
    assert fake.generator.model == "sdxl" and fake.generator.prompt == "a cat"
    assert fake.attributes["aesthetic"] == 7.5 and fake.attributes["original_name"] == "orig2.png"
    assert fake.sha256 == hashlib.sha256(blobs[2]).hexdigest()  # byte for byte
    real = m.filter(label="real")[0]
    assert real.path.endswith(".jpg") and real.attributes["caption"] == "a photo"
    # a datasets.save_to_disk folder: Arrow stream files + dataset_info.json
    disk = tmp_path / "saved" / "validation"
    disk.mkdir(parents=True)
    t = pa.table({"img": [blobs[0]], "is_fake": [True]})
    with (
        pa.OSFile(str(disk / "data-00000-of-00001.arrow"), "wb") as sink,
        pa.ipc.new_stream(sink, t.schema) as writer,
    ):
        writer.write_table(t)
    saved = import_table(tmp_path / "saved", out=tmp_path / "ds3", image_column="img").manifest
    assert [(i.label, i.split) for i in saved] == [("synthetic", "val")]
    pq.write_table(pa.table({"image": [blobs[0]]}), tmp_path / "nolabel.parquet")
    with pytest.raises(DatasetLayoutError, match=r"nolabel\.parquet: no label column"):
        import_table(tmp_path / "nolabel.parquet", out=tmp_path / "ds2")
    assert not (tmp_path / "ds2").exists()


def test_diffusiondb_prompt_table_join(tmp_path, photo):
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = tmp_path / "diffusiondb" / "images"
    write_image(images / "part-000001" / "a1.png", _tile(photo, 0))
    write_image(images / "part-000001" / "b2.png", _tile(photo, 1))
    write_image(images / "part-000001" / "orphan.png", _tile(photo, 2))
    (images / "part-000001" / "part-000001.json").write_text(
        json.dumps({"a1.png": {"p": "a red fox", "se": 7, "c": 7.5, "st": 50, "sa": 8}})
    )
    pq.write_table(
        pa.table(
            {
                "image_name": ["b2.png", "zz.png"],
                "prompt": ["a castle", "not downloaded"],
                "seed": [11, 12],
                "step": [30, 30],
                "cfg": [9.0, 9.0],
                "sampler": [8, 8],
                "image_nsfw": [0.1, 0.2],
            }
        ),
        tmp_path / "diffusiondb" / "metadata.parquet",
    )
    report = import_prompt_table(
        [tmp_path / "diffusiondb" / "metadata.parquet", images],
        images=images,
        out=tmp_path / "ds",
    )
    m = report.manifest
    assert len(m) == 2 and report.absent == 1
    assert [str(p) for p in report.problems] == [
        f"{images / 'part-000001' / 'orphan.png'}: no row for this image in the table(s) "
        "(image_name)"
    ]
    fox = m.get("../diffusiondb/images/part-000001/a1.png").generator
    assert (fox.prompt, fox.seed, fox.guidance, fox.steps, fox.sampler) == (
        "a red fox",
        7,
        7.5,
        50,
        "8",
    )
    castle = next(i for i in m if i.generator.prompt == "a castle")
    assert castle.label == "synthetic" and castle.source == "stable-diffusion"
    assert castle.attributes["image_nsfw"] == pytest.approx(0.1)


def test_import_commands(tmp_path, photo, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _genimage(tmp_path / "gi", photo)
    ok = runner.invoke(app, ["manifest", "import-genimage", "gi", "--out", "ds", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["added"] == 16
    write_image(tmp_path / "gi" / "ADM" / "stray.png", _tile(photo, 0))
    bad = runner.invoke(app, ["manifest", "import-genimage", "gi", "--out", "ds2"])
    assert bad.exit_code == 1
    line = bad.stderr.strip()
    assert line.count("\n") == 0 and "stray.png" in line and "GenImage layout" in line
    assert not (tmp_path / "ds2").exists()
