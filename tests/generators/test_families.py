"""`train_generator`: one call trains any family; bad combinations fail before training."""

from __future__ import annotations

import json

import pytest

from deepaudit.generators import GENERATOR_FAMILIES, train_generator


def test_unknown_family_names_the_allowed_ones(tmp_path):
    with pytest.raises(ValueError, match="use pixel, latent or video"):
        train_generator("gan", tmp_path / "m")  # type: ignore[arg-type]
    assert not (tmp_path / "m").exists()
    assert GENERATOR_FAMILIES == ("pixel", "latent", "video")


def test_video_has_no_classes(tmp_path):
    with pytest.raises(ValueError, match="class_attribute"):
        train_generator("video", tmp_path / "m", class_attribute="group")


def test_video_family_gets_clips_and_a_capped_batch(tmp_path, monkeypatch):
    import deepaudit.generators.video as video

    seen = {}

    def fake_train(config, out, *, clips, **kwargs):  # one video UNet step takes ~10 s here
        seen.update(config=config, clips=clips, device=kwargs["device"])
        return out

    monkeypatch.setattr(video, "train_video_diffusion", fake_train)
    out = train_generator(
        "video", tmp_path / "v", size=16, frames=4, channels=(8, 16), batch_size=32, device="cpu"
    )
    assert out == tmp_path / "v"
    cfg = seen["config"]
    assert (cfg.frames, cfg.image_size, cfg.channels) == (4, 16, (8, 16))
    assert cfg.batch_size == 8  # clips are frames x the memory of an image
    assert seen["clips"].shape[1:] == (4, 16, 16, 3) and seen["device"] == "cpu"


def test_latent_family_gets_its_autoencoder_steps(tmp_path):
    out = train_generator(
        "latent",
        tmp_path / "latent",
        steps=2,
        ae_steps=1,
        channels=(8, 16),
        batch_size=4,
        device="cpu",
    )
    meta = json.loads((out / "deepaudit.json").read_text())
    assert meta["family"] == "latent" and meta["config"]["ae_steps"] == 1
    assert meta["steps_done"] == 1 + 2  # the autoencoder's steps, then the UNet's
