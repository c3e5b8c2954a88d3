"""Pretrained diffusers pipelines (tiny ones, loaded from disk like real weights) and video."""

from __future__ import annotations

import numpy as np
import pytest

from deepaudit.errors import DependencyError
from deepaudit.generators import GenerationRequest, create_generator


@pytest.fixture(scope="module")
def init_image(photo):
    return np.ascontiguousarray(photo[:64, :64])


@pytest.mark.parametrize(
    ("name", "task"),
    [
        ("sd-text2img", "text2img"),
        ("sd-img2img", "img2img"),
        ("sd-inpaint", "inpaint"),
        ("instruct-pix2pix", "instruct"),
    ],
)
def test_image_pipelines_from_a_local_folder(tiny_pipelines, init_image, name, task):
    opts = {"height": 64, "width": 64} if task == "text2img" else {}
    gen = create_generator(
        name, model=tiny_pipelines[task], steps=2, sampler="euler", device="cpu", **opts
    )
    reqs = [
        GenerationRequest(seed=s, prompt="a photo of a cat", init_image=init_image) for s in (0, 1)
    ]
    items = gen.generate(reqs)
    assert [i.pixels.shape for i in items] == [(64, 64, 3)] * 2
    assert items[0].info.prompt == "a photo of a cat" and items[0].info.sampler == "euler"
    assert all(
        np.array_equal(a.pixels, b.pixels) for a, b in zip(gen.generate(reqs), items, strict=True)
    )
    # a seed gives the same image in another batch, up to float rounding of the batch size
    alone = gen.generate(reqs[:1])[0].pixels.astype(int)
    assert np.abs(alone - items[0].pixels).max() <= 2
    if task == "inpaint":
        assert items[0].mask.shape == (64, 64) and items[0].mask.max() == 255
    elif task == "instruct":  # what the edit changed, thresholded (the manifest says how)
        assert items[0].mask.shape == (64, 64) and items[0].info.params["mask"] == "difference>32"
    else:
        assert items[0].mask is None


def test_pipeline_that_needs_an_image_says_so(tiny_pipelines):
    gen = create_generator("sd-img2img", model=tiny_pipelines["img2img"], steps=2, device="cpu")
    with pytest.raises(ValueError, match="needs an init_image"):
        gen.generate([GenerationRequest(seed=0, prompt="x")])


def test_not_a_pipeline_folder(tmp_path):
    with pytest.raises(DependencyError, match=r"no model_index\.json"):
        create_generator("sd-text2img", model=tmp_path)


def test_text_to_video_pipeline(tiny_pipelines):
    gen = create_generator(
        "text2video",
        model=tiny_pipelines["text2video"],
        steps=2,
        height=32,
        width=32,
        num_frames=4,
        device="cpu",
    )
    (item,) = gen.generate([GenerationRequest(seed=3, prompt="waves")])
    assert item.kind == "video" and item.pixels.shape == (4, 32, 32, 3) and item.fps == 8.0


def test_video_model_trained_here(video_model):
    gen = create_generator("video-ddim", model=video_model, steps=3, device="cpu")
    items = gen.generate([GenerationRequest(seed=0), GenerationRequest(seed=1)])
    assert items[0].pixels.shape == (4, 16, 16, 3) and items[0].kind == "video"
    assert not np.array_equal(items[0].pixels, items[1].pixels)
    again = gen.generate([GenerationRequest(seed=0), GenerationRequest(seed=1)])
    assert np.array_equal(again[0].pixels, items[0].pixels)
