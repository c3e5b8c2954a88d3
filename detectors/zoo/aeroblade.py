"""AEROBLADE (Ricker, Lukovnikov, Fischer, CVPR 2024): training-free detection of latent
diffusion images by how well a latent diffusion model's autoencoder reconstructs them.

An image that came out of an LDM's decoder lies on that decoder's output manifold, so one
pass through encoder and decoder changes it less than it changes a camera photo. The score
is the LPIPS distance between the image and its reconstruction, taken on the second VGG-16
stage only (the paper's best "LPIPS_2"), minimised over several autoencoders (SD 1, SD 2,
Kandinsky 2.1 by default in the authors' code), so one detector covers several generators.

Exactly as the authors' ``compute_reconstructions`` / ``_PatchedLPIPS`` do it:

- the whole image, no resize or crop, ``x / 255`` mapped to [-1, 1];
- AutoencoderKL: a *sample* of the posterior, drawn with a CPU ``torch.Generator`` seeded 1
  (``retrieve_latents``); VQModel (Kandinsky's MoVQ): the encoder's output decoded with
  ``force_not_quantize=True``, as Kandinsky's own pipeline decodes;
- the reconstruction is clamped to [0, 1] and truncated to 8 bits (their reconstructions are
  saved as PNG through ``to_pil_image``, which truncates, and read back);
- LPIPS v0.1: ScalingLayer, VGG-16 ``features[0:9]`` (relu2_2), unit-normalised channels,
  squared difference, the 1×1 ``lin1`` layer, mean over positions.

Deviations, each because the original cannot be reproduced per image: the authors share one
seed-1 generator across a whole run (an image's noise depends on its position in the run);
here it is reseeded per image, so a score depends on the image alone (for a single image,
or the first of a run, the noise is theirs). Their code needs sides that are multiples of the
autoencoders' downsampling factor (8 for all LDMs; otherwise the reconstruction has another
size and LPIPS fails); here other images are centre-cropped to the largest such size. They
run the autoencoders in float16 and keep distances in float16; here everything is float32,
under autocast too (the reconstruction error is a small difference of large signals).
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deepaudit.detectors.zoo.base import (
    Converted,
    Preprocessing,
    ZooKind,
    read_checkpoint,
    register_kind,
    state_dict_of,
)
from deepaudit.errors import DeepauditError

__all__ = ["Aeroblade"]

AE_CLASSES = ("AutoencoderKL", "VQModel")
SEED = 1  # the authors' default (scripts/run_aeroblade.py: seed=1)
# LPIPS v0.1 ScalingLayer: inputs in [-1, 1] to ImageNet statistics
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
LPIPS_EPS = 1e-10  # lpips.normalize_tensor
# torchvision's VGG-16 (configuration "D"): output channels per conv, "M" a max-pool
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
LPIPS_VGG_CHANNELS = (64, 128, 256, 512, 512)  # lin0..lin4
VGG_LAYERS = 9  # features[0:9]: LPIPS slice1 + slice2, ending at relu2_2
LAYER = 2  # LPIPS_2: the second stage (lin1 on relu2_2)
LPIPS_FILE = (
    "the LPIPS linear weights vgg.pth (keys lin0.model.1.weight ...; shipped in the lpips "
    "package as lpips/weights/v0.1/vgg.pth, github.com/richzhang/PerceptualSimilarity)"
)
VGG_FILE = (
    "torchvision's VGG-16 ImageNet weights vgg16-397923af.pth (keys features.0.weight ...; "
    "download.pytorch.org/models/vgg16-397923af.pth)"
)


def _vgg16_features() -> dict[str, tuple[int, ...]]:
    """Key -> shape of torchvision's ``vgg16().features`` (convs at their Sequential index)."""
    shapes: dict[str, tuple[int, ...]] = {}
    idx, cin = 0, 3
    for v in VGG16_CFG:
        if v == "M":
            idx += 1
            continue
        shapes[f"features.{idx}.weight"] = (int(v), cin, 3, 3)
        shapes[f"features.{idx}.bias"] = (int(v),)
        idx, cin = idx + 2, int(v)  # conv, ReLU
    return shapes


def _lpips_lins() -> dict[str, tuple[int, ...]]:
    return {f"lin{i}.model.1.weight": (1, c, 1, 1) for i, c in enumerate(LPIPS_VGG_CHANNELS)}


