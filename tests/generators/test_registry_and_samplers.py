"""Every registered generator is reachable by name; every sampler samples a trained model."""

from __future__ import annotations

import numpy as np
import pytest

from deepaudit.errors import DependencyError
from deepaudit.generators import (
    GenerationRequest,
    create_generator,
    generator_entry,
    list_generators,
)
from deepaudit.generators.samplers import SAMPLERS


def test_registry_lists_families_and_samplers():
    names = list_generators()
    for s in SAMPLERS:
        assert f"pixel-{s}" in names and f"latent-{s}" in names
    for n in (
        "sd-text2img",
        "sd-img2img",
        "sd-inpaint",
        "instruct-pix2pix",
        "text2video",
        "video-ddim",
    ):
        assert n in names
    assert generator_entry("video-ddim").kind == "video"
    assert list_generators("pixel-*") == sorted(f"pixel-{s}" for s in SAMPLERS)


def test_unknown_generator_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown generator 'pixel-ddimm'.*pixel-ddim"):
        create_generator("pixel-ddimm")


@pytest.mark.parametrize("name", ["pixel-ddim", "sd-text2img", "video-ddim"])
def test_missing_or_broken_model_folder_is_a_clear_error(tmp_path, name):
    with pytest.raises(DependencyError, match="needs model=DIR"):
        create_generator(name)
    (tmp_path / "junk").mkdir()
    with pytest.raises(DependencyError, match="junk"):
        create_generator(name, model=tmp_path / "junk")


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_generates_reproducibly(pixel_model, sampler):
    gen = create_generator(f"pixel-{sampler}", model=pixel_model, steps=3, device="cpu")
    items = gen.generate([GenerationRequest(seed=1), GenerationRequest(seed=2)])
    assert [i.pixels.shape for i in items] == [(32, 32, 3)] * 2
    assert items[0].pixels.dtype == np.uint8
    assert not np.array_equal(items[0].pixels, items[1].pixels)
    again = gen.generate([GenerationRequest(seed=1), GenerationRequest(seed=2)])
    assert np.array_equal(again[0].pixels, items[0].pixels)
    info = items[0].info
    assert (info.sampler, info.steps, info.seed, info.model) == (sampler, 3, 1, "pixel")


def test_latent_family_samples(latent_model, pixel_model):
    gen = create_generator("latent-dpmpp", model=latent_model, steps=3, device="cpu")
    (item,) = gen.generate([GenerationRequest(seed=0)])
    assert item.pixels.shape == (32, 32, 3)
    assert item.info.params["family"] == "latent"
    with pytest.raises(DependencyError, match="a pixel model, not latent"):
        create_generator("latent-ddim", model=pixel_model)
