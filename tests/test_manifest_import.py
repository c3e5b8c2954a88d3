"""Importers: plain folder, CNNSpot layout and CSV with attributes."""

from __future__ import annotations

import pytest

from deepaudit.errors import ManifestError, MediaError
from deepaudit.manifest import read_manifest, validate_manifest
from deepaudit.manifest_import import import_cnnspot, import_csv, import_folder
from deepaudit.media import write_image, write_video


def _tile(photo, i):
    return photo[i : i + 32, i : i + 32]


def test_import_folder_reports_broken_and_ignores_notes(tmp_path, photo, clip):
    src = tmp_path / "photos"
    for i in range(3):
        write_image(src / "sub" / f"p{i}.jpg", _tile(photo, i))
    write_video(src / "clip.mp4", clip, fps=12)
    (src / "README.txt").write_text("these are holiday photos\n")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    seen = []
    report = import_folder(src, progress=lambda d, t: seen.append((d, t)))
    assert report.added == 4 and report.ignored == 1 and len(report.problems) == 1
    assert "broken.jpg" in str(report.problems[0])
    assert seen[-1] == (6, 6)
    m = read_manifest(src)
    assert {i.kind for i in m} == {"image", "video"}
    assert all(i.label == "real" and i.source == "photos" for i in m)
    video = m.get("clip.mp4")
    assert (video.frames, video.width, video.height) == (12, 64, 48)
    assert not validate_manifest(src, check_hashes=True)
    again = import_folder(src)  # a rerun resumes: nothing re-added
    assert again.added == 0 and again.skipped == 4


def test_import_folder_to_another_out(tmp_path, photo):
    write_image(tmp_path / "in" / "a.png", _tile(photo, 0))
    report = import_folder(tmp_path / "in", out=tmp_path / "ds", label="synthetic", source="gan")
    item = report.manifest[0]
    assert item.path == "../in/a.png" and item.label == "synthetic" and item.source == "gan"
    assert report.manifest.resolve(item).exists()


def test_import_cnnspot_any_depth(tmp_path, photo):
    root = tmp_path / "cnnspot"
    for gen in ("progan/airplane", "stylegan/bedroom"):
        for cls in ("0_real", "1_fake"):
            for i in range(2):
                write_image(root / gen / cls / f"{i}.png", _tile(photo, i))
    write_image(root / "flat" / "1_fake" / "x" / "deep.png", _tile(photo, 5))
    write_image(root / "not_in_layout.png", _tile(photo, 6))
    m = import_cnnspot(root).manifest
    assert len(m) == 9
    assert len(m.filter(label="synthetic")) == 5
    assert {i.source for i in m} == {"progan/airplane", "stylegan/bedroom", "flat"}
    deep = m.get("flat/1_fake/x/deep.png")
    assert deep.attributes["subfolder"] == "x"
    with pytest.raises(MediaError, match="CNNSpot"):
        import_cnnspot(root / "flat" / "1_fake" / "x")


def test_import_csv_with_attributes(tmp_path, photo):
    faces = tmp_path / "faces"
    for i in range(4):
        write_image(faces / f"{i}.jpg", _tile(photo, i))
    (faces / "labels.csv").write_text(
        "file,age,gender,race,kind\n"
        "0.jpg,25,0,1,real\n"
        "1.jpg,31,1,2,fake\n"
        "2.jpg,40,1,,real\n"
        "3.jpg,12,0,3,maybe\n"
        "missing.jpg,50,0,0,real\n"
    )
    report = import_csv(faces / "labels.csv", path_column="file", label_column="kind")
    m = report.manifest
    assert len(m) == 3
    first = m.get("0.jpg")
    assert first.attributes == {"age": 25, "gender": 0, "race": 1}
    assert m.get("2.jpg").attributes["race"] is None
    assert m.get("1.jpg").label == "synthetic"
    messages = [str(p) for p in report.problems]
    assert any("labels.csv:5" in s and "maybe" in s for s in messages)
    assert any("missing.jpg" in s and "no such file" in s for s in messages)
    assert m.filter(attributes={"gender": 1}).items[0].id == "1.jpg"


def test_import_csv_errors(tmp_path):
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(ManifestError, match="no column 'path'"):
        import_csv(csv, label="real")
    with pytest.raises(ValueError, match="exactly one"):
        import_csv(csv)
