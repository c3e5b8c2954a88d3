"""Local autoencoders in every form users have them, both latent layouts, any image size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deepaudit.errors import DependencyError
from deepaudit.generators.autoencoders import VaeReconstructGenerator, load_autoencoder
from deepaudit.generators.tiny_pipelines import write_tiny_autoencoder


@pytest.fixture(scope="module")
def vaes(tmp_path_factory):
    root = tmp_path_factory.mktemp("vaes")
    return {
        (ch, single): write_tiny_autoencoder(
            root / (f"vae{ch}.safetensors" if single else f"vae{ch}"),
            latent_channels=ch,
            single_file=single,
        )
        for ch in (4, 16)
        for single in (False, True)
    }


@pytest.mark.parametrize(
    ("channels", "layout", "scale", "shift"),
    [(4, "auto", 0.18215, 0.0), (16, "sd3", 1.5305, 0.0609)],
)
def test_single_file_and_folder_load_the_same_weights(vaes, channels, layout, scale, shift):
    folder, lay_folder = load_autoencoder(vaes[(channels, False)])
    single, lay_single = load_autoencoder(vaes[(channels, True)], layout=layout)
    a, b = folder.state_dict(), single.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for lay in (lay_folder, lay_single):
        assert (lay.latent_channels, lay.scaling_factor, lay.shift_factor) == (
            channels,
            scale,
            shift,
        )


def test_flux_layout_takes_flux_factors(vaes):
    _, lay = load_autoencoder(vaes[(16, True)], layout="flux")
    assert (lay.name, lay.scaling_factor, lay.shift_factor) == ("flux", 0.3611, 0.1159)


def test_a_whole_sd_checkpoint_and_a_pipeline_folder_are_accepted(vaes, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(str(vaes[(4, True)]))
    full = {f"first_stage_model.{k}": v for k, v in state.items()}
    full["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(4, 4, 3, 3)
    save_file(full, str(tmp_path / "sd15.safetensors"))
    vae, _ = load_autoencoder(tmp_path / "sd15.safetensors")
    pipe = tmp_path / "pipe"
    write_tiny_autoencoder(pipe / "vae")
    (pipe / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    from_pipe, _ = load_autoencoder(pipe)
    ref = vaes[(4, False)]
    assert torch.equal(
        vae.state_dict()["decoder.conv_out.weight"],
        load_autoencoder(ref)[0].state_dict()["decoder.conv_out.weight"],
    )
    assert from_pipe.config.latent_channels == 4


def test_unusable_autoencoders_fail_with_the_file_and_the_reason(vaes, tmp_path):
    (tmp_path / "vae.ckpt").write_bytes(b"\x80\x04pickle")
    unet = tmp_path / "unet"
    unet.mkdir()
    (unet / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    cases = [
        (tmp_path / "vae.ckpt", "auto", "only .safetensors"),
        (vaes[(16, True)], "auto", 'layout = "sd3" } or "flux"'),
        (vaes[(4, True)], "sd3", "'sd3' has 16 latent channels"),
        (unet, "auto", "a UNet2DConditionModel, not an AutoencoderKL"),
        (tmp_path / "nowhere", "auto", "no such autoencoder"),
    ]
    for path, layout, reason in cases:
        with pytest.raises(DependencyError) as info:
            load_autoencoder(path, layout=layout)
        msg = str(info.value)
        assert msg.startswith(str(path)) and reason in msg and "\n" not in msg


@pytest.mark.parametrize("channels", [4, 16])
def test_reconstruction_is_the_decoder_output_at_the_photo_size(vaes, photo, channels):
    opts = {"layout": "sd3"} if channels == 16 else {}
    gen = VaeReconstructGenerator(model=vaes[(channels, True)], device="cpu", **opts)
    image = np.ascontiguousarray(photo[:37, :50])  # an odd side: padded, then cropped
    (out,) = gen.reconstruct([image], [0])
    assert out.shape == image.shape and out.dtype == np.uint8
    # the scaling and shift of the layout cancel: the twin is decode(encode(x))
    pad = ((0, -37 % gen.factor), (0, -50 % gen.factor), (0, 0))
    x = torch.from_numpy(np.pad(image, pad, mode="reflect"))
    x = x.permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.inference_mode():
        ref = gen.vae.decode(gen.vae.encode(x).latent_dist.mode()).sample[0, :, :37, :50]
    ref = ((ref.clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


def test_large_images_are_reconstructed_in_tiles(vaes, photo):
    whole = VaeReconstructGenerator(model=vaes[(4, False)], device="cpu", tile_size=128)
    tiled = VaeReconstructGenerator(model=vaes[(4, False)], device="cpu", tile_size=32)
    image = np.ascontiguousarray(photo[:48, :72])
    (a,), (b,) = whole.reconstruct([image], [0]), tiled.reconstruct([image], [0])
    assert a.shape == b.shape == image.shape
    assert not np.array_equal(a, b)  # the tiles were encoded and decoded on their own
    assert tiled.describe()["tile_size"] == 32
    with pytest.raises(ValueError, match="tile_size must be a multiple of 2"):
        VaeReconstructGenerator(model=vaes[(4, False)], device="cpu", tile_size=33)
