"""AEROBLADE imported from files in its sources' own formats scores as the paper's math says.

The files are made here with random weights, saved as their publishers save them: diffusers
autoencoder folders (``save_pretrained``: config.json + diffusion_pytorch_model.safetensors)
for an SD-style AutoencoderKL and a Kandinsky-style MoVQ (VQModel, spatial norm), the lpips
package's ``vgg.pth`` (a legacy-format ``torch.save`` of ``lin0..lin4.model.1.weight``) and a
torchvision VGG-16 state dict (``features.*``). The reference below recomputes every score
from the raw tensors with ``torch.nn.functional``: the autoencoders once through diffusers
and once through a functional re-implementation of their encoder/decoder (the two must
agree), then VGG-16 relu2_2, LPIPS normalisation, lin1 and the minimum over autoencoders.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from deepaudit.detectors import load_detector
from deepaudit.detectors.zoo import import_detector
from deepaudit.errors import DeepauditError

LPIPS_CH = (64, 128, 256, 512, 512)


# -- the authors' files, with random weights -----------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    import torchvision
    from diffusers import AutoencoderKL, VQModel

    root = tmp_path_factory.mktemp("aeroblade")
    torch.manual_seed(0)
    # the SD layout (4 blocks, so the 8-pixel grid of every LDM) with tiny channels
    AutoencoderKL(
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    ).save_pretrained(root / "sd" / "vae")
    # Kandinsky 2.1's MoVQ layout (attention in the last encoder / first decoder block,
    # spatially conditioned norms; SpatialNorm fixes 32 groups, hence 32-channel blocks)
    VQModel(
        block_out_channels=(32, 32, 32, 64),
        down_block_types=("DownEncoderBlock2D",) * 3 + ("AttnDownEncoderBlock2D",),
        up_block_types=("AttnUpDecoderBlock2D",) + ("UpDecoderBlock2D",) * 3,
        layers_per_block=1,
        latent_channels=4,
        num_vq_embeddings=64,
        vq_embed_dim=4,
        norm_num_groups=32,
        norm_type="spatial",
    ).save_pretrained(root / "kandinsky" / "movq")
    # LPIPS lin layers are non-negative (clamped in training), so distances are too
    lins = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) * 0.1 for i, c in enumerate(LPIPS_CH)}
    torch.save(lins, root / "vgg.pth", _use_new_zipfile_serialization=False)
    # features only (as the brief's "features-only" file); torchvision's own builder
    vgg = torchvision.models.vgg
    feats = vgg.make_layers(vgg.cfgs["D"]).state_dict()
    torch.save({f"features.{k}": v for k, v in feats.items()}, root / "vgg16_features.pth")
    return {
        "kl": root / "sd" / "vae",
        "vq": root / "kandinsky" / "movq",
        "lpips": root / "vgg.pth",
        "vgg": root / "vgg16_features.pth",
        "root": root,
    }


def _images() -> list[np.ndarray]:
    from skimage import data

    astro = np.asarray(Image.fromarray(data.astronaut()).resize((80, 96), Image.BILINEAR))
    rng = np.random.default_rng(3)
    return [
        astro,  # 96x80: on the 8-pixel grid
        rng.integers(0, 256, (70, 53, 3), dtype=np.uint8),  # centre-cropped to 64x48
        np.asarray(Image.fromarray(data.camera()).resize((72, 64))),  # grey, 64x72
    ]


# -- the reference: the paper's math on the raw tensors ------------------------------------
def _conv(x, sd, p, stride=1, padding=None):
    w = sd[p + ".weight"]
    pad = w.shape[-1] // 2 if padding is None else padding
    return F.conv2d(x, w, sd.get(p + ".bias"), stride, pad)


def _norm(x, sd, p, groups, zq):
    if p + ".norm_layer.weight" in sd:  # MoVQ SpatialNorm: GroupNorm(32) modulated by zq
        zq = F.interpolate(zq, size=x.shape[-2:], mode="nearest")
        n = F.group_norm(x, 32, sd[p + ".norm_layer.weight"], sd[p + ".norm_layer.bias"], 1e-6)
        return n * _conv(zq, sd, p + ".conv_y") + _conv(zq, sd, p + ".conv_b")
    return F.group_norm(x, groups, sd[p + ".weight"], sd[p + ".bias"], 1e-6)


def _resnet(x, sd, p, g, zq):
    h = _conv(F.silu(_norm(x, sd, p + ".norm1", g, zq)), sd, p + ".conv1")
    h = _conv(F.silu(_norm(h, sd, p + ".norm2", g, zq)), sd, p + ".conv2")
    if p + ".conv_shortcut.weight" in sd:
        x = _conv(x, sd, p + ".conv_shortcut")
    return x + h


def _attention(x, sd, p, g, zq):
    b, c, hh, ww = x.shape
    spatial = p + ".spatial_norm.norm_layer.weight" in sd
    h = _norm(x, sd, p + (".spatial_norm" if spatial else ".group_norm"), g, zq)
    t = h.flatten(2).transpose(1, 2)
    q, k, v = (
        F.linear(t, sd[f"{p}.{n}.weight"], sd[f"{p}.{n}.bias"]) for n in ("to_q", "to_k", "to_v")
    )
    a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c), dim=-1) @ v
    o = F.linear(a, sd[p + ".to_out.0.weight"], sd[p + ".to_out.0.bias"])
    return x + o.transpose(1, 2).reshape(b, c, hh, ww)


def _mid(x, sd, p, g, zq):
    x = _resnet(x, sd, p + ".resnets.0", g, zq)
    x = _attention(x, sd, p + ".attentions.0", g, zq)
    return _resnet(x, sd, p + ".resnets.1", g, zq)


def _functional_reconstruction(sd, cfg, x, noise):
    """SD's AutoencoderKL / Kandinsky's MoVQ written out: encode, (sample), decode."""
    g, n, lpb = cfg["norm_num_groups"], len(cfg["block_out_channels"]), cfg["layers_per_block"]
    h = _conv(x, sd, "encoder.conv_in")
    for i in range(n):
        for j in range(lpb):
            h = _resnet(h, sd, f"encoder.down_blocks.{i}.resnets.{j}", g, None)
            if f"encoder.down_blocks.{i}.attentions.{j}.to_q.weight" in sd:
                h = _attention(h, sd, f"encoder.down_blocks.{i}.attentions.{j}", g, None)
        if i < n - 1:  # asymmetric padding, stride-2 conv
            h = _conv(
                F.pad(h, (0, 1, 0, 1)), sd, f"encoder.down_blocks.{i}.downsamplers.0.conv", 2, 0
            )
    h = _mid(h, sd, "encoder.mid_block", g, None)
    h = _conv(F.silu(_norm(h, sd, "encoder.conv_norm_out", g, None)), sd, "encoder.conv_out")
    h = _conv(h, sd, "quant_conv")
    if noise is not None:  # the KL posterior, sampled
        mean, logvar = h.chunk(2, dim=1)
        h = mean + torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * noise
    zq = h if cfg.get("norm_type") == "spatial" else None  # unquantised, as Kandinsky decodes
    h = _conv(_conv(h, sd, "post_quant_conv"), sd, "decoder.conv_in")
    h = _mid(h, sd, "decoder.mid_block", g, zq)
    for i in range(n):
        for j in range(lpb + 1):
            h = _resnet(h, sd, f"decoder.up_blocks.{i}.resnets.{j}", g, zq)
            if f"decoder.up_blocks.{i}.attentions.{j}.to_q.weight" in sd:
                h = _attention(h, sd, f"decoder.up_blocks.{i}.attentions.{j}", g, zq)
        if i < n - 1:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = _conv(h, sd, f"decoder.up_blocks.{i}.upsamplers.0.conv")
    h = F.silu(_norm(h, sd, "decoder.conv_norm_out", g, zq))
    return _conv(h, sd, "decoder.conv_out")


@functools.cache
def _autoencoder(folder: Path):
    import diffusers

    cfg = json.loads((folder / "config.json").read_text())
    cls = getattr(diffusers, cfg["_class_name"])
    return cls.from_pretrained(folder, local_files_only=True).eval()


def _diffusers_reconstruction(folder, x, noise):
    ae = _autoencoder(folder)
    if noise is None:
        return ae.decode(ae.encode(x).latents, force_not_quantize=True).sample
    post = ae.encode(x).latent_dist
    return ae.decode(post.mean + post.std * noise).sample


def _vgg_relu2_2(x, feats):
    for i in (0, 2):
        x = F.relu(
            F.conv2d(x, feats[f"features.{i}.weight"], feats[f"features.{i}.bias"], padding=1)
        )
    x = F.max_pool2d(x, 2, 2)
    for i in (5, 7):
        x = F.relu(
            F.conv2d(x, feats[f"features.{i}.weight"], feats[f"features.{i}.bias"], padding=1)
        )
    return x


def _lpips_2(a01, b01, feats, lin1):
    """LPIPS v0.1, second VGG stage only: [0,1] -> [-1,1] -> ScalingLayer -> relu2_2 ->
    channel-unit-normalise -> squared difference -> 1x1 lin1 -> mean over positions."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    fa, fb = (_vgg_relu2_2(((2 * t - 1) - shift) / scale, feats) for t in (a01, b01))
    na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
    nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
    return ((na - nb) ** 2 * lin1.view(1, -1, 1, 1)).sum(1).mean().item()


