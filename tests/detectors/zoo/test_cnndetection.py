"""CNNDetection imported from its authors' checkpoint format scores like the paper's network.

The checkpoint is made here with random weights as the authors release theirs
(``blur_jpg_prob0.5.pth``): ``{'model': state_dict}`` of a ResNet-50 with one output, keys
as torchvision's. The reference forward pass is written with torch.nn.functional on that raw
state dict, and the preprocessing as in the authors' demo.py (no resize, no crop: PIL RGB,
ToTensor, Normalize), so images of different sizes are scored whole.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepaudit.detectors import load_detector
from deepaudit.detectors.zoo import import_detector
from deepaudit.detectors.zoo.base import file_sha256
from deepaudit.errors import DeepauditError
from tests.detectors.zoo.reference import (
    apply_batch_norm,
    bottleneck_stages,
    mixed_images,
    to_tensor_normalized,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
BLOCKS = (("layer1", 64, 3, 1), ("layer2", 128, 4, 2), ("layer3", 256, 6, 2), ("layer4", 512, 3, 2))


def authors_state(seed: int = 0, outputs: int = 1) -> dict[str, torch.Tensor]:
    """A ResNet-50 state dict with ``outputs`` logits, in the authors' (torchvision's) key
    order, filled with random weights and random batch-norm statistics."""
    import torchvision

    g = torch.Generator().manual_seed(seed)
    sd = torchvision.models.resnet50(weights=None, num_classes=outputs).state_dict()
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(5000, dtype=torch.int64)
        elif k == "fc.weight":
            sd[k] = 0.02 * torch.randn(v.shape, generator=g)
        elif v.ndim == 4:  # convolutions
            sd[k] = torch.randn(v.shape, generator=g) * (2.0 / v[0].numel()) ** 0.5
        elif k.endswith("bn3.weight"):  # small residual branches keep 16 blocks in range
            sd[k] = 0.2 * torch.rand(v.shape, generator=g)
        elif k.endswith(("running_var", ".weight")):
            sd[k] = 0.5 + torch.rand(v.shape, generator=g)
        else:  # biases and running means
            sd[k] = 0.1 * torch.randn(v.shape, generator=g)
    return sd


def reference_logit(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """ResNet-50 (v1.5: stride on the 3×3 convolution) in float64 on the raw state dict."""
    w = {k: v.double() for k, v in sd.items()}
    y = F.relu(apply_batch_norm(w, F.conv2d(x, w["conv1.weight"], stride=2, padding=3), "bn1"))
    y = F.max_pool2d(y, 3, stride=2, padding=1)
    y = bottleneck_stages(w, y, tuple((n, b, s) for n, _, b, s in BLOCKS))
    return (y.mean(dim=(2, 3)) @ w["fc.weight"].T + w["fc.bias"]).reshape(-1)


def demo_input(image: np.ndarray) -> torch.Tensor:
    """demo.py's transform without --crop."""
    return to_tensor_normalized(image, MEAN, STD)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return mixed_images(3)


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cnndetection-release")
    sd = authors_state()
    torch.save({"model": sd}, root / "blur_jpg_prob0.5.pth")
    return {"state": sd, "path": root / "blur_jpg_prob0.5.pth"}


def test_imported_cnndetection_matches_the_papers_network(released, images, tmp_path):
    out = import_detector("cnndetection", [released["path"]], tmp_path / "cnn")
    det = load_detector(out, device="cpu")
    cfg = json.loads((out / "config.json").read_text())["imported"]
    assert cfg["kind"] == "cnndetection" and cfg["non_commercial"] is True
    assert "CC BY-NC-SA 4.0" in cfg["licence"]
    assert cfg["inputs"][0]["sha256"] == file_sha256(released["path"])
    assert cfg["preprocessing"]["resize"] is None and cfg["preprocessing"]["crop"] is None

    ref = np.array([float(reference_logit(released["state"], demo_input(im))) for im in images])
    raw = np.array([det.decision_values(det.input_spec().prepare(im))[0] for im in images])
    assert np.abs(raw - ref).max() <= 1e-4, (raw, ref)
    assert np.abs(ref).max() > 0.1 and np.ptp(ref) > 0.05  # the scores tell images apart
    probs = det.predict_proba(images)
    assert np.abs(probs - 1 / (1 + np.exp(-ref))).max() <= 1e-4


def test_wrong_architecture_is_refused_and_nothing_written(tmp_path):
    torch.save({"model": authors_state(outputs=2)}, tmp_path / "two.pth")
    with pytest.raises(DeepauditError) as err:
        import_detector("cnndetection", [tmp_path / "two.pth"], tmp_path / "out")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(tmp_path / "two.pth"))
    assert "'fc.weight' has shape (2, 2048), the architecture needs (1, 2048)" in msg

    # NPR's truncated network: no layer3/layer4, a 512 -> 1 head named fc1
    sd = {k: v for k, v in authors_state().items() if not k.startswith(("layer3", "layer4"))}
    sd["fc1.weight"], sd["fc1.bias"] = sd.pop("fc.weight")[:, :512], sd.pop("fc.bias")
    torch.save(sd, tmp_path / "NPR.pth")
    with pytest.raises(DeepauditError) as err:
        import_detector("cnndetection", [tmp_path / "NPR.pth"], tmp_path / "out")
    assert "missing key 'layer3.0.conv1.weight'" in str(err.value)
    assert "unexpected key 'fc1.weight' and 1 more" in str(err.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.part").exists()


def test_whole_model_pickle_and_wrong_inputs_are_refused(released, tmp_path):
    import torchvision

    torch.save(torchvision.models.resnet50(weights=None, num_classes=1), tmp_path / "m.pth")
    with pytest.raises(DeepauditError, match=r"m\.pth: refused: .*torchvision\.models\.resnet"):
        import_detector("cnndetection", [tmp_path / "m.pth"], tmp_path / "out")
    with pytest.raises(DeepauditError, match="exactly one checkpoint and no backbone"):
        import_detector(
            "cnndetection", [released["path"]], tmp_path / "out", backbones=[released["path"]]
        )
    assert not (tmp_path / "out").exists()


# -- used by benchmarks/zoo.py: the authors' file and the reference, for any images ---------
def authors_files(root, small: bool = False):
    """``blur_jpg_prob0.5.pth`` with random weights (ResNet-50: the size is fixed)."""
    root.mkdir(parents=True, exist_ok=True)
    torch.save({"model": authors_state()}, root / "blur_jpg_prob0.5.pth")
    return [root / "blur_jpg_prob0.5.pth"], []


def reference_decisions(weights, backbones, images) -> np.ndarray:
    sd = torch.load(weights[0], weights_only=True)["model"]
    return np.array([float(reference_logit(sd, demo_input(im))) for im in images])
