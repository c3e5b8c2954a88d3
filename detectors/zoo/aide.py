"""AIDE (Yan et al., ICLR 2025): two experts, low-level patch noise and CLIP semantics.

The authors' test pipeline (``data/datasets.py`` TestDataset, ``data/dct.py``,
``models/AIDE.py``), which the network below reproduces from the ``ToTensor`` image on:

- **patch expert**: the whole image (no resize) is cut into 32×32 patches at stride 16. Each
  patch is ranked by the log-magnitude of its 2-D DCT summed over six diagonal frequency bands
  (band ``i`` averaged over its coefficients and weighted ``2**i``), so the ranking runs from
  flat to busy. The two lowest- and the two highest-ranked patches pass through the all-pass
  DCT round trip, are resized to 256×256, ImageNet-normalised, filtered by 30 fixed SRM
  high-pass kernels, and go through two ResNet-50s with 30 input channels: ``model_min``
  sees the two flattest, ``model_max`` the two busiest; the four pooled features are averaged.
- **semantic expert**: the whole image resized to 256×256, re-normalised for CLIP, through the
  frozen OpenCLIP ConvNeXt-XXLarge trunk; its head LayerNorm without pooling, then average
  pooling and a linear map to 256.
- **head**: an MLP (2304 → 1024, GELU, → 2); P(synthetic) is the softmax of the second logit.

Resizes are torchvision tensor ``Resize([256, 256])``, bilinear *without* antialiasing: the
authors' pinned torchvision (0.12 in requirements.txt, 0.15.2 in docs/install.md) did not
antialias tensors; torchvision ≥ 0.17 would, and would change the semantic input.

The released checkpoints are ``main_finetune.py`` saves — ``{'model': state_dict, 'optimizer',
'epoch', 'scaler', 'args'}`` with ``args`` an ``argparse.Namespace``, the one class beyond plain
containers allowed when reading them. The model state holds the frozen ConvNeXt trunk; a
checkpoint without it takes the OpenCLIP file it was trained from as ``--backbone``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.detectors.zoo.base import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Converted,
    Preprocessing,
    ZooKind,
    read_checkpoint,
    register_kind,
    state_dict_of,
)
from deepaudit.errors import DeepauditError

__all__ = ["AIDE", "dct_matrix", "frequency_bands"]

PATCH = 32  # DCT patch side (data/dct.py window_size)
STRIDE = 16  # patch stride
SIDE = 256  # every network input is resized to SIDE × SIDE
GRADE_BANDS = 6  # diagonal frequency bands that rank the patches
TRUNK = "openclip_convnext_xxl."  # the ConvNeXt trunk's prefix in the authors' state dict
OPEN_CLIP_TRUNK = "visual.trunk."  # ... and in an OpenCLIP checkpoint
CONVNEXT_EPS = 1e-5  # timm's convnext_xxlarge LayerNorm eps (not in the weights)
_CHUNK = 4096  # patches ranked at a time: bounds memory on large photographs


def dct_matrix(n: int = PATCH) -> np.ndarray:
    """The orthonormal DCT-II matrix ``D`` (float32): a patch's spectrum is ``D @ x @ D.T``."""
    k = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    scale = np.where(k == 0, np.sqrt(1.0 / n), np.sqrt(2.0 / n))
    return (scale * np.cos((j + 0.5) * np.pi * k / n)).astype(np.float32)


def frequency_bands(n: int = PATCH, bands: int = GRADE_BANDS) -> np.ndarray:
    """``(bands, n, n)`` 0/1 masks: band ``i`` holds the coefficients (u, v) with
    ``2n/bands * i <= u + v <= 2n/bands * (i + 1)`` (both ends inclusive, as the authors'
    float bounds make them: a coefficient on a shared bound is in both bands)."""
    diag = np.add.outer(np.arange(n), np.arange(n))
    out = np.zeros((bands, n, n), np.float32)
    for i in range(bands):
        lo, hi = n * 2.0 / bands * i, n * 2.0 / bands * (i + 1)
        out[i] = (diag >= lo) & (diag <= hi)
    return out


