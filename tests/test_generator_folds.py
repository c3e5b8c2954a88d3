"""Leave-one-generator-out and older→newer folds, in the library and `manifest split`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from deepaudit.cli import app
from deepaudit.errors import ManifestError
from deepaudit.generator_folds import hold_out, leave_one_out, newer_than
from deepaudit.manifest import Manifest, ManifestItem, read_manifest

runner = CliRunner()
SHA = "0" * 64


def _item(i, label, source, split=None, **attrs):
    return ManifestItem(
        id=f"{source}/{label}/{i}",
        path=f"{source}/{label}/{i}.png",
        sha256=SHA,
        kind="image",
        label=label,
        source=source,
        split=split,
        attributes=attrs,
    )


def _genimage_like(root):
    """Three generators with GenImage-style splits; reals tied to their subsets."""
    items = []
    for gen in ("ADM", "BigGAN", "Midjourney"):
        for split in ("train", "test"):
            for i in range(3):
                items.append(_item(f"{split}{i}", "synthetic", gen, split, subset=gen))
                items.append(_item(f"{gen}{split}{i}", "real", "imagenet", split, subset=gen))
    return Manifest(root, items)


def test_leave_one_out_never_trains_on_the_held_out_generator(tmp_path):
    m = _genimage_like(tmp_path)
    folds = leave_one_out(m)
    assert set(folds) == {"ADM", "BigGAN", "Midjourney"}
    fold = folds["BigGAN"]
    train = fold.filter(split="train")
    assert {i.attributes["subset"] for i in train} == {"ADM", "Midjourney"}
    test = fold.filter(split="test")
    assert {i.source for i in test.filter(label="synthetic")} == {"ADM", "BigGAN", "Midjourney"}
    assert len(test) == 18 and len(train) == 12  # BigGAN's train part is left out
    with pytest.raises(ValueError, match=r"no synthetic items from \['DALL-E'\]"):
        hold_out(m, {"DALL-E"})


def test_unsplit_items_get_hash_splits_and_held_out_ones_go_to_test(tmp_path):
    items = [_item(i, "synthetic", g) for g in ("dalle2", "firefly") for i in range(20)]
    items += [_item(i, "real", "RAISE") for i in range(40)]
    fold = hold_out(Manifest(tmp_path, items), {"firefly"}, ratios=(0.5, 0.0, 0.5))
    assert {i.split for i in fold.filter(source="firefly")} == {"test"}
    dalle = {i.split for i in fold.filter(source="dalle2")}
    reals = {i.split for i in fold.filter(label="real")}
    assert dalle == reals == {"train", "test"}  # shared reals: split by hash


def test_older_newer_by_release_date(tmp_path):
    m = _genimage_like(tmp_path)
    dates = {"BigGAN": "2018-09", "ADM": "2021-05-11", "Midjourney": "2023-03-15"}
    (tmp_path / "dates.json").write_text(json.dumps(dates))
    from deepaudit.generator_folds import read_release_dates

    fold = newer_than(m, "2021-01-01", dates=read_release_dates(tmp_path / "dates.json"))
    assert {i.attributes["subset"] for i in fold.filter(split="train")} == {"BigGAN"}
    assert {i.attributes["release_date"] for i in fold.filter(source="ADM")} == {"2021-05-11"}
    with pytest.raises(ManifestError, match=r"no release date for generator\(s\) \['ADM'"):
        newer_than(
            m, "2021", dates={"BigGAN": read_release_dates(tmp_path / "dates.json")["BigGAN"]}
        )


def test_split_command_writes_folds(tmp_path):
    m = _genimage_like(tmp_path / "ds")
    m.write()
    (tmp_path / "dates.csv").write_text(
        "generator,release_date\nBigGAN,2018-09-28\nADM,2021-05-11\nMidjourney,2023-03-15\n"
    )
    r = runner.invoke(
        app,
        ["manifest", "split", str(tmp_path / "ds"), "--leave-one-out", "-o", str(tmp_path / "loo")],
    )
    assert r.exit_code == 0, r.output
    fold = read_manifest(tmp_path / "loo" / "ADM")
    assert not fold.filter(split="train", attributes={"subset": "ADM"}).items
    assert fold.get("ADM/synthetic/test0").path == "../../ds/ADM/synthetic/test0.png"
    r = runner.invoke(
        app,
        [
            "manifest",
            "split",
            str(tmp_path / "ds"),
            "--newer-than",
            "2022",
            "--release-dates",
            str(tmp_path / "dates.csv"),
            "-o",
            str(tmp_path / "newer"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["by_split"] == {"train": 12, "test": 18}
    r = runner.invoke(app, ["manifest", "split", str(tmp_path / "ds"), "--leave-out", "ADM"])
    assert r.exit_code == 2 and "need --out" in r.output
