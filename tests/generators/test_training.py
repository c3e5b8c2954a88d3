"""Training the suite's own diffusion models: diffusers format, resume after a kill, classes."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from deepaudit.errors import DeepauditError
from deepaudit.generators import GenerationRequest, create_generator, load_generator
from deepaudit.generators.training import (
    TrainConfig,
    TrainingImages,
    load_training_images,
    train_diffusion,
)
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


_TRAIN_PRINTING_LOSSES = """
import sys
import numpy as np
from deepaudit.generators.training import TrainConfig, TrainingImages, train_diffusion

def progress(step, total, loss):
    print(step, repr(loss), flush=True)

pixels = np.random.default_rng(0).integers(0, 256, (6, 40, 48, 3), dtype=np.uint8)
data = TrainingImages(list(pixels), [None] * 6)
cfg = TrainConfig(family="pixel", channels=(8, 16), steps=10, batch_size=4, checkpoint_every=4)
train_diffusion(cfg, sys.argv[1], data=data, device="cpu", progress=progress)
"""


@pytest.mark.slow  # three training processes (two at once): mostly imports
def test_sigkill_between_checkpoints_then_rerun_ends_with_the_same_weights(tmp_path, run_script):
    a, b = tmp_path / "a", tmp_path / "b"
    with ThreadPoolExecutor(1) as pool:  # the uninterrupted run beside the killed one
        first = pool.submit(run_script, _TRAIN_PRINTING_LOSSES, a)
        run_script(_TRAIN_PRINTING_LOSSES, b, kill_after=6)  # checkpoints at 4 and 8
        straight = dict(line.split() for line in first.result())
    assert json.loads((b / "checkpoint" / "progress.json").read_text())["step"] == 4
    assert not (b / "deepaudit.json").exists()
    resumed = dict(line.split() for line in run_script(_TRAIN_PRINTING_LOSSES, b))
    assert sorted(map(int, resumed)) == list(range(5, 11))
    assert all(loss == straight[step] for step, loss in resumed.items())
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert np.array_equal(wa[k].numpy(), wb[k].numpy()), k
    assert not (b / "checkpoint").exists()
    tiny = TrainingImages([np.zeros((32, 32, 3), np.uint8)], [None])
    with pytest.raises(DeepauditError, match="already holds a trained model"):
        train_diffusion(TrainConfig(channels=(8, 16)), b, data=tiny, device="cpu")


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_training_tracks_an_mlflow_run(tmp_path):
    from deepaudit.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "art"))
    cfg = TrainConfig(channels=(8, 16), steps=20, batch_size=2)
    train_diffusion(cfg, tmp_path / "m", device="cpu", tracker=tracker)
    (run,) = tracker.list_runs()
    assert run.status == "FINISHED"
    assert run.params["family"] == "pixel" and "loss" in run.metrics


def test_load_generator_reads_the_family_from_the_folder(
    pixel_model, latent_model, video_model, tmp_path
):
    for folder, family, kind in (
        (pixel_model, "pixel", "image"),
        (latent_model, "latent", "image"),
        (video_model, "video", "video"),
    ):
        gen = load_generator(folder, device="cpu", steps=2)
        assert (gen.name, gen.kind) == (f"{family}-ddim", kind)
    euler = load_generator(pixel_model, "euler", device="cpu", steps=2)
    same = create_generator("pixel-euler", model=pixel_model, device="cpu", steps=2)
    (a,), (b,) = (g.generate([GenerationRequest(seed=1)]) for g in (euler, same))
    assert a.info.sampler == "euler" and np.array_equal(a.pixels, b.pixels)
    with pytest.raises(ValueError, match="video model has no sampler 'pndm'; valid: ddim, ddpm"):
        load_generator(video_model, "pndm")


def test_load_generator_refuses_folders_that_are_not_models(tmp_path):
    with pytest.raises(DeepauditError, match=r"not a generator model folder \(no deepaudit.json"):
        load_generator(tmp_path)
    with pytest.raises(DeepauditError, match=r"not a generator model folder \(no such folder"):
        load_generator(tmp_path / "missing")
    (tmp_path / "deepaudit.json").write_text('{"family": "gan"}')
    with pytest.raises(DeepauditError, match="unknown model family 'gan'"):
        load_generator(tmp_path)
    (tmp_path / "deepaudit.json").write_text("{not json")
    with pytest.raises(DeepauditError, match=r"deepaudit\.json: unreadable model metadata"):
        load_generator(tmp_path)
