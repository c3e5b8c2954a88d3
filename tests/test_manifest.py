"""The dataset manifest: round trips, resumable writing, validation, splits, filters."""

from __future__ import annotations

import json

import pytest

from deepaudit.errors import ManifestError
from deepaudit.manifest import (
    GeneratorInfo,
    Manifest,
    ManifestItem,
    ManifestWriter,
    assign_split,
    read_manifest,
    validate_manifest,
)

SHA = "a" * 64


def _item(i: int, *, label="real", **kw) -> ManifestItem:
    gen = None
    if label == "synthetic":
        gen = GeneratorInfo(model="ddpm-tiny", sampler="ddim", steps=20, seed=i, prompt="a cat")
    return ManifestItem(
        id=f"item-{i:04d}",
        path=f"media/{i:04d}.png",
        sha256=SHA,
        kind="image",
        label=label,
        source="ddpm-tiny" if label == "synthetic" else "camera",
        generator=gen,
        width=32,
        height=32,
        frames=1,
        **kw,
    )


def test_round_trip_keeps_every_field(tmp_path):
    items = [
        _item(0, attributes={"gender": "female", "age": 31}, transforms=("jpeg:q=75",)),
        _item(1, label="synthetic", split="test"),
        ManifestItem.from_json({**_item(2).to_json(), "caption": "kept though unknown"}),
    ]
    with ManifestWriter(tmp_path) as w:
        for it in items:
            w.write(it)
    back = read_manifest(tmp_path)
    assert list(back) == items
    assert back.get("item-0001").generator.seed == 1
    assert back.get("item-0002").extra["caption"] == "kept though unknown"
    line = json.loads((tmp_path / "manifest.jsonl").read_text().splitlines()[1])
    assert line["generator"]["sampler"] == "ddim" and line["label"] == "synthetic"


def test_each_line_is_flushed_as_written(tmp_path):
    with ManifestWriter(tmp_path) as w:
        w.write(_item(0))
        # another reader sees the line before the writer closes
        assert len(read_manifest(tmp_path)) == 1
        w.write(_item(1))
        assert len(read_manifest(tmp_path)) == 2


def test_interrupted_writer_resumes(tmp_path, caplog):
    with ManifestWriter(tmp_path) as w:
        w.write(_item(0))
        w.write(_item(1))
    path = tmp_path / "manifest.jsonl"
    with open(path, "a") as fh:  # a killed writer left half a line
        fh.write(json.dumps(_item(2).to_json())[:40])
    assert [i.id for i in read_manifest(tmp_path)] == ["item-0000", "item-0001"]
    assert "incomplete last line" in caplog.text
    with ManifestWriter(tmp_path) as w:
        assert w.ids == {"item-0000", "item-0001"}
        w.write(_item(2))
        with pytest.raises(ManifestError, match="duplicate id"):
            w.write(_item(1))
    assert [i.id for i in read_manifest(tmp_path)] == ["item-0000", "item-0001", "item-0002"]
    assert not validate_manifest(tmp_path)


def test_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "manifest.jsonl"
    path.write_text(json.dumps(_item(0).to_json()))
    with ManifestWriter(tmp_path) as w:
        w.write(_item(1))
    assert len(read_manifest(tmp_path)) == 2


def test_validation_names_each_bad_line(tmp_path):
    good = _item(0).to_json()
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({k: v for k, v in good.items() if k != "sha256"} | {"id": "b"}),
        json.dumps(good | {"id": "c", "label": "fake"}),
        json.dumps(good),
        json.dumps(good | {"id": "d", "path": "/abs/x.png"}),
        json.dumps(good | {"id": "e", "generator": {"model": "m"}}),
        json.dumps(good | {"id": "f", "width": -3}),
        "[1, 2]",
    ]
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    problems = validate_manifest(tmp_path)
    by_line = {p.line: p.message for p in problems}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert "not valid JSON" in by_line[2]
    assert "'sha256'" in by_line[3]
    assert "'label'" in by_line[4] and "fake" in by_line[4]
    assert "duplicate id" in by_line[5] and "line 1" in by_line[5]
    assert "relative" in by_line[6]
    assert "real item cannot have a 'generator'" in by_line[7]
    assert "'width'" in by_line[8]
    assert "JSON object" in by_line[9]
    with pytest.raises(ManifestError) as info:
        read_manifest(tmp_path)
    assert info.value.line == 2 and "manifest.jsonl:2:" in str(info.value)


def test_validation_checks_files_and_hashes(tmp_path):
    from deepaudit.media import file_sha256

    (tmp_path / "media").mkdir()
    f = tmp_path / "media" / "0000.png"
    f.write_bytes(b"original")
    item = ManifestItem(
        id="x",
        path="media/0000.png",
        sha256=file_sha256(f),
        kind="image",
        label="real",
        source="camera",
    )
    Manifest(tmp_path, [item, _item(5)]).write()
    problems = validate_manifest(tmp_path, check_files=True)
    assert [p.line for p in problems] == [2] and "does not exist" in problems[0].message
    f.write_bytes(b"changed")
    problems = validate_manifest(tmp_path, check_hashes=True)
    assert any(p.line == 1 and "sha256" in p.message for p in problems)


def test_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "nowhere")


