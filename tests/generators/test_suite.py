"""Suite spec → dataset: manifest contents, resume without gaps, identical bytes, bad specs."""

from __future__ import annotations

import json
import shutil

import pytest

from deepaudit.generators.suite import SuiteError, load_suite, run_suite
from deepaudit.manifest import read_manifest, validate_manifest
from deepaudit.media import write_image


def _spec(tmp_path, pixel_model, extra_suite="", entries=None):
    entries = (
        entries
        or f'''
[[generate]]
generator = "pixel-ddim"
model = "{pixel_model}"
count = 5
options = {{ steps = 2 }}

[[generate]]
generator = "pixel-dpmpp"
name = "dpm"
model = "{pixel_model}"
count = 3
post = ["jpeg:80", "noise:2"]
options = {{ steps = 2 }}
'''
    )
    p = tmp_path / "suite.toml"
    p.write_text(f'[suite]\nname = "t"\nseed = 3\nbatch_size = 2\n{extra_suite}\n{entries}')
    return p


def test_suite_writes_a_valid_manifest(tmp_path, pixel_model):
    spec = load_suite(_spec(tmp_path, pixel_model))
    report = run_suite(spec, tmp_path / "out", device="cpu")
    assert report.generated == 8 and not report.failed
    m = read_manifest(tmp_path / "out")
    assert validate_manifest(tmp_path / "out", check_hashes=True) == []
    by_id = {i.id: i for i in m.items}
    first = by_id["pixel-ddim/000000"]
    assert first.label == "synthetic" and first.source == "pixel-ddim"
    assert first.generator.sampler == "ddim" and first.generator.steps == 2
    assert first.generator.seed == 3 + 1_000_000 and (first.width, first.height) == (32, 32)
    assert by_id["dpm/000002"].transforms == ("jpeg:80", "noise:2")
    assert by_id["dpm/000002"].generator.seed == 3 + 2_000_000 + 2
    assert (
        json.loads((tmp_path / "out" / "suite.json").read_text())["generators"]["dpm"]["sampler"]
        == "dpmpp"
    )


def test_interrupted_suite_resumes_to_identical_bytes(tmp_path, pixel_model):
    spec = load_suite(_spec(tmp_path, pixel_model))
    run_suite(spec, tmp_path / "straight", device="cpu")
    partial = run_suite(spec, tmp_path / "resumed", device="cpu", limit_batches=2)
    assert partial.generated == 4
    rest = run_suite(spec, tmp_path / "resumed", device="cpu")
    assert rest.skipped == 4 and rest.generated == 4
    again = run_suite(spec, tmp_path / "resumed", device="cpu")
    assert again.generated == 0 and again.skipped == 8
    # a finished suite's rerun loads no model (a resumed pipeline passes it in seconds) ...
    from deepaudit.generators import suite as suite_mod

    def no_build(*args, **kwargs):
        raise AssertionError("a finished suite built its generators again")

    real_build, suite_mod.build_generators = suite_mod.build_generators, no_build
    try:
        assert run_suite(spec, tmp_path / "resumed", device="cpu").skipped == 8
        # ... while one item missing from the manifest makes it a normal run again
        less = tmp_path / "less"
        shutil.copytree(tmp_path / "resumed", less)
        lines = (less / "manifest.jsonl").read_text().splitlines(keepends=True)
        (less / "manifest.jsonl").write_text("".join(lines[:-1]))
        with pytest.raises(AssertionError, match="built its generators"):
            run_suite(spec, less, device="cpu")
    finally:
        suite_mod.build_generators = real_build
    a = {i.id: i.sha256 for i in read_manifest(tmp_path / "straight").items}
    b = {i.id: i.sha256 for i in read_manifest(tmp_path / "resumed").items}
    assert a == b and len(b) == 8


def test_signed_and_watermarked_outputs(tmp_path, tiny_pipelines, creds):
    from deepaudit.audit.provenance import inspect_provenance
    from deepaudit.audit.watermark import detect_watermark

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red house\n\na blue car\n")
    entries = f'''
[[generate]]
generator = "sd-text2img"
model = "{tiny_pipelines["text2img"]}"
count = 2
prompts = "prompts.txt"
options = {{ steps = 2, height = 64, width = 64 }}
'''
    sign = f'sign = {{ cert = "{creds["chain"]}", key = "{creds["key"]}" }}\nwatermark = "sdxl"\n'
    spec = load_suite(_spec(tmp_path, None, extra_suite=sign, entries=entries))
    run_suite(spec, tmp_path / "out", device="cpu")
    items = read_manifest(tmp_path / "out").items
    assert [i.generator.prompt for i in items] == ["a red house", "a blue car"]
    for item in items:
        path = tmp_path / "out" / item.path
        rec = inspect_provenance(path, trust_anchors=creds["ca"])
        assert rec.state == "trusted" and rec.ai_declaration == "ai-generated"
        assert detect_watermark(path).detected
        assert item.extra["c2pa"] is True and item.extra["watermark"] == "sdxl"


def test_inpainting_saves_masks(tmp_path, tiny_pipelines, photo):
    init = write_image(tmp_path / "real.png", photo[:64, :64])
    entries = f'''
[[generate]]
generator = "sd-inpaint"
model = "{tiny_pipelines["inpaint"]}"
count = 2
init_from = "{init}"
options = {{ steps = 2 }}
'''
    run_suite(load_suite(_spec(tmp_path, None, entries=entries)), tmp_path / "out", device="cpu")
    for item in read_manifest(tmp_path / "out").items:
        assert (tmp_path / "out" / item.extra["mask"]).is_file()


def test_video_entries_write_mp4(tmp_path, video_model):
    entries = f'''
[[generate]]
generator = "video-ddim"
model = "{video_model}"
count = 1
options = {{ steps = 2 }}
'''
    run_suite(load_suite(_spec(tmp_path, None, entries=entries)), tmp_path / "out", device="cpu")
    (item,) = read_manifest(tmp_path / "out").items
    assert item.kind == "video" and item.path.endswith(".mp4") and item.frames == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[suite]\nformatt = "png"\n', r"unknown key\(s\) \['formatt'\] in \[suite\]"),
        ('[[generate]]\ngenerator = "pixel-ddimm"\ncount = 1\n', "unknown generator 'pixel-ddimm'"),
        (
            '[[generate]]\ngenerator = "pixel-ddim"\ncount = 1\nprompts = "nope.txt"\n',
            "prompt file not found",
        ),
        (
            '[[generate]]\ngenerator = "pixel-ddim"\ncount = 1\nmodel = "nowhere"\n',
            "model folder not found",
        ),
        ('[[generate]]\ngenerator = "pixel-ddim"\n', "needs 'generator' and 'count'"),
        (
            '[suite]\npost = ["jpg:75"]\n[[generate]]\ngenerator = "pixel-ddim"\ncount = 1\n',
            "unknown perturbation",
        ),
        ("[suite\n", "not valid TOML"),
    ],
)
def test_bad_specs_fail_before_any_work(tmp_path, text, message):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(SuiteError, match=message) as info:
        load_suite(p)
    assert str(info.value).startswith(str(p))
