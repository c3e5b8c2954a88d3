"""Subject LoRA (DreamBooth): real training steps, resume, the adapter visibly applied, suite."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepaudit.errors import DeepauditError, DependencyError
from deepaudit.generators import GenerationRequest, create_generator
from deepaudit.generators.lora import SubjectConfig, read_subject_lora, train_subject_lora
from deepaudit.generators.suite import load_suite, run_suite
from deepaudit.manifest import read_manifest, validate_manifest
from deepaudit.media import file_sha256, write_image

pytest.importorskip("peft", reason="subject LoRA needs peft (pip install 'deepaudit[personalize]')")


@pytest.fixture(scope="module")
def subject_photos(tmp_path_factory, photo):
    """Three crops of one photo: the 'subject' seen from slightly different framings."""
    root = tmp_path_factory.mktemp("subject")
    for k in range(3):
        write_image(root / f"{k}.png", photo[:, 8 * k : 8 * k + 96])
    return root


@pytest.fixture(scope="module")
def pipeline_lora(tmp_path_factory, tiny_pipelines, subject_photos):
    cfg = SubjectConfig(subject="alice", steps=3, lr=2e-2, resolution=32, checkpoint_every=1)
    out = tmp_path_factory.mktemp("lora") / "alice"
    return train_subject_lora(
        tiny_pipelines["text2img"], subject_photos, out, config=cfg, device="cpu"
    )


def test_pipeline_lora_changes_what_the_base_draws(tiny_pipelines, pipeline_lora):
    lora = read_subject_lora(pipeline_lora)
    assert lora.backend == "pipeline" and lora.rank == 4 and lora.steps == 3
    assert lora.sha256 == file_sha256(pipeline_lora / "pytorch_lora_weights.safetensors")
    opts = {"steps": 2, "device": "cpu"}
    tuned = create_generator("personalize", model=pipeline_lora, **opts)
    base = create_generator("sd-text2img", model=tiny_pipelines["text2img"], **opts)
    prompt = tuned.subject_prompt("{subject} on a beach")
    assert prompt == "sks person on a beach"
    (item,) = tuned.generate([GenerationRequest(seed=7, prompt="{subject} on a beach")])
    (plain,) = base.generate([GenerationRequest(seed=7, prompt=prompt)])
    # same pipeline weights, seed and prompt: only the adapter can make the difference
    assert np.abs(item.pixels.astype(int) - plain.pixels.astype(int)).mean() > 1.0
    assert item.attributes["subject"] == "alice"
    params = item.info.params
    assert params["lora_sha256"] == lora.sha256 and params["lora_rank"] == 4
    assert params["instance_prompts"] == ["a photo of sks person"] and params["lora_steps"] == 3


def test_subject_inpainted_into_a_real_photo_keeps_its_mask(tiny_pipelines, pipeline_lora, photo):
    gen = create_generator(
        "personalize",
        model=pipeline_lora,
        task="inpaint",
        inpaint_model_from=tiny_pipelines["inpaint"],
        steps=2,
        device="cpu",
    )
    scene = np.ascontiguousarray(photo[:64, :64])
    (item,) = gen.generate([GenerationRequest(seed=1, prompt="a street", init_image=scene)])
    assert item.mask.shape == (64, 64) and 0 < (item.mask == 255).mean() < 1
    assert item.info.prompt == "a photo of sks person, a street"
    assert item.info.params["mask"] == "inpaint"


@pytest.mark.slow
def test_interrupted_lora_training_resumes_to_the_same_adapter(
    tmp_path, tiny_pipelines, subject_photos, pipeline_lora
):
    cfg = SubjectConfig(subject="alice", steps=3, lr=2e-2, resolution=32, checkpoint_every=1)

    def stop_after_two(step, total, loss):
        if step == 2:
            raise KeyboardInterrupt

    out = tmp_path / "lora"
    with pytest.raises(KeyboardInterrupt):
        train_subject_lora(
            tiny_pipelines["text2img"],
            subject_photos,
            out,
            config=cfg,
            device="cpu",
            progress=stop_after_two,
        )
    assert (out / "checkpoint").is_dir() and not (out / "deepaudit.json").exists()
    train_subject_lora(tiny_pipelines["text2img"], subject_photos, out, config=cfg, device="cpu")
    assert read_subject_lora(out).sha256 == read_subject_lora(pipeline_lora).sha256


@pytest.fixture(scope="module")
def class_model(tmp_path_factory):
    """A class-conditional latent model trained here on crops with classes 'a' and 'b'."""
    from deepaudit.generators.training import (
        TrainConfig,
        load_training_images,
        train_diffusion,
        write_real_crops,
    )

    root = tmp_path_factory.mktemp("classes")
    write_real_crops(root / "real", 16, size=32, seed=1)
    cfg = TrainConfig(
        family="latent",
        channels=(16, 32),
        ae_channels=(16, 32),
        steps=4,
        ae_steps=2,
        batch_size=4,
        class_attribute="group",
    )
    data = load_training_images(root / "real", class_attribute="group")
    return train_diffusion(cfg, root / "model", data=data, device="cpu")


@pytest.mark.slow
def test_one_class_of_a_model_trained_here_becomes_the_subject(
    tmp_path, class_model, subject_photos
):
    cfg = SubjectConfig(
        subject="bob", subject_class="a", steps=3, lr=5e-2, prior_count=1, prior_steps=2
    )
    out = train_subject_lora(
        class_model, subject_photos, tmp_path / "bob", config=cfg, device="cpu"
    )
    meta = json.loads((out / "deepaudit.json").read_text())
    assert meta["backend"] == "own" and meta["instance_prompts"] == ["class a"]
    assert meta["prior_images"] == 1 and len(list((out / "subject").glob("*.png"))) == 3
    tuned = create_generator("personalize", model=out, steps=3, device="cpu")
    base = create_generator("latent-ddim", model=class_model, steps=3, device="cpu")
    (item,) = tuned.generate([GenerationRequest(seed=4, class_label="b")])
    (plain,) = base.generate([GenerationRequest(seed=4, class_label="a")])
    assert item.info.params["class"] == "a"  # the subject's class, whatever was asked
    assert item.attributes == {"group": "a", "subject": "bob"}
    assert np.abs(item.pixels.astype(int) - plain.pixels.astype(int)).mean() > 1.0


def test_bad_subject_inputs_say_what_is_wrong(tmp_path, class_model, subject_photos, latent_model):
    cfg = SubjectConfig(subject="bob", subject_class="c", steps=1)
    with pytest.raises(DeepauditError, match=r"class-conditional on a, b; give subject_class"):
        train_subject_lora(class_model, subject_photos, tmp_path / "x", config=cfg, device="cpu")
    with pytest.raises(DependencyError, match="not a diffusers pipeline folder"):
        train_subject_lora(tmp_path, subject_photos, tmp_path / "y", config=cfg, device="cpu")
    with pytest.raises(DependencyError, match="not a subject LoRA folder; to train one"):
        create_generator("personalize", model=latent_model)
    with pytest.raises(ValueError, match="subject must be a plain"):
        SubjectConfig(subject="a/b")


@pytest.mark.slow
def test_suite_trains_the_subject_then_generates_and_resumes(
    tmp_path, tiny_pipelines, subject_photos
):
    from deepaudit.tracking import Tracker

    spec = tmp_path / "suite.toml"
    spec.write_text(
        f"""[suite]