@register_kind
class AIDE(ZooKind):
    name = "aide"
    title = "AIDE"
    paper = (
        "Yan, Li, Cai, Hao, Jiang, Hu, Xie: A Sanity Check for AI-generated Image Detection. "
        "ICLR 2025"
    )
    source = "https://github.com/shilinyan99/AIDE"
    weights_at = (
        "Google Drive, linked from the repository README's 'Model Zoo' section (a folder of "
        "checkpoints, and a second link with the ProGAN + SD v1.4 checkpoint, issue #12)"
    )
    licence = (
        "MIT (code: the repository's licence file, named LINCENSE; the checkpoints are "
        "published by the same README without other terms); the frozen ConvNeXt inside them "
        "is OpenCLIP's LAION-2B ConvNeXt-XXLarge, MIT"
    )
    non_commercial = False
    training_domain = (
        "as the imported checkpoint: GenImage SD v1.4 vs ImageNet real, or ProGAN vs LSUN "
        "(AIGCDetectBenchmark), or both; frozen semantic branch: OpenCLIP on LAION-2B"
    )
    files = (
        "the released checkpoint (a main_finetune.py save); only if it lacks the ConvNeXt "
        "trunk, --backbone the OpenCLIP convnext_xxlarge open_clip_pytorch_model.bin"
    )
    published_threshold = 0.5
    preprocessing = Preprocessing(
        resize=None,
        crop=None,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        input_range=(
            "[0, 1] (x / 255, torchvision ToTensor) of the whole image; inside the network: "
            "32x32 DCT patches at stride 16 ranked by band-weighted log spectrum, the 2 flattest "
            "and 2 busiest and the whole image each resized to 256x256 (tensor bilinear, no "
            "antialias), ImageNet Normalize (patches) and CLIP Normalize (whole image)"
        ),
    )
    score_meaning = "softmax P(synthetic) of the two logits (decision value: logit1 - logit0)"

    def convert(self, weights: Sequence[Path], backbones: Sequence[Path]) -> Converted:
        if len(weights) != 1 or len(backbones) > 1:
            raise DeepauditError(
                f"{self.name}: takes one checkpoint and at most one backbone ({self.files})"
            )
        path = weights[0]
        raw = read_checkpoint(path, allow=(argparse.Namespace,))
        state = state_dict_of(raw, path, "model")
        roles = {path: "weights"}
        has_trunk = any(k.startswith(TRUNK) for k in state)
        if backbones:
            if has_trunk:
                raise DeepauditError(
                    f"{path}: already holds the ConvNeXt trunk ({TRUNK}*); import it "
                    "without a backbone"
                )
            state.update(_trunk_of_open_clip(backbones[0]))
            roles[backbones[0]] = "backbone: OpenCLIP ConvNeXt-XXLarge image trunk"
        elif not has_trunk:
            raise DeepauditError(
                f"{path}: holds no ConvNeXt trunk ({TRUNK}*); pass the OpenCLIP convnext_xxlarge "
                "weights it was trained with (open_clip_pytorch_model.bin of a Hugging Face "
                "laion/CLIP-convnext_xxlarge-laion2B-s34B-b82K-augreg* model) as the backbone"
            )
        return Converted(state=state, arch=_arch_of(state, path), roles=roles)

    def build(self, arch: Mapping[str, Any]) -> Any:
        return _network(arch)


def _trunk_of_open_clip(path: Path) -> dict[str, Any]:
    """The ConvNeXt trunk of an OpenCLIP checkpoint, renamed as AIDE's state dict has it."""
    state = state_dict_of(read_checkpoint(path), path, "state_dict")
    trunk = {
        TRUNK + k[len(OPEN_CLIP_TRUNK) :]: v
        for k, v in state.items()
        if k.startswith(OPEN_CLIP_TRUNK)
    }
    if not trunk:
        raise DeepauditError(
            f"{path}: no {OPEN_CLIP_TRUNK}* weights: not an OpenCLIP ConvNeXt checkpoint"
        )
    return trunk