def test_split_is_stable_when_items_are_added():
    ids = [f"img-{i}" for i in range(2000)]
    first = {i: assign_split(i) for i in ids}
    more = {i: assign_split(i) for i in ids + [f"new-{j}" for j in range(500)]}
    assert all(more[i] == first[i] for i in ids)
    counts = {s: list(first.values()).count(s) for s in ("train", "val", "test")}
    assert 1500 < counts["train"] < 1700 and 120 < counts["val"] < 280
    other = {i: assign_split(i, seed="other") for i in ids}
    moved = sum(other[i] != first[i] for i in ids)
    assert 500 < moved < 800  # another seed is another draw (~35% differ), same proportions
    assert 1500 < list(other.values()).count("train") < 1700
    with pytest.raises(ValueError):
        assign_split("x", ratios=(1, -1, 0))


def test_with_splits_keeps_existing_and_groups(tmp_path):
    items = [_item(i, attributes={"person": f"p{i % 7}"}) for i in range(60)]
    items[0] = _item(0, split="test", attributes={"person": "p0"})
    m = Manifest(tmp_path, items).with_splits()
    assert m.get("item-0000").split == "test"
    assert all(i.split for i in m)
    grouped = Manifest(tmp_path, items).with_splits(group_by="person", overwrite=True)
    per_person = {}
    for it in grouped:
        per_person.setdefault(it.attributes["person"], set()).add(it.split)
    assert all(len(s) == 1 for s in per_person.values())
    with pytest.raises(ManifestError, match="no item has the attribute 'person'"):
        Manifest(tmp_path, [_item(1)]).with_splits(group_by="person")


def test_group_by_subject_on_a_mixed_dataset(tmp_path):
    """Personalised items and their subject's photos carry ``subject``; the rest of a
    dataset does not: those go with their pair, or alone, and never fail the split."""
    items = []
    for s in range(6):  # 6 subjects: 2 photos and 3 generated images each
        for k in range(5):
            label = "real" if k < 2 else "synthetic"
            items.append(_item(100 * s + k, label=label, attributes={"subject": f"s{s}"}))
    for p in range(30):  # photos and their twins (a pair id), no subject
        items.append(_item(1000 + 2 * p, extra={"pair": f"p{p}"}))
        items.append(_item(1001 + 2 * p, label="synthetic", extra={"pair": f"p{p}"}))
    singles = [_item(5000 + i, label="synthetic") for i in range(200)]  # generated, no link
    # a subject's photo whose inpainted twin has no subject attribute of its own
    items += [
        _item(9000, attributes={"subject": "s0"}, extra={"pair": "q"}),
        _item(9001, label="synthetic", extra={"pair": "q"}),
    ]
    Manifest(tmp_path, items + singles).write()  # no splits yet
    m = Manifest(tmp_path, items + singles).with_splits(group_by="subject")
    split = {i.id: i.split for i in m}
    for s in range(6):
        assert len({split[f"item-{100 * s + k:04d}"] for k in range(5)}) == 1
    assert split["item-9001"] == split["item-9000"] == split["item-0000"]
    for p in range(30):
        assert split[f"item-{1000 + 2 * p:04d}"] == split[f"item-{1001 + 2 * p:04d}"]
    # unlinked items are split one by one, in the asked proportions
    counts = {k: [split[i.id] for i in singles].count(k) for k in ("train", "val", "test")}
    assert 140 <= counts["train"] <= 180 and counts["val"] >= 8 and counts["test"] >= 8
    # the CLI does the same
    from typer.testing import CliRunner

    from deepaudit.cli import app

    r = CliRunner().invoke(app, ["manifest", "split", str(tmp_path), "--group-by", "subject"])
    assert r.exit_code == 0, r.output
    assert {i.id: i.split for i in read_manifest(tmp_path)} == split


def test_filter(tmp_path):
    items = [_item(i, attributes={"gender": i % 2}) for i in range(4)]
    items += [_item(10 + i, label="synthetic", split="test") for i in range(3)]
    m = Manifest(tmp_path, items)
    assert len(m.filter(label="synthetic")) == 3
    assert len(m.filter(generator="ddpm-tiny", split="test")) == 3
    assert len(m.filter(sampler="ddim")) == 3 and len(m.filter(sampler="euler")) == 0
    assert [i.id for i in m.filter(attributes={"gender": "1"})] == ["item-0001", "item-0003"]
    assert len(m.filter(attributes={"gender": [0, 1]})) == 4
    assert len(m.filter(label=["real", "synthetic"], where=lambda i: i.id.endswith("2"))) == 2


def test_rebased_paths_point_at_the_same_files(tmp_path):
    m = Manifest(tmp_path / "a", [_item(1)])
    moved = m.rebased(tmp_path / "b" / "c")
    assert moved[0].path == "../../a/media/0001.png"
    assert moved.resolve(moved[0]).resolve() == m.resolve(m[0]).resolve()


def test_summary(tmp_path):
    m = Manifest(tmp_path, [_item(0), _item(1, label="synthetic")])
    s = m.summary().to_json()
    assert s["items"] == 2 and s["by_label"] == {"real": 1, "synthetic": 1}


def test_bad_bytes_and_constants_are_line_errors(tmp_path):
    good = json.dumps(_item(0).to_json()).encode()
    nan = json.dumps(_item(1).to_json()).replace('"fps": null', '"fps": NaN').encode()
    cut = json.dumps(_item(2).to_json() | {"source": "café"}, ensure_ascii=False).encode()
    cut = cut[: cut.index("é".encode()) + 1]  # a killed writer stopped inside "é"
    (tmp_path / "manifest.jsonl").write_bytes(good + b"\n\xff\xfe\n" + nan + b"\n" + cut)
    problems = validate_manifest(tmp_path)
    assert [(p.line, p.severity) for p in problems] == [(2, "error"), (3, "error"), (4, "warning")]
    assert "NaN" in problems[1].message
    with pytest.raises(ValueError, match="ratios"):
        assign_split("x", ratios=(float("nan"), 1, 1))
