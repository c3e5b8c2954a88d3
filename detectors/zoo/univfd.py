"""UnivFD (Ojha, Li, Lee, CVPR 2023): a linear probe on frozen CLIP ViT-L/14 image features.

The paper's point is that a feature space never trained to tell real from fake generalises
to unseen generators better than a trained detector, so the network is OpenAI's CLIP image
encoder as released (``encode_image``: the class token after ``ln_post``, times the visual
projection, 768-d) and one ``nn.Linear(768, 1)`` trained on ProGAN vs. LSUN. The authors
release only that head, ``pretrained_weights/fc_weights.pth`` (``model.fc.state_dict()``:
``weight`` (1, 768) and ``bias`` (1,)); CLIP comes from the user's own copy, in OpenAI,
open_clip or transformers format (:mod:`~deepaudit.detectors.zoo.clip`).

Test time (``validate.py``): no resize, ``CenterCrop(224)`` (smaller images padded with
zeros), ToTensor, Normalize with CLIP's mean and std; P(fake) is the logit's sigmoid and the
reported accuracy uses 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from deepaudit.detectors.zoo.base import (
    CLIP_MEAN,
    CLIP_STD,
    Converted,
    Preprocessing,
    ZooKind,
    check_state,
    read_checkpoint,
    register_kind,
    state_dict_of,
)
from deepaudit.detectors.zoo.clip import ClipVisionConfig, build_clip_visual, read_clip_visual
from deepaudit.errors import DeepauditError

__all__ = ["UnivFD"]

BACKBONE_HELP = (
    "the CLIP ViT-L/14 image encoder (--backbone): OpenAI's ViT-L-14.pt (the file openai/CLIP's "
    "clip.load fetches), an open_clip checkpoint of OpenAI's ViT-L-14 weights, or a "
    "transformers CLIP folder such as openai/clip-vit-large-patch14; nothing is downloaded"
)


@register_kind
class UnivFD(ZooKind):
    name = "univfd"
    title = "UnivFD"
    paper = (
        "Ojha, Li, Lee: Towards Universal Fake Image Detectors that Generalize Across "
        "Generative Models. CVPR 2023"
    )
    source = "https://github.com/WisconsinAIVision/UniversalFakeDetect"
    weights_at = (
        "the head: pretrained_weights/fc_weights.pth in the authors' repository; the backbone: "
        "OpenAI's CLIP ViT-L/14 (ViT-L-14.pt, listed in openai/CLIP's clip/clip.py with its "
        "sha256 b8cca3fd…a03836 in the URL), or its transformers conversion "
        "openai/clip-vit-large-patch14 on the Hugging Face Hub"
    )
    licence = (
        "MIT (code and fc_weights.pth); CLIP ViT-L/14 backbone: OpenAI's, MIT repository, "
        "model card scopes it to research use"
    )
    non_commercial = False
    training_domain = (
        "ProGAN images of 20 LSUN categories vs. LSUN real (CNNDetection's training set, 2019), "
        "linear probe on frozen CLIP ViT-L/14 features; GAN era, evaluated on unseen diffusion "
        "and autoregressive generators"
    )
    files = "fc_weights.pth, plus " + BACKBONE_HELP
    published_threshold = 0.5
    onnx_export = True
    # openai/CLIP's clip.py downloads ViT-L-14.pt from a URL that carries its sha256 and
    # checks it: the one backbone file whose identity can be proven by hash
    known_files: ClassVar[dict[str, str]] = {
        "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836": (
            "OpenAI's ViT-L-14.pt (the sha256 openai/CLIP publishes in its download URL)"
        ),
    }
    unverified_warning = (
        "the CLIP backbone is not OpenAI's ViT-L-14.pt by its published sha256; the head was "
        "trained on OpenAI's CLIP ViT-L/14 features, so another CLIP of the same shape (e.g. a "
        "LAION one) gives meaningless scores. An open_clip or transformers conversion of "
        "OpenAI's weights is fine, but cannot be checked by hash"
    )
    preprocessing = Preprocessing(resize=None, crop=224, mean=CLIP_MEAN, std=CLIP_STD)
    score_meaning = "sigmoid of the linear head's logit on CLIP image features"

    def convert(self, weights: Sequence[Path], backbones: Sequence[Path]) -> Converted:
        if len(weights) != 1:
            raise DeepauditError(
                f"{self.name}: takes one linear-head checkpoint (fc_weights.pth), "
                f"got {len(weights)} files"
            )
        if not backbones:
            raise DeepauditError(f"{self.name}: missing backbone: needs {BACKBONE_HELP}")
        if len(backbones) != 1:
            raise DeepauditError(f"{self.name}: takes one backbone, got {len(backbones)}")
        head_path, backbone = weights[0], backbones[0]
        import torch

        head = _head_state(head_path)
        visual = read_clip_visual(backbone)
        # the encoder is checked against its own file, so a bad key names the right input
        # (on the meta device: only names and shapes are compared, nothing is allocated)
        with torch.device("meta"):
            encoder = build_clip_visual(visual.config)
        check_state(encoder, visual.state, backbone, "CLIP ViT encoder")
        fc = head.get("fc.weight")
        if fc is not None and fc.ndim == 2 and fc.shape[1] != visual.config.output_dim:
            raise DeepauditError(
                f"{head_path}: 'fc.weight' takes {fc.shape[1]}-d features but {backbone.name} "
                f"gives {visual.config.output_dim}-d ones (UnivFD's head is for CLIP ViT-L/14)"
            )
        state = {f"visual.{k}": v for k, v in visual.state.items()} | head
        return Converted(
            state=state,
            arch={"clip": visual.config.to_json(), "backbone_format": visual.format},
            roles={
                head_path: "weights (linear head)",
                backbone: f"backbone (CLIP ViT image encoder, {visual.format} format)",
            },
        )

    def build(self, arch: Mapping[str, Any]) -> Any:
        import torch

        if "clip" not in arch:
            raise DeepauditError(
                f"{self.name}: no encoder shape; make the detector with "
                f"`deepaudit detectors import {self.name}` from the authors' files"
            )
        config = ClipVisionConfig.from_json(arch["clip"])

        class Net(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.visual = build_clip_visual(config)
                self.fc = torch.nn.Linear(config.output_dim, 1)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.fc(self.visual(x)).reshape(-1)

        return Net()

    def preprocessing_for(self, arch: Mapping[str, Any]) -> Preprocessing:
        # the paper's crop is ViT-L/14's 224; an encoder for another size gets its own
        size = int(arch.get("clip", {}).get("image_size", 224))
        return Preprocessing(resize=None, crop=size, mean=CLIP_MEAN, std=CLIP_STD)


def _head_state(path: Path) -> dict[str, Any]:
    """``fc.*`` float32 tensors from the released ``fc_weights.pth`` (``weight``, ``bias``)
    or from a training checkpoint of theirs (``{'model': ...}`` holding ``fc.*``)."""
    sd = state_dict_of(read_checkpoint(path), path, "model", "state_dict")
    if "fc.weight" in sd:
        return {k: v.float() for k, v in sd.items() if k.startswith("fc.")}
    return {f"fc.{k}": v.float() for k, v in sd.items()}
