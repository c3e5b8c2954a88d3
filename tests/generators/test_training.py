"""Training the suite's own diffusion models: diffusers format, resume after a kill, classes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepaudit.errors import DeepauditError
from deepaudit.generators import GenerationRequest, create_generator
from deepaudit.generators.training import TrainConfig, load_training_images, train_diffusion
from deepaudit.manifest import ManifestItem, ManifestWriter
from deepaudit.media import file_sha256, write_image


def _weights(path):
    from safetensors.torch import load_file

    return load_file(path / "unet" / "diffusion_pytorch_model.safetensors")


def test_model_folder_loads_in_diffusers_itself(pixel_model):
    from diffusers import DDPMPipeline

    pipe = DDPMPipeline.from_pretrained(pixel_model)
    out = pipe(batch_size=1, num_inference_steps=2, output_type="np").images
    assert out.shape == (1, 32, 32, 3)
    meta = json.loads((pixel_model / "deepaudit.json").read_text())
    assert meta["family"] == "pixel" and meta["steps_done"] == 6
    assert meta["training_data"]["source"] == "builtin"


class _Kill(Exception):
    pass


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    cfg = TrainConfig(family="pixel", channels=(8, 16), steps=8, batch_size=4, checkpoint_every=3)
    data = load_training_images(None)
    straight = train_diffusion(cfg, tmp_path / "a", data=data, device="cpu")

    def kill_at_5(step, total, loss):
        if step == 5:
            raise _Kill

    with pytest.raises(_Kill):
        train_diffusion(cfg, tmp_path / "b", data=data, device="cpu", progress=kill_at_5)
    assert (tmp_path / "b" / "checkpoint" / "state.pt").is_file()
    assert not (tmp_path / "b" / "deepaudit.json").exists()
    resumed = train_diffusion(cfg, tmp_path / "b", data=data, device="cpu")
    assert not (resumed / "checkpoint").exists()
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k].numpy(), b[k].numpy()), k
    with pytest.raises(DeepauditError, match="already holds a trained model"):
        train_diffusion(cfg, tmp_path / "b", data=data, device="cpu")


def test_checkpoint_from_another_config_is_refused(tmp_path):
    data = load_training_images(None)
    cfg = TrainConfig(family="pixel", channels=(8, 16), steps=6, batch_size=4, checkpoint_every=2)

    def kill(step, total, loss):
        if step == 3:
            raise _Kill

    with pytest.raises(_Kill):
        train_diffusion(cfg, tmp_path / "m", data=data, device="cpu", progress=kill)
    other = TrainConfig(family="pixel", channels=(8, 16), steps=6, batch_size=4, lr=1e-3)
    with pytest.raises(DeepauditError, match="another config"):
        train_diffusion(other, tmp_path / "m", data=data, device="cpu")


def test_class_conditional_training_and_generation(tmp_path, photo):
    root = tmp_path / "faces"
    with ManifestWriter(root) as w:
        for i in range(6):
            img = np.roll(photo, i * 7, axis=1)
            p = write_image(root / f"{i}.png", img)
            w.write(
                ManifestItem(
                    id=str(i),
                    path=p.name,
                    sha256=file_sha256(p),
                    kind="image",
                    label="real",
                    source="test",
                    attributes={"group": "a" if i % 2 else "b"},
                )
            )
    with pytest.raises(DeepauditError, match="no item has attribute 'gender'; present: group"):
        load_training_images(root, class_attribute="gender")
    data = load_training_images(root, class_attribute="group")
    assert data.classes == ["a", "b"]
    cfg = TrainConfig(channels=(8, 16), steps=3, batch_size=4, class_attribute="group")
    model = train_diffusion(cfg, tmp_path / "cond", data=data, device="cpu")
    gen = create_generator("pixel-ddim", model=model, steps=2, guidance=2.0, device="cpu")
    items = gen.generate(
        [GenerationRequest(seed=0, class_label="a"), GenerationRequest(seed=0, class_label="b")]
    )
    assert [i.attributes for i in items] == [{"group": "a"}, {"group": "b"}]
    assert not np.array_equal(items[0].pixels, items[1].pixels)
    with pytest.raises(ValueError, match="unknown class 'c'; valid: a, b"):
        gen.generate([GenerationRequest(seed=0, class_label="c")])


def test_training_tracks_an_mlflow_run(tmp_path):
    from deepaudit.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "art"))
    cfg = TrainConfig(channels=(8, 16), steps=20, batch_size=2)
    train_diffusion(cfg, tmp_path / "m", device="cpu", tracker=tracker)
    (run,) = tracker.list_runs()
    assert run.status == "FINISHED"
    assert run.params["family"] == "pixel" and "loss" in run.metrics
