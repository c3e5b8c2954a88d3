"""Pieces of the independent forward passes the zoo tests check imported detectors against:
written from the papers with torch.nn.functional on raw state dicts, in float64."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def apply_batch_norm(w: dict[str, torch.Tensor], t: torch.Tensor, n: str) -> torch.Tensor:
    return F.batch_norm(
        t, w[f"{n}.running_mean"], w[f"{n}.running_var"], w[f"{n}.weight"], w[f"{n}.bias"]
    )


def bottleneck_stages(
    w: dict[str, torch.Tensor], y: torch.Tensor, stages: tuple[tuple[str, int, int], ...]
) -> torch.Tensor:
    """ResNet v1.5 bottleneck stages ``(name, blocks, stride)``: 1×1, 3×3 (with the stride),
    1×1, a projection shortcut on each stage's first block."""
    for layer, blocks, stride in stages:
        for i in range(blocks):
            p, s = f"{layer}.{i}", stride if i == 0 else 1
            out = F.relu(apply_batch_norm(w, F.conv2d(y, w[f"{p}.conv1.weight"]), f"{p}.bn1"))
            out = F.conv2d(out, w[f"{p}.conv2.weight"], stride=s, padding=1)
            out = F.relu(apply_batch_norm(w, out, f"{p}.bn2"))
            out = apply_batch_norm(w, F.conv2d(out, w[f"{p}.conv3.weight"]), f"{p}.bn3")
            if i == 0:
                y = F.conv2d(y, w[f"{p}.downsample.0.weight"], stride=s)
                y = apply_batch_norm(w, y, f"{p}.downsample.1")
            y = F.relu(out + y)
    return y


def to_tensor_normalized(image: np.ndarray, mean, std) -> torch.Tensor:
    """The authors' test transform without resize or crop: PIL RGB, ToTensor, Normalize."""
    from PIL import Image
    from torchvision import transforms

    t = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    return t(Image.fromarray(image).convert("RGB")).unsqueeze(0).double()


def mixed_images(seed: int) -> list[np.ndarray]:
    """Photos and noise of several sizes: even, odd sides, greyscale."""
    import skimage.data

    rng = np.random.default_rng(seed)
    return [
        np.ascontiguousarray(skimage.data.astronaut()[::4, ::4]),  # 128×128
        np.ascontiguousarray(skimage.data.chelsea()[60:211, 100:325]),  # 151×225: odd sides
        rng.integers(0, 256, (97, 130, 3), dtype=np.uint8),  # odd height
        np.ascontiguousarray(skimage.data.camera()[::4, ::4]),  # greyscale 128×128
    ]