def _arch_of(state: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The ConvNeXt trunk's shape, read off its weights (the ResNets and head are fixed)."""

    def need(key: str) -> Any:
        if key not in state:
            raise DeepauditError(f"{path}: does not fit the aide architecture: missing key {key!r}")
        return state[key]

    depths, dims, kernels = [], [], []
    for i in range(4):
        first = need(f"{TRUNK}stages.{i}.blocks.0.conv_dw.weight")
        n = 1
        while f"{TRUNK}stages.{i}.blocks.{n}.conv_dw.weight" in state:
            n += 1
        depths.append(n)
        dims.append(int(first.shape[0]))
        kernels.append(int(first.shape[-1]))
    return {
        "convnext_depths": depths,
        "convnext_dims": dims,
        "convnext_kernels": kernels,
        "convnext_patch": int(need(f"{TRUNK}stem.0.weight").shape[-1]),
        "convnext_eps": CONVNEXT_EPS,
    }


def _network(arch: Mapping[str, Any]) -> Any:
    """AIDE's network on ``(N, 3, H, W)`` images in [0, 1] → ``(N,)`` logit differences."""
    import torch
    import torch.nn.functional as F
    import torchvision
    from timm.models.convnext import ConvNeXt
    from torch import nn

    def srm_resnet() -> nn.Module:
        # torchvision's ResNet-50 is the authors' (stride on the 3x3); only the stem takes
        # the 30 SRM residual maps. Its 1000-way fc is unused but in their checkpoints.
        net = torchvision.models.resnet50(weights=None)
        net.conv1 = nn.Conv2d(30, 64, kernel_size=7, stride=2, padding=3, bias=False)
        return net

    def pooled(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
        return torch.flatten(net.avgpool(x), 1)

    def to_side(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(
            x, size=(SIDE, SIDE), mode="bilinear", align_corners=False, antialias=False
        )

    class SRMFilters(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hpf = nn.Conv2d(3, 30, kernel_size=5, padding=2, bias=False)

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(2048 + 256, 1024)
            self.fc2 = nn.Linear(1024, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(F.gelu(self.fc1(x)))

    class AIDENet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hpf = SRMFilters()
            self.model_min = srm_resnet()
            self.model_max = srm_resnet()
            dims = [int(d) for d in arch["convnext_dims"]]
            self.openclip_convnext_xxl = ConvNeXt(
                depths=tuple(int(d) for d in arch["convnext_depths"]),
                dims=tuple(dims),
                kernel_sizes=tuple(int(k) for k in arch["convnext_kernels"]),
                patch_size=int(arch["convnext_patch"]),
                norm_eps=float(arch["convnext_eps"]),
                num_classes=0,
            )
            self.convnext_proj = nn.Sequential(nn.Linear(dims[-1], 256))
            self.fc = Head()
            consts = {
                "dct": torch.from_numpy(dct_matrix()),
                "bands": torch.from_numpy(frequency_bands()),
                "band_sizes": torch.from_numpy(frequency_bands().sum(axis=(1, 2))),
                "in_mean": torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                "in_std": torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                "clip_mean": torch.tensor(CLIP_MEAN).view(1, 3, 1, 1),
                "clip_std": torch.tensor(CLIP_STD).view(1, 3, 1, 1),
            }
            for k, v in consts.items():
                self.register_buffer(k, v, persistent=False)

        def grade(self, p: torch.Tensor) -> torch.Tensor:
            """Each patch's band-weighted mean log-magnitude spectrum (higher: busier)."""
            mag = torch.log(torch.abs(self.dct @ p @ self.dct.T) + 1)
            g = torch.zeros(p.shape[0], device=p.device)
            for i in range(GRADE_BANDS):
                g += 2**i * torch.sum(mag * self.bands[i] / self.band_sizes[i], dim=[1, 2, 3])
            return g

        def extreme_patches(self, img: torch.Tensor) -> torch.Tensor:
            """(4, 3, 32, 32): the flattest, busiest, second flattest, second busiest patch."""
            grid = img.unfold(1, PATCH, STRIDE).unfold(2, PATCH, STRIDE).permute(1, 2, 0, 3, 4)
            rows, cols = grid.shape[:2]
            step = max(1, _CHUNK // cols)
            grade = torch.cat(
                [
                    self.grade(grid[r : r + step].reshape(-1, 3, PATCH, PATCH))
                    for r in range(0, rows, step)
                ]
            )
            order = torch.sort(grade).indices.tolist()
            second = 1 if len(order) > 1 else 0
            picks = [order[0], order[-1], order[second], order[-1 - second]]
            sel = torch.stack([grid[i // cols, i % cols] for i in picks])
            spectrum = self.dct @ sel @ self.dct.T
            return self.dct.T @ spectrum @ self.dct  # the all-pass band's inverse DCT

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n, _, h, w = x.shape
            if h < PATCH or w < PATCH:
                raise DeepauditError(
                    f"AIDE needs images of at least {PATCH}x{PATCH} pixels (its DCT patches); "
                    f"got {w}x{h}"
                )
            with torch.autocast(x.device.type, enabled=False):  # the ranking needs fp32
                picks = torch.stack([self.extreme_patches(img) for img in x.float()])
            picks = (to_side(picks.flatten(0, 1)) - self.in_mean) / self.in_std
            srm = self.hpf.hpf(picks).unflatten(0, (n, 4))
            flat = pooled(self.model_min, torch.cat([srm[:, 0], srm[:, 2]]))
            busy = pooled(self.model_max, torch.cat([srm[:, 1], srm[:, 3]]))
            patch_feat = (flat[:n] + busy[:n] + flat[n:] + busy[n:]) / 4

            tokens = (to_side(x) - self.in_mean) / self.in_std
            # the authors re-normalise ImageNet-normalised pixels for CLIP in this form
            tokens = (
                tokens * (self.in_std / self.clip_std)
                + (self.in_mean - self.clip_mean) / self.clip_std
            )
            trunk = self.openclip_convnext_xxl
            feats = trunk.head.norm(trunk.forward_features(tokens))
            semantic = self.convnext_proj(torch.flatten(F.adaptive_avg_pool2d(feats, 1), 1))
            logits = self.fc(torch.cat([semantic, patch_feat], dim=1))
            return logits[:, 1] - logits[:, 0]

    return AIDENet()
