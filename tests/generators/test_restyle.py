"""video-restyle: real clips in, same size/fps/motion out; pipelines and the video UNet; suite."""

from __future__ import annotations

import numpy as np
import pytest

from deepaudit.errors import DependencyError
from deepaudit.generators import GenerationRequest, create_generator
from deepaudit.generators.pretrained import edit_difference_mask
from deepaudit.generators.restyle import processing_size
from deepaudit.generators.suite import load_suite, run_suite
from deepaudit.manifest import read_manifest, validate_manifest
from deepaudit.media import file_sha256, write_video


@pytest.fixture(scope="module")
def pan(photo):
    """A camera pan across a built-in photo, 6 frames of 36x44 (not a multiple of 8)."""
    from deepaudit.photos import builtin_photos, pan_clip

    frames = pan_clip(builtin_photos()[0].image, frames=6, size=44)
    return np.ascontiguousarray(frames[:, 4:40])


@pytest.fixture(scope="module")
def animatediff(tmp_path_factory):
    from deepaudit.generators.tiny_pipelines import write_tiny_pipeline

    return write_tiny_pipeline("animatediff", tmp_path_factory.mktemp("pipes") / "animatediff")


@pytest.mark.parametrize(
    ("which", "runs_as"),
    [
        ("text2video", "VideoToVideoSDPipeline"),
        ("animatediff", "AnimateDiffVideoToVideoPipeline"),
    ],
)
def test_pipeline_restyles_at_the_source_size_and_fps(request, tiny_pipelines, pan, which, runs_as):
    folder = tiny_pipelines[which] if which == "text2video" else request.getfixturevalue(which)
    gen = create_generator("video-restyle", model=folder, steps=2, device="cpu")
    assert gen.describe()["pipeline"] == runs_as
    req = GenerationRequest(seed=3, prompt="a watercolor", init_video=pan, init_fps=12.0)
    (item,) = gen.generate([req])
    assert item.kind == "video" and item.pixels.shape == pan.shape and item.fps == 12.0
    assert item.info.prompt == "a watercolor" and item.info.params["strength"] == 0.6
    assert not np.array_equal(item.pixels, pan)
    with pytest.raises(ValueError, match="needs a source video"):
        gen.generate([GenerationRequest(seed=0, prompt="x")])


@pytest.mark.slow
def test_video_unet_trained_here_keeps_more_structure_at_low_strength(video_model, pan):
    def distance(strength: float) -> float:
        gen = create_generator(
            "video-restyle",
            model=video_model,
            strength=strength,
            steps=5,
            max_frames=4,
            device="cpu",
        )
        (item,) = gen.generate([GenerationRequest(seed=1, init_video=pan, init_fps=10.0)])
        assert item.pixels.shape == pan[:4].shape and item.fps == 10.0
        return float(np.abs(item.pixels.astype(int) - pan[:4].astype(int)).mean())

    # SDEdit: the less of the trajectory is re-generated, the closer to the source
    assert distance(0.2) < distance(1.0)


def test_restyle_model_must_be_a_video_model(latent_model, tmp_path):
    with pytest.raises(DependencyError, match="a latent model, not a video model"):
        create_generator("video-restyle", model=latent_model)
    with pytest.raises(DependencyError, match="neither a diffusers pipeline folder"):
        create_generator("video-restyle", model=tmp_path)
    with pytest.raises(ValueError, match=r"strength must be in \(0, 1\]"):
        create_generator("video-restyle", model=latent_model, strength=0)


def test_processing_size_fits_the_model_and_the_budget():
    assert processing_size(36, 44, max_side=512, multiple=8) == (32, 48)
    assert processing_size(1080, 1920, max_side=512, multiple=64) == (256, 512)


@pytest.mark.slow
def test_suite_pairs_each_restyled_video_with_its_signed_source(tmp_path, video_model, pan, creds):
    from deepaudit.audit.provenance import inspect_provenance

    src = write_video(tmp_path / "real" / "pan.mp4", pan, fps=12.0).path
    spec = tmp_path / "suite.toml"
    spec.write_text(
        f"""[suite]
batch_size = 1
sign = {{ cert = "{creds["chain"]}", key = "{creds["key"]}" }}
[[generate]]
generator = "video-restyle"
model = "{video_model}"
count = 2
init_from = "real"
options = {{ steps = 4, strength = 0.5, max_frames = 4 }}
"""
    )
    out = tmp_path / "out"
    assert run_suite(load_suite(spec), out, device="cpu", limit_batches=1).generated == 1
    assert run_suite(load_suite(spec), out, device="cpu").generated == 1
    assert validate_manifest(out, check_hashes=True) == []
    items = read_manifest(out).items
    assert len(items) == 2
    for item in items:
        assert (item.width, item.height, item.frames, item.fps) == (44, 36, 4, 12.0)
        assert item.extra["init"] == {"path": "../real/pan.mp4", "sha256": file_sha256(src)}
        rec = inspect_provenance(out / item.path, trust_anchors=creds["ca"])
        assert rec.state == "trusted"
        assert [a.action for a in rec.manifest.actions] == ["c2pa.opened", "c2pa.edited"]
        (ingredient,) = rec.ingredients
        assert ingredient.title == "pan.mp4" and ingredient.relationship == "parentOf"


def test_instruction_edit_mask_marks_what_changed_not_codec_noise():
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    edited = np.clip(source.astype(int) + rng.integers(-6, 7, source.shape), 0, 255)
    edited[16:40, 20:50] = 255 - source[16:40, 20:50]  # the edit
    mask = edit_difference_mask(source, edited.astype(np.uint8))
    inside = mask[18:38, 22:48]
    outside = np.ones_like(mask, bool)
    outside[12:44, 16:54] = False
    assert (inside == 255).mean() > 0.95 and (mask[outside] == 0).all()