batch_size = 2
[[generate]]
generator = "personalize"
name = "alice"
model = "{tiny_pipelines["text2img"]}"
count = 3
prompts = "prompts.txt"
[generate.options]
subject_from = "{subject_photos}"
subject = "alice"
train_steps = 2
resolution = 32
steps = 2
height = 32
width = 32
"""
    )
    (tmp_path / "prompts.txt").write_text("{subject} in a forest\na portrait of sks person\n")
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    out = tmp_path / "out"
    first = run_suite(load_suite(spec), out, device="cpu", limit_batches=1, tracker=tracker)
    assert first.generated == 2
    rest = run_suite(load_suite(spec), out, device="cpu", tracker=tracker)
    assert rest.generated == 1 and rest.skipped == 2
    assert validate_manifest(out, check_hashes=True) == []
    m = read_manifest(out)
    real = m.filter(label="real")
    fake = m.filter(label="synthetic")
    assert len(real) == 3 and len(fake) == 3 and real[0].source == "subject-photos"
    assert fake[1].generator.prompt == "a portrait of sks person"
    sha = file_sha256(out / "alice" / "lora" / "pytorch_lora_weights.safetensors")
    assert {i.generator.params["lora_sha256"] for i in fake} == {sha}
    # one subject, one split: its real photos never test a detector trained on its fakes
    split = m.with_splits(group_by="subject", overwrite=True)
    assert len({i.split for i in split}) == 1
    runs = tracker.client.search_runs([tracker.experiment_id("personalize-lora")])
    assert len(runs) == 1 and runs[0].data.params["subject"] == "alice"


def test_cli_trains_a_subject_lora_and_says_how_to_use_it(
    tmp_path, monkeypatch, tiny_pipelines, subject_photos
):
    from typer.testing import CliRunner

    from deepaudit.cli import app

    monkeypatch.chdir(tmp_path)  # the mlflow store lands here
    runner = CliRunner()
    base = ["generators", "personalize", "--photos", str(subject_photos), "--subject", "carol"]
    bad = runner.invoke(app, [*base, "--base", str(tmp_path), "--out", "x"])
    assert bad.exit_code == 1 and "not a diffusers pipeline folder" in bad.stderr
    args = ["--base", str(tiny_pipelines["text2img"]), "--out", "carol", "--steps", "1"]
    done = runner.invoke(app, [*base, *args])
    assert done.exit_code == 0, done.stderr
    assert 'generator = "personalize"' in done.stdout
    assert read_subject_lora(tmp_path / "carol").subject == "carol"
    assert (tmp_path / "mlflow.db").is_file()


def test_adapter_weights_stay_fp32_over_a_half_precision_base(tiny_pipelines):
    """The CUDA recipe (diffusers' LoRA scripts), checked on the CPU: the frozen base in
    bf16, the adapter's trainable weights in fp32, and a step under autocast gives them fp32
    gradients and moves them."""
    import torch
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig

    from deepaudit.generators.lora import lora_mixed_precision

    pipe = StableDiffusionPipeline.from_pretrained(
        tiny_pipelines["text2img"], safety_checker=None, requires_safety_checker=False
    )
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        part.requires_grad_(False)
    targets = ["to_q", "to_k", "to_v", "to_out.0"]
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets))
    params = lora_mixed_precision(pipe.unet, [pipe.vae, pipe.text_encoder], torch.bfloat16)
    assert params and all(p.dtype == torch.float32 for p in params)
    assert all("lora" in n for n, p in pipe.unet.named_parameters() if p.requires_grad)
    frozen = [p for p in pipe.unet.parameters() if not p.requires_grad]
    assert all(p.dtype == torch.bfloat16 for p in frozen)
    assert pipe.vae.dtype == torch.bfloat16 and pipe.text_encoder.dtype == torch.bfloat16
    opt = torch.optim.AdamW(params, lr=1e-2)
    before = [p.detach().clone() for p in params]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pred = pipe.unet(
            torch.randn(2, 4, 16, 16),
            torch.tensor([10, 500]),
            encoder_hidden_states=torch.randn(2, 77, 32),
        ).sample
    pred.float().pow(2).mean().backward()
    grads = [p.grad for p in params if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, params, strict=True))
    assert all(p.dtype == torch.float32 for p in params)


def test_bf16_training_saves_an_fp32_adapter(tmp_path, tiny_pipelines, subject_photos):
    """The whole training path under mixed precision: finite losses, an fp32 adapter file,
    the precision recorded."""
    import torch
    from safetensors.torch import load_file

    from deepaudit.devices import cpu_has_bf16

    if cpu_has_bf16() is False:
        pytest.skip("this CPU has no bf16 units: bf16 training is refused here")
    losses = []
    cfg = SubjectConfig(subject="dora", steps=2, lr=2e-2, resolution=32)
    out = train_subject_lora(
        tiny_pipelines["text2img"],
        subject_photos,
        tmp_path / "dora",
        config=cfg,
        device="cpu",
        precision="bf16",
        progress=lambda step, total, loss: losses.append(loss),
    )
    assert len(losses) == 2 and all(np.isfinite(losses))
    weights = load_file(read_subject_lora(out).weights)
    assert weights and all(t.dtype == torch.float32 for t in weights.values())
    assert json.loads((out / "deepaudit.json").read_text())["precision"] == "bf16"
