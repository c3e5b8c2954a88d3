"""NPR imported from its authors' checkpoint files scores like the paper's network.

The checkpoints are made here with random weights, in the two layouts the authors publish:
``model_epoch_last_3090.pth`` (the bare state dict their test.py loads) and ``NPR.pth`` (a
training checkpoint: the state dict under 'model', beside the optimizer and step count).
The reference forward pass below is written from the paper with torch.nn.functional on the
raw state dict, and the preprocessing with PIL + torchvision transforms as in their test code.
"""

from __future__ import annotations

import argparse
import json
from collections import OrderedDict

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


def conv(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    fan_in = int(np.prod(shape[1:]))
    return torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5


def batch_norm(state: OrderedDict, name: str, c: int, g: torch.Generator) -> None:
    state[f"{name}.weight"] = 0.5 + torch.rand(c, generator=g)
    state[f"{name}.bias"] = 0.1 * torch.randn(c, generator=g)
    state[f"{name}.running_mean"] = 0.1 * torch.randn(c, generator=g)
    state[f"{name}.running_var"] = 0.5 + torch.rand(c, generator=g)
    state[f"{name}.num_batches_tracked"] = torch.tensor(1234, dtype=torch.int64)


def authors_state(seed: int = 0) -> OrderedDict:
    """Random weights named and ordered as the authors' ``resnet50(num_classes=1)``: a 3×3
    stem, layer1 (3 bottlenecks) and layer2 (4), then ``fc1`` of 512 → 1."""
    g = torch.Generator().manual_seed(seed)
    sd: OrderedDict = OrderedDict()
    sd["conv1.weight"] = conv((64, 3, 3, 3), g)
    batch_norm(sd, "bn1", 64, g)
    inplanes = 64
    for layer, planes, blocks in (("layer1", 64, 3), ("layer2", 128, 4)):
        for i in range(blocks):
            p = f"{layer}.{i}"
            sd[f"{p}.conv1.weight"] = conv((planes, inplanes, 1, 1), g)
            batch_norm(sd, f"{p}.bn1", planes, g)
            sd[f"{p}.conv2.weight"] = conv((planes, planes, 3, 3), g)
            batch_norm(sd, f"{p}.bn2", planes, g)
            sd[f"{p}.conv3.weight"] = conv((planes * 4, planes, 1, 1), g)
            batch_norm(sd, f"{p}.bn3", planes * 4, g)
            if i == 0:
                sd[f"{p}.downsample.0.weight"] = conv((planes * 4, inplanes, 1, 1), g)
                batch_norm(sd, f"{p}.downsample.1", planes * 4, g)
            inplanes = planes * 4
    sd["fc1.weight"] = 0.05 * torch.randn(1, 512, generator=g)
    sd["fc1.bias"] = 0.1 * torch.randn(1, generator=g)
    return sd


def reference_logit(sd: OrderedDict, x: torch.Tensor) -> torch.Tensor:
    """The paper's network in float64: NPR = x - up(down(x)) (nearest, factor 2), scaled by
    2/3, into the truncated ResNet-50; odd sides lose their last row/column first."""
    w = {k: v.double() for k, v in sd.items()}
    h, wd = x.shape[-2:]
    x = x[:, :, : h - h % 2, : wd - wd % 2]
    half = F.interpolate(x, scale_factor=0.5, mode="nearest", recompute_scale_factor=True)
    back = F.interpolate(half, scale_factor=2.0, mode="nearest", recompute_scale_factor=True)
    y = F.conv2d((x - back) * 2.0 / 3.0, w["conv1.weight"], stride=2, padding=1)
    y = F.max_pool2d(F.relu(apply_batch_norm(w, y, "bn1")), 3, stride=2, padding=1)
    y = bottleneck_stages(w, y, (("layer1", 3, 1), ("layer2", 4, 2)))
    return (y.mean(dim=(2, 3)) @ w["fc1.weight"].T + w["fc1.bias"]).reshape(-1)


def authors_input(image: np.ndarray) -> torch.Tensor:
    """Their test transform without resize/crop."""
    return to_tensor_normalized(image, MEAN, STD)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return mixed_images(7)


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> dict:
    """Both published layouts of one random network, as the authors' code writes them."""
    root = tmp_path_factory.mktemp("npr-release")
    sd = authors_state()
    torch.save(sd, root / "model_epoch_last_3090.pth")
    params = [v.clone().requires_grad_() for v in sd.values() if v.is_floating_point()]
    opt = torch.optim.Adam(params, lr=2e-4, betas=(0.9, 0.999))
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    torch.save(
        {"model": sd, "optimizer": opt.state_dict(), "total_steps": 3090},
        root / "NPR.pth",
    )
    return {"state": sd, "bare": root / "model_epoch_last_3090.pth", "nested": root / "NPR.pth"}


def test_imported_npr_matches_the_papers_network(released, images, tmp_path):
    out = import_detector("npr", [released["bare"]], tmp_path / "npr")
    det = load_detector(out, device="cpu")
    cfg = json.loads((out / "config.json").read_text())["imported"]
    assert cfg["kind"] == "npr" and cfg["non_commercial"] is True
    assert "no LICENSE" in cfg["licence"]
    assert cfg["inputs"][0]["sha256"] == file_sha256(released["bare"])
    assert cfg["preprocessing"]["resize"] is None and cfg["preprocessing"]["crop"] is None

    ref = np.array([float(reference_logit(released["state"], authors_input(im))) for im in images])
    raw = np.array([det.decision_values(det.input_spec().prepare(im))[0] for im in images])
    assert np.abs(raw - ref).max() <= 1e-4, (raw, ref)
    assert np.abs(ref).max() > 0.1 and np.ptp(ref) > 0.05  # the scores tell images apart
    probs = det.predict_proba(images)
    assert np.abs(probs - 1 / (1 + np.exp(-ref))).max() <= 1e-4


def test_training_checkpoint_layout_imports_to_the_same_weights(released, tmp_path):
    # a checkpoint saved from a DataParallel model has 'module.' before every name
    parallel = {"model": {f"module.{k}": v for k, v in released["state"].items()}}
    torch.save(parallel, tmp_path / "parallel.pth")
    folders = [
        import_detector("npr", [path], tmp_path / name)
        for name, path in (
            ("a", released["bare"]),
            ("b", released["nested"]),
            ("c", tmp_path / "parallel.pth"),
        )
    ]
    cfg = [json.loads((d / "config.json").read_text())["imported"] for d in folders]
    assert len({c["weights_sha256"] for c in cfg}) == 1


def test_odd_sides_lose_their_last_row_and_column(released, images, tmp_path):
    det = load_detector(import_detector("npr", [released["bare"]], tmp_path / "n"), device="cpu")
    odd = images[1]  # 151×225
    whole, trimmed = det.predict_proba([odd, np.ascontiguousarray(odd[:-1, :-1])])
    assert whole == pytest.approx(trimmed, abs=1e-6)
    # NPR sees only differences inside 2×2 blocks: block-constant images all look the same
    rng = np.random.default_rng(1)
    flat = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8).repeat(2, 0).repeat(2, 1)]
    flat.append(np.full((80, 100, 3), 200, np.uint8))
    a, b = det.predict_proba(flat)
    assert a == pytest.approx(b, abs=1e-6)


