"""CNNDetection (Wang et al., CVPR 2020): a ResNet-50 with one logit, trained on ProGAN.

The authors release ``blur_jpg_prob0.5.pth`` and ``blur_jpg_prob0.1.pth`` (trained with
blur + JPEG augmentation at probability 0.5 / 0.1), each ``{'model': state_dict}`` of
torchvision's ResNet-50 layout with ``fc`` of 2048 → 1. At test time the image is never
resized (``eval.py`` sets ``no_resize``) and, as in ``demo.py``'s default and the README's
recommended "no crop" evaluation (``eval.py --no_crop``), not cropped either; then ToTensor
+ ImageNet Normalize. (The paper's own table used a 224 centre crop; docs/zoo.md gives both.)
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

__all__ = ["CNNDetection"]


@register_kind
class CNNDetection(ZooKind):
    name = "cnndetection"
    title = "CNNDetection"
    paper = (
        "Wang, Wang, Zhang, Owens, Efros: CNN-generated images are surprisingly easy to "
        "spot... for now. CVPR 2020"
    )
    source = "https://github.com/PeterWang512/CNNDetection"
    weights_at = (
        "Dropbox links in the repository's weights/download_weights.sh "
        "(blur_jpg_prob0.5.pth, blur_jpg_prob0.1.pth)"
    )
    licence = "CC BY-NC-SA 4.0 (code and weights; non-commercial)"
    non_commercial = True
    training_domain = (
        "ProGAN images of 20 LSUN categories vs. LSUN real (2019; GAN era), 224² random "
        "crops with blur + JPEG augmentation"
    )
    files = "the released checkpoint, e.g. blur_jpg_prob0.5.pth"
    published_threshold = 0.5
    onnx_export = True
    preprocessing = Preprocessing(resize=None, crop=None, mean=IMAGENET_MEAN, std=IMAGENET_STD)

    def convert(self, weights: Sequence[Path], backbones: Sequence[Path]) -> Converted:
        if len(weights) != 1 or backbones:
            raise DeepauditError(f"{self.name}: takes exactly one checkpoint and no backbone")
        path = weights[0]
        state = state_dict_of(read_checkpoint(path), path, "model", "state_dict")
        return Converted(state=state, arch={"fc_out": 1}, roles={path: "weights"})

    def build(self, arch: Mapping[str, Any]) -> Any:
        import torch
        import torchvision

        class Net(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.resnet = torchvision.models.resnet50(weights=None, num_classes=1)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.resnet(x).reshape(-1)

            # the authors' keys are torchvision's, without the ``resnet.`` prefix
            def state_dict(self, *a: Any, **kw: Any) -> Any:
                return self.resnet.state_dict(*a, **kw)

            def load_state_dict(self, state: Any, strict: bool = True, **kw: Any) -> Any:
                return self.resnet.load_state_dict(state, strict=strict, **kw)

        return Net()