@torch.no_grad()
def _reference(files, image: np.ndarray) -> tuple[float, list[float], float]:
    """(decision value, per-autoencoder distances, largest diffusers-vs-functional gap)."""
    from safetensors.torch import load_file

    rgb = np.repeat(image[..., None], 3, 2) if image.ndim == 2 else image
    x01 = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255  # ToTensor
    h, w = x01.shape[-2:]
    top, left = (h % 8) // 2, (w % 8) // 2  # our centre crop onto the 8-pixel grid
    x01 = x01[..., top : top + h - h % 8, left : left + w - w % 8]
    x = x01 * 2 - 1
    lins = torch.load(files["lpips"], weights_only=True)
    feats = torch.load(files["vgg"], weights_only=True)
    dists, gap = [], 0.0
    for folder in files.get("autoencoders") or (files["kl"], files["vq"]):
        cfg = json.loads((folder / "config.json").read_text())
        noise = None
        if cfg["_class_name"] == "AutoencoderKL":
            lat = (1, cfg["latent_channels"], x.shape[2] // 8, x.shape[3] // 8)
            noise = torch.randn(lat, generator=torch.Generator().manual_seed(1))
        rec = _diffusers_reconstruction(folder, x, noise)
        sd = load_file(folder / "diffusion_pytorch_model.safetensors")
        gap = max(gap, (rec - _functional_reconstruction(sd, cfg, x, noise)).abs().max().item())
        rec01 = torch.floor((rec / 2 + 0.5).clamp(0, 1) * 255) / 255  # PNG via to_pil_image
        dists.append(_lpips_2(x01, rec01, feats, lins["lin1.model.1.weight"]))
    return -min(dists), dists, gap


# -- tests ---------------------------------------------------------------------------------
# The brief's bound is 1e-4; the two computations agree to ~1e-7, and dropping the 8-bit
# truncation of the reconstruction alone moves scores by ~1e-4, so hold them to 1e-5.
TOL = 1e-5


@pytest.mark.slow
def test_scores_match_the_papers_math(files, tmp_path):
    both = import_detector(
        "aeroblade",
        [files["kl"], files["vq"]],
        tmp_path / "both",
        backbones=[files["vgg"], files["lpips"]],  # told apart by their keys, not order
    )
    imported = json.loads((both / "config.json").read_text())["imported"]
    assert imported["kind"] == "aeroblade" and imported["preprocessing"]["crop"] is None
    assert [i["role"].split(" (")[0] for i in imported["inputs"]] == [
        "autoencoder 0",
        "autoencoder 1",
        "VGG-16 features",
        "LPIPS v0.1 linear layers",
    ]
    # each autoencoder alone too, so both reconstruction paths are held to the reference
    dets = [load_detector(both, device="cpu")] + [
        load_detector(
            import_detector(
                "aeroblade", [files[k]], tmp_path / k, backbones=[files["lpips"], files["vgg"]]
            ),
            device="cpu",
        )
        for k in ("kl", "vq")
    ]
    images = _images()
    probs = dets[0].predict_proba(images)
    for image, p in zip(images, probs, strict=True):
        want, dists, gap = _reference(files, image)
        assert gap < 1e-4  # diffusers and the functional autoencoders agree
        assert abs(dists[0] - dists[1]) > 2 * TOL  # so a mean would not pass for the minimum
        for det, target in zip(dets, (want, -dists[0], -dists[1]), strict=True):
            got = det.decision_values(det.input_spec().prepare(image))
            assert got.shape == (1,)
            assert abs(got[0] - target) <= TOL, (got[0], target)
        assert abs(p - 1 / (1 + math.exp(-want))) <= 1e-6
        assert p < 0.5  # uncalibrated: a distance alone is no evidence
    # each image gets its own seed-1 noise: its score does not depend on its neighbours
    again = dets[0].predict_proba([images[0], images[0], images[1]])
    assert again[0] == again[1] == probs[0] and again[2] == probs[1]


def test_every_backbone_file_is_required(files, tmp_path):
    for given, missing in ((files["lpips"], "vgg16-397923af.pth"), (files["vgg"], "vgg.pth")):
        with pytest.raises(DeepauditError, match=f"missing --backbone file: .*{missing}") as e:
            import_detector("aeroblade", [files["kl"]], tmp_path / "out", backbones=[given])
        assert "\n" not in str(e.value)
        assert not (tmp_path / "out").exists()


def _save(path: Path, state: dict) -> Path:
    torch.save(state, path)
    return path


def test_files_of_another_architecture_are_refused(files, tmp_path):
    feats = torch.load(files["vgg"], weights_only=True)
    alex = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 192))}
    cut = {k: v for k, v in feats.items() if not k.startswith("features.28")}
    bad_vae = tmp_path / "vae"
    shutil.copytree(files["kl"], bad_vae)
    cfg = json.loads((bad_vae / "config.json").read_text())
    (bad_vae / "config.json").write_text(json.dumps({**cfg, "latent_channels": 8}))
    lpips, vgg = files["lpips"], files["vgg"]
    cases = [  # (autoencoder, backbone files, the one line expected)
        (files["kl"], [_save(tmp_path / "alex.pth", alex), vgg], "'lin1.model.1.weight' has shape"),
        (
            files["kl"],
            [
                lpips,
                _save(tmp_path / "bn.pth", {**feats, "features.1.running_mean": torch.zeros(64)}),
            ],
            "unexpected key 'features.1.running_mean'",
        ),
        (
            files["kl"],
            [lpips, _save(tmp_path / "cut.pth", cut)],
            "missing key 'features.28.weight'",
        ),
        (
            files["kl"],
            [lpips, _save(tmp_path / "fc.pth", {"fc.weight": torch.zeros(1)})],
            "neither LPIPS .* first key 'fc.weight'",
        ),
        (files["kl"], [lpips, lpips], "a second lpips file"),
        (
            bad_vae,
            [lpips, vgg],
            "do not fit its config.json: decoder.conv_in.weight expected shape",
        ),
    ]
    for vae, backbones, message in cases:
        with pytest.raises(DeepauditError, match=message) as e:
            import_detector("aeroblade", [vae], tmp_path / "out", backbones=backbones)
        assert "\n" not in str(e.value)
        assert not (tmp_path / "out").exists()