def test_wrong_architecture_is_refused_and_nothing_written(released, tmp_path):
    import torchvision

    cnn = torchvision.models.resnet50(weights=None, num_classes=1).state_dict()
    torch.save({"model": cnn}, tmp_path / "blur_jpg_prob0.5.pth")
    with pytest.raises(DeepauditError) as err:
        import_detector("npr", [tmp_path / "blur_jpg_prob0.5.pth"], tmp_path / "out")
    msg = str(err.value)
    assert "\n" not in msg and "blur_jpg_prob0.5.pth" in msg
    assert "missing key 'fc1.weight'" in msg and "unexpected key 'conv1.weight'" not in msg
    assert "unexpected key 'layer3.0.conv1.weight'" in msg

    sd = OrderedDict(released["state"])
    sd["conv1.weight"] = torch.zeros(64, 3, 7, 7)
    torch.save(sd, tmp_path / "stem7.pth")
    with pytest.raises(DeepauditError, match=r"'conv1.weight' has shape \(64, 3, 7, 7\)"):
        import_detector("npr", [tmp_path / "stem7.pth"], tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.part").exists()


def test_foreign_pickle_and_wrong_inputs_are_refused(released, tmp_path):
    torch.save({"model": released["state"], "opt": argparse.Namespace(lr=2e-4)}, tmp_path / "x.pth")
    with pytest.raises(DeepauditError, match=r"x\.pth: refused: .*argparse\.Namespace"):
        import_detector("npr", [tmp_path / "x.pth"], tmp_path / "out")
    with pytest.raises(DeepauditError, match=r"exactly one checkpoint .* and no backbone"):
        import_detector("npr", [released["bare"]], tmp_path / "out", backbones=[released["bare"]])
    with pytest.raises(DeepauditError, match=r"NPR\.pth: no such file"):
        import_detector("npr", [tmp_path / "NPR.pth"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- used by benchmarks/zoo.py: the authors' file and the reference, for any images ---------
def authors_files(root, small: bool = False):
    """``model_epoch_last_3090.pth`` with random weights (NPR's size is fixed)."""
    root.mkdir(parents=True, exist_ok=True)
    torch.save(authors_state(), root / "model_epoch_last_3090.pth")
    return [root / "model_epoch_last_3090.pth"], []


def reference_decisions(weights, backbones, images) -> np.ndarray:
    sd = torch.load(weights[0], weights_only=True)
    out = []
    for im in images:
        h, w = im.shape[:2]
        out.append(float(reference_logit(sd, authors_input(im[: h - h % 2, : w - w % 2]))))
    return np.array(out)
