"""The walker cut into shards (the Ray scan's listing) finds what the one walker finds."""

from __future__ import annotations

import os

from deepaudit.walk import list_shard, walk_files, walk_shards


def test_shards_list_the_same_files_as_the_walk(tmp_path):
    root = tmp_path / "box"
    (root / "a" / "b").mkdir(parents=True)
    (root / ".hidden").mkdir()
    for rel in ["x.png", "a/y.jpg", "a/b/z.mp4", ".hidden/h.png", "a/.dot.png", "Thumbs.db"]:
        (root / rel).write_bytes(b"data")
    os.symlink(root, root / "a" / "loop")  # a loop: walked once
    os.symlink(root / "nowhere", root / "a" / "dangling")
    single = tmp_path / "single.png"
    single.write_bytes(b"data")
    paths = [root, single, tmp_path / "missing"]

    walk_errors: list[str] = []
    walked = list(walk_files(paths, errors=walk_errors))
    shard_errors: list[str] = []
    shards = list(walk_shards(paths, errors=shard_errors))
    listed = [p for s in shards for p in list_shard(s, errors=shard_errors)]

    assert sorted(listed) == sorted(walked)
    assert {p.name for p in walked} == {"x.png", "y.jpg", "z.mp4", "single.png"}
    assert [s.folder for s in shards].count(True) == 3  # box, a, a/b: no loop, no hidden
    assert sorted(shard_errors) == sorted(walk_errors) and len(walk_errors) == 2
