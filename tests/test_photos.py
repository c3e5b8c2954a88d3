"""Built-in real photographs load offline and become a dataset."""

from __future__ import annotations

import numpy as np

from deepaudit.manifest import validate_manifest
from deepaudit.photos import builtin_photos, write_builtin_photos


def test_builtin_photos_are_rgb_uint8_and_offline():
    photos = builtin_photos()
    names = [p.name for p in photos]
    assert len(photos) >= 9 and len(set(names)) == len(names)
    assert {"astronaut", "coffee", "chelsea", "rocket"} <= set(names)
    for p in photos:
        assert p.image.dtype == np.uint8 and p.image.ndim == 3 and p.image.shape[2] == 3
        assert min(p.image.shape[:2]) >= 256 and p.image.std() > 10
    grey = builtin_photos(include_grayscale=True)
    assert len(grey) > len(photos) and any(p.grayscale for p in grey)


def test_write_builtin_photos_is_idempotent(tmp_path):
    m = write_builtin_photos(tmp_path)
    assert len(m) == len(builtin_photos())
    assert all(i.label == "real" and i.kind == "image" for i in m)
    assert m.get("real/builtin/astronaut.png").attributes["scene"] == "portrait"
    before = (tmp_path / "manifest.jsonl").read_text()
    assert len(write_builtin_photos(tmp_path)) == len(m)
    assert (tmp_path / "manifest.jsonl").read_text() == before
    assert not validate_manifest(tmp_path, check_hashes=True)
