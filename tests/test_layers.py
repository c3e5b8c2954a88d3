"""The layering check that `make lint` runs: it passes on the repository and fails on a
deliberately wrong import, a cycle, a private name and a bare-name import."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _checker():
    spec = importlib.util.spec_from_file_location("check_layers", ROOT / "tools/check_layers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    for folder in ("deepaudit", "generators", "detectors", "audit"):
        shutil.copytree(
            ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    return tmp_path


def test_repository_is_clean() -> None:
    assert _checker().check(ROOT) == []


def test_core_importing_a_layer_fails(tree: Path) -> None:
    media = tree / "deepaudit" / "media.py"
    media.write_text(media.read_text() + "\n\ndef _bad():\n    from deepaudit.audit import scan\n")
    problems = _checker().check(tree)
    assert any("core module deepaudit.media imports deepaudit.audit.scan" in p for p in problems)
    assert _checker().main(["--root", str(tree)]) == 1


def test_generators_importing_detectors_fails(tree: Path) -> None:
    (tree / "generators" / "bad.py").write_text("from deepaudit.detectors import data\n")
    problems = _checker().check(tree)
    assert any("generators module deepaudit.generators.bad imports" in p for p in problems)


def test_cycle_private_name_and_bare_name_fail(tree: Path) -> None:
    (tree / "audit" / "a.py").write_text("from deepaudit.audit import b\n")
    (tree / "audit" / "b.py").write_text("from deepaudit.audit.a import _hidden\n")
    (tree / "audit" / "c.py").write_text("import detectors\n")
    problems = _checker().check(tree)
    assert any(
        p == "import cycle among 2 modules: deepaudit.audit.a, deepaudit.audit.b" for p in problems
    )
    assert any("private name '_hidden'" in p for p in problems)
    assert any("imports 'detectors'; use 'deepaudit.detectors'" in p for p in problems)
