"""Tiny models trained once per test session (seconds on 2 CPU cores)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def latent_model(tmp_path_factory):
    from deepaudit.generators.training import TrainConfig, train_diffusion

    cfg = TrainConfig(
        family="latent", channels=(16, 32), ae_channels=(16, 32), steps=6, ae_steps=4, batch_size=8
    )
    return train_diffusion(cfg, tmp_path_factory.mktemp("m") / "latent", device="cpu")


@pytest.fixture(scope="session")
def video_model(tmp_path_factory):
    from deepaudit.generators.video import (
        VideoTrainConfig,
        load_training_clips,
        train_video_diffusion,
    )

    cfg = VideoTrainConfig(frames=4, image_size=16, channels=(8, 16), steps=3, batch_size=2)
    clips = load_training_clips(None, frames=4, size=16)
    return train_video_diffusion(
        cfg, tmp_path_factory.mktemp("m") / "video", clips=clips, device="cpu"
    )


@pytest.fixture(scope="session")
def tiny_pipelines(tmp_path_factory):
    from deepaudit.generators.tiny_pipelines import write_tiny_pipeline

    root = tmp_path_factory.mktemp("pipes")
    return {
        t: write_tiny_pipeline(t, root / t)
        for t in ("text2img", "img2img", "inpaint", "instruct", "text2video")
    }