def test_autoencoder_folders_are_checked(files, tmp_path):
    from safetensors.torch import load_file, save_file

    bin_only = tmp_path / "bin"
    bin_only.mkdir()
    shutil.copy(files["kl"] / "config.json", bin_only / "config.json")
    (bin_only / "diffusion_pytorch_model.bin").write_bytes(b"not read")
    holed = tmp_path / "holed"  # a checkpoint short of one tensor
    holed.mkdir()
    shutil.copy(files["kl"] / "config.json", holed / "config.json")
    state = load_file(files["kl"] / "diffusion_pytorch_model.safetensors")
    del state["encoder.conv_in.weight"]
    save_file(state, holed / "diffusion_pytorch_model.safetensors")
    unet = tmp_path / "unet"
    unet.mkdir()
    (unet / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    for given, message in (
        (files["kl"].parent, "no config.json.*pass its vae/ subfolder"),
        (files["lpips"], "not a folder"),
        (bin_only, "no diffusion_pytorch_model.safetensors"),
        (holed, "do not fit its config.json: missing key 'encoder.conv_in.weight'"),
        (unet, "a UNet2DConditionModel model"),
    ):
        with pytest.raises(DeepauditError, match=message):
            import_detector(
                "aeroblade", [given], tmp_path / "out", backbones=[files["lpips"], files["vgg"]]
            )
        assert not (tmp_path / "out").exists()


# -- used by benchmarks/zoo.py: the authors' files and the reference, for any images ---------
def authors_files(root: Path, small: bool = False):
    """One SD-layout AutoencoderKL (tiny, or SD 1.x's real size) and the two backbone files."""
    import torchvision
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    kw = dict(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
    )
    if small:
        kw |= dict(block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=4)
    else:  # stabilityai/sd-vae / SD 1.x vae/config.json
        kw |= dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2)
    AutoencoderKL(**kw).save_pretrained(root / "sd" / "vae")
    lins = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) * 0.1 for i, c in enumerate(LPIPS_CH)}
    torch.save(lins, root / "vgg.pth", _use_new_zipfile_serialization=False)
    vgg = torchvision.models.vgg
    feats = vgg.make_layers(vgg.cfgs["D"]).state_dict()
    torch.save({f"features.{k}": v for k, v in feats.items()}, root / "vgg16_features.pth")
    return [root / "sd" / "vae"], [root / "vgg.pth", root / "vgg16_features.pth"]


def reference_decisions(weights, backbones, images) -> np.ndarray:
    files = {"autoencoders": weights, "lpips": backbones[0], "vgg": backbones[1]}
    with torch.no_grad():
        return np.array([_reference(files, im)[0] for im in images])
