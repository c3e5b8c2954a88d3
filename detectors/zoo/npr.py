"""NPR (Tan et al., CVPR 2024): a shallow ResNet over neighbouring-pixel residuals.

Up-sampling in a generator copies or interpolates each low-resolution pixel into a small
block, so the differences between neighbouring pixels inside a 2×2 block carry the
generator's trace. NPR feeds the network ``x - up(down(x))`` with nearest-neighbour
down-sampling by 2 and up-sampling back (``F.interpolate`` nearest, scale 0.5 then 2,
``recompute_scale_factor=True``): each pixel minus the top-left pixel of its 2×2 block,
scaled by 2/3. The network is torchvision's ResNet-50 cut after ``layer2`` (3 and 4
bottlenecks) with a 3×3 stride-2 stem and ``fc1`` of 512 → 1.

The authors' network cannot subtract the residual of an odd-sized image (the down/up copy
is one row or column short); their README fixes that by dropping the last row and column
of odd-sized inputs, and so does the network here. Images are scored whole (their README's
AIGCDetectBenchmark setting, no_resize and no_crop): ToTensor + ImageNet Normalize.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deepaudit.detectors.zoo.base import (
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

__all__ = ["NPR", "neighbouring_pixel_residual"]

# bottlenecks in layer1 and layer2 of the authors' resnet50 (layer3/4 are never built)
BLOCKS = (3, 4)


def neighbouring_pixel_residual(x: Any) -> Any:
    """Each pixel minus the top-left pixel of its 2×2 block (what nearest down-sampling by 2
    keeps and nearest up-sampling copies back); ``x``'s sides must be even."""
    n, c, h, w = x.shape
    blocks = x.reshape(n, c, h // 2, 2, w // 2, 2)
    return (blocks - blocks[:, :, :, :1, :, :1]).reshape(n, c, h, w)


def build_network(blocks: Sequence[int] = BLOCKS) -> Any:
    import torch
    from torch import nn
    from torchvision.models.resnet import Bottleneck

    def stage(inplanes: int, planes: int, count: int, stride: int) -> nn.Sequential:
        out = planes * Bottleneck.expansion
        down = nn.Sequential(
            nn.Conv2d(inplanes, out, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out),
        )
        layers = [Bottleneck(inplanes, planes, stride, down)]
        layers += [Bottleneck(out, planes) for _ in range(1, count)]
        return nn.Sequential(*layers)

    class NPRNet(nn.Module):
        """The authors' ``resnet50(num_classes=1)``: parameter names as in their checkpoint."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = stage(64, 64, blocks[0], 1)
            self.layer2 = stage(256, 128, blocks[1], 2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc1 = nn.Linear(512, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, w = x.shape[-2:]
            if h < 2 or w < 2:
                raise DeepauditError(f"npr: an image of {h}×{w} pixels has no 2×2 block")
            x = x[:, :, : h - h % 2, : w - w % 2]
            # the authors write NPR*2.0/3.0: the same rounding as theirs
            x = self.conv1(neighbouring_pixel_residual(x) * 2.0 / 3.0)
            x = self.maxpool(self.relu(self.bn1(x)))
            x = self.layer2(self.layer1(x))
            return self.fc1(torch.flatten(self.avgpool(x), 1)).reshape(-1)

    return NPRNet()


@register_kind
class NPR(ZooKind):
    name = "npr"
    title = "NPR"
    paper = (
        "Tan, Liu, Zhao, Wei, Gu, Liu, Wei: Rethinking the Up-Sampling Operations in "
        "CNN-based Generative Network for Generalizable Deepfake Detection. CVPR 2024"
    )
    source = "https://github.com/chuangchuangtan/NPR-DeepfakeDetection"
    weights_at = (
        "in the repository itself: NPR.pth (the README's test command) and "
        "model_epoch_last_3090.pth (the ProGAN 4-class checkpoint behind the README's tables)"
    )
    licence = (
        "none granted: the repository has no LICENSE file (code and weights all rights "
        "reserved; parts borrowed from CNNDetection are CC BY-NC-SA 4.0); no commercial use"
    )
    non_commercial = True
    training_domain = (
        "ProGAN images of 4 LSUN categories (car, cat, chair, horse) vs. LSUN real, "
        "CNNDetection's training set; trained on 224² crops of 256²-resized images"
    )
    files = "the released checkpoint: NPR.pth or model_epoch_last_3090.pth"
    published_threshold = 0.5
    onnx_export = True
    preprocessing = Preprocessing(resize=None, crop=None, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    score_meaning = (
        "sigmoid of the network's logit (odd image sides lose their last row/column first)"
    )

    def convert(self, weights: Sequence[Path], backbones: Sequence[Path]) -> Converted:
        if len(weights) != 1 or backbones:
            raise DeepauditError(
                f"{self.name}: takes exactly one checkpoint (NPR.pth or "
                "model_epoch_last_3090.pth) and no backbone"
            )
        path = weights[0]
        # model_epoch_last_3090.pth is the bare state dict; a training checkpoint nests it
        # under 'model' (with the optimizer and step count beside it)
        state = state_dict_of(read_checkpoint(path), path, "model", "state_dict")
        return Converted(state=state, arch={"blocks": list(BLOCKS)}, roles={path: "weights"})

    def build(self, arch: Mapping[str, Any]) -> Any:
        return build_network(tuple(arch.get("blocks", BLOCKS)))