def _check_keys(
    state: Mapping[str, Any], want: Mapping[str, tuple[int, ...]], path: Path, what: str
) -> None:
    """One line naming the first missing, unexpected or misshapen key."""
    for k, shape in want.items():
        if k not in state:
            raise DeepauditError(f"{path}: not {what}: missing key {k!r}")
        if tuple(state[k].shape) != shape:
            raise DeepauditError(
                f"{path}: not {what}: {k!r} has shape {tuple(state[k].shape)}, {what} has {shape}"
            )
    for k in state:
        if k not in want:
            raise DeepauditError(f"{path}: not {what}: unexpected key {k!r}")


@contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """diffusers logs missing/unused keys as warnings; here they become one-line errors."""
    from diffusers.utils import logging as dlog

    level = dlog.get_verbosity()
    dlog.set_verbosity_error()
    try:
        yield
    finally:
        dlog.set_verbosity(level)


def _ae_class(name: str) -> Any:
    import diffusers

    return getattr(diffusers, name)


def _read_autoencoder(folder: Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(class name, config, state dict) of a local diffusers AutoencoderKL / VQModel folder,
    loaded by diffusers from safetensors only (it also renames legacy attention keys)."""
    if not folder.is_dir():
        raise DeepauditError(
            f"{folder}: not a folder; pass a diffusers autoencoder folder (a pipeline's vae/ "
            "or movq/ with config.json and diffusion_pytorch_model.safetensors)"
        )
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        sub = [s for s in ("vae", "movq") if (folder / s / "config.json").is_file()]
        hint = f"; pass its {sub[0]}/ subfolder" if sub else ""
        raise DeepauditError(f"{folder}: not a diffusers model folder (no config.json){hint}")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DeepauditError(f"{cfg_path}: not valid JSON ({exc})") from None
    cls_name = config.get("_class_name") if isinstance(config, dict) else None
    if cls_name not in AE_CLASSES:
        raise DeepauditError(
            f"{folder}: a {cls_name or 'unnamed'} model; AEROBLADE needs an autoencoder "
            f"({' or '.join(AE_CLASSES)})"
        )
    stem = "diffusion_pytorch_model"
    if (folder / f"{stem}.safetensors").is_file() or (
        folder / f"{stem}.safetensors.index.json"
    ).is_file():
        variant = None
    elif (folder / f"{stem}.fp16.safetensors").is_file():
        variant = "fp16"
    else:
        raise DeepauditError(
            f"{folder}: no {stem}.safetensors (pickled .bin weights are not read; convert "
            "them to safetensors)"
        )
    import torch

    try:
        with _quiet_diffusers():
            model, info = _ae_class(cls_name).from_pretrained(
                folder,
                use_safetensors=True,
                local_files_only=True,
                variant=variant,
                torch_dtype=torch.float32,
                output_loading_info=True,
            )
    except (ValueError, OSError, RuntimeError, TypeError, KeyError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        text = text.split(" If you want to instead")[0].replace("Cannot load  because ", "")
        raise DeepauditError(f"{folder}: weights do not fit its config.json: {text}") from None
    for what in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = info.get(what) or []
        if keys:
            first = keys[0][0] if isinstance(keys[0], tuple) else keys[0]
            more = f" and {len(keys) - 1} more" if len(keys) > 1 else ""
            raise DeepauditError(
                f"{folder}: weights do not fit its config.json: {what.split('_')[0]} key "
                f"{first!r}{more}"
            )
    config = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
    return cls_name, config, model.state_dict()


def _backbone(path: Path) -> tuple[str, dict[str, Any]]:
    """Which backbone a file is, told by its keys: ("lpips", lins) or ("vgg", features)."""
    state = state_dict_of(read_checkpoint(path), path, "state_dict", "model")
    if any(re.fullmatch(r"lin\d+\.model\.\d+\.weight", k) for k in state):
        _check_keys(state, _lpips_lins(), path, "LPIPS-VGG v0.1 linear weights")
        return "lpips", state
    if any(k.startswith("features.") for k in state):
        feats = {k: v for k, v in state.items() if k.startswith("features.")}
        _check_keys(feats, _vgg16_features(), path, "torchvision's VGG-16")
        return "vgg", feats
    raise DeepauditError(
        f"{path}: neither LPIPS linear weights (lin0.model.1.weight ...) nor VGG-16 "
        f"(features.0.weight ...); first key {next(iter(state))!r}"
    )


@register_kind
class Aeroblade(ZooKind):
    name = "aeroblade"
    title = "AEROBLADE"
    paper = (
        "Ricker, Lukovnikov, Fischer: AEROBLADE: Training-Free Detection of Latent Diffusion "
        "Images Using Autoencoder Reconstruction Error. CVPR 2024"
    )
    source = "https://github.com/jonasricker/aeroblade"
    weights_at = (
        "nothing trained: the LDMs' own autoencoders (Hugging Face: CompVis/stable-diffusion-"
        "v1-1 vae/, stabilityai/stable-diffusion-2-base vae/, kandinsky-community/kandinsky-"
        "2-1 movq/), LPIPS lin weights from the lpips package (weights/v0.1/vgg.pth), VGG-16 "
        "from torchvision (vgg16-397923af.pth)"
    )
    licence = (
        "code: no licence file upstream (re-implemented here); weights: none of its own, each "
        "autoencoder keeps its model's licence (SD 1.x CreativeML OpenRAIL-M, SD 2.x CreativeML "
        "Open RAIL++-M, Kandinsky 2.1 Apache-2.0; check any other, e.g. FLUX.1 [dev] is "
        "non-commercial); LPIPS BSD-2-Clause; VGG-16 torchvision BSD-3-Clause"
    )
    non_commercial = False
    training_domain = (
        "none (training-free): images generated through one of the given autoencoders score "
        "high; paper: SD 1.1/1.5/2.1, Kandinsky 2.1, Midjourney 4/5/5.1 vs LAION photos"
    )
    files = (
        "one or more diffusers autoencoder folders (AutoencoderKL vae/ or VQModel movq/), "
        "with --backbone the LPIPS vgg.pth and torchvision's vgg16-397923af.pth"
    )
    published_threshold = 0.5  # none published (the paper reports AP); see score_meaning
    probabilistic = False  # sigmoid(-distance) ranks, but is no probability until calibrated
    preprocessing = Preprocessing(
        resize=None,
        crop=None,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        input_range=(
            "[-1, 1]: (x / 255 - 0.5) / 0.5, the whole image (sides centre-cropped to a "
            "multiple of the autoencoders' downsampling factor)"
        ),
    )
    score_meaning = (
        "decision value: minus the smallest LPIPS_2 distance between the image and its "
        "reconstruction over the autoencoders (higher = more synthetic); P = sigmoid of it, "
        "UNCALIBRATED: a distance is not a logit, and with distances of about 0.005-0.05 P "
        "stays just under 0.5 (no evidence) until `deepaudit detectors calibrate` fits a map"
    )

    def convert(self, weights: Sequence[Path], backbones: Sequence[Path]) -> Converted:
        state: dict[str, Any] = {}
        aes: list[dict[str, Any]] = []
        roles: dict[Path, str] = {}
        for i, folder in enumerate(weights):
            cls_name, config, ae_state = _read_autoencoder(folder)
            label = folder.name if folder.name not in ("vae", "movq") else folder.parent.name
            aes.append({"class": cls_name, "name": label, "config": config})
            state.update({f"autoencoders.{i}.{k}": v for k, v in ae_state.items()})
            roles[folder] = f"autoencoder {i} ({cls_name})"
        found: dict[str, tuple[Path, dict[str, Any]]] = {}
        for path in backbones:
            which, sd = _backbone(path)
            if which in found:
                raise DeepauditError(f"{path}: a second {which} file (first: {found[which][0]})")
            found[which] = (path, sd)
        for which, need in (("lpips", LPIPS_FILE), ("vgg", VGG_FILE)):
            if which not in found:
                raise DeepauditError(f"{self.name}: missing --backbone file: {need}")
        lp_path, lins = found["lpips"]
        vgg_path, feats = found["vgg"]
        state["lpips_lin.weight"] = lins[f"lin{LAYER - 1}.model.1.weight"]
        for k, v in feats.items():
            idx = int(k.split(".")[1])
            if idx < VGG_LAYERS:
                state[f"vgg.{idx}.{k.rsplit('.', 1)[1]}"] = v
        roles[lp_path] = "LPIPS v0.1 linear layers (lin1 used)"
        roles[vgg_path] = "VGG-16 features (features[0:9] used)"
        arch = {"autoencoders": aes, "lpips_layer": LAYER, "seed": SEED}
        return Converted(state=state, arch=arch, roles=roles)

    def build(self, arch: Mapping[str, Any]) -> Any:
        aes = arch.get("autoencoders") or []
        if not aes or any(a.get("class") not in AE_CLASSES for a in aes):
            raise DeepauditError(f"{self.name}: arch names no usable autoencoders")
        if int(arch.get("lpips_layer", LAYER)) != LAYER:
            raise DeepauditError(f"{self.name}: only LPIPS layer {LAYER} is implemented")
        return _build_module(aes, int(arch.get("seed", SEED)))

    def probability(self, raw: Any) -> Any:
        """sigmoid(-distance), deliberately uncalibrated: no constants are invented, the
        order is kept, and P sits at "no evidence" until a calibration is fitted."""
        import torch

        return torch.sigmoid(raw)


def _build_module(aes: Sequence[Mapping[str, Any]], seed: int) -> Any:
    import torch

    class AerobladeNet(torch.nn.Module):
        """(N, 3, H, W) in [-1, 1] -> (N,) minus the minimum LPIPS_2 reconstruction distance."""

        def __init__(self) -> None:
            super().__init__()
            with _quiet_diffusers():
                self.autoencoders = torch.nn.ModuleList(
                    _ae_class(a["class"]).from_config(dict(a["config"])) for a in aes
                )
            self.kinds = [a["class"] for a in aes]
            self.factor = max(2 ** (len(a["config"]["block_out_channels"]) - 1) for a in aes)
            self.seed = seed
            self.vgg = torch.nn.Sequential(
                OrderedDict(
                    [
                        ("0", torch.nn.Conv2d(3, 64, 3, padding=1)),
                        ("1", torch.nn.ReLU()),
                        ("2", torch.nn.Conv2d(64, 64, 3, padding=1)),
                        ("3", torch.nn.ReLU()),
                        ("4", torch.nn.MaxPool2d(2, 2)),
                        ("5", torch.nn.Conv2d(64, 128, 3, padding=1)),
                        ("6", torch.nn.ReLU()),
                        ("7", torch.nn.Conv2d(128, 128, 3, padding=1)),
                        ("8", torch.nn.ReLU()),
                    ]
                )
            )
            self.lpips_lin = torch.nn.Conv2d(128, 1, 1, bias=False)
            self.register_buffer(
                "shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False
            )
            self.register_buffer(
                "scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False
            )

        def features(self, x: torch.Tensor) -> torch.Tensor:
            f = self.vgg((x - self.shift) / self.scale)
            return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + LPIPS_EPS)

        def reconstruct(self, k: int, x: torch.Tensor) -> torch.Tensor:
            ae = self.autoencoders[k]
            if self.kinds[k] == "VQModel":
                rec = ae.decode(ae.encode(x).latents, force_not_quantize=True).sample
            else:
                gen = torch.Generator(device="cpu").manual_seed(self.seed)
                rec = ae.decode(ae.encode(x).latent_dist.sample(generator=gen)).sample
            # clamp to [0, 1] and truncate to 8 bits, as saving through to_pil_image does
            rec = torch.floor((rec / 2 + 0.5).clamp(0, 1) * 255) / 255
            return rec * 2 - 1

        def crop(self, x: torch.Tensor) -> torch.Tensor:
            h, w = x.shape[-2:]
            m = self.factor
            if h < m or w < m:
                raise DeepauditError(
                    f"aeroblade: a {h}x{w} image is smaller than the autoencoders' {m}-pixel grid"
                )
            top, left = (h % m) // 2, (w % m) // 2
            return x[..., top : top + h - h % m, left : left + w - w % m]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = []
            # one image at a time: full-resolution decoders are memory-heavy, and each image
            # gets its own seed-1 noise
            with torch.autocast(x.device.type, enabled=False):
                for img in self.crop(x.float()).split(1):
                    img = img.contiguous()
                    ref = self.features(img)
                    dist = [
                        self.lpips_lin((ref - self.features(self.reconstruct(k, img))) ** 2).mean()
                        for k in range(len(self.autoencoders))
                    ]
                    out.append(-torch.stack(dist).min())
            return torch.stack(out)

    return AerobladeNet()
