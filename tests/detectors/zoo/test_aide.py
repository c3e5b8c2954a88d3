"""AIDE (ICLR 2025): a checkpoint saved as the authors' main_finetune.py saves it imports, and
scores like an independent forward pass written here from the paper's description."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

TRUNK = "openclip_convnext_xxl."
DEPTHS, DIMS = (1, 2, 1, 1), (8, 16, 24, 32)  # a tiny ConvNeXt; the real one is XXLarge
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


# -- the authors' checkpoint, made with random weights -----------------------------------
def _randomise(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Random values everywhere (also the norms, layer scales and BN statistics that the
    default init leaves at identity), at scales that keep deep activations finite."""
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "running_var" or leaf == "gamma" or (leaf == "weight" and t.ndim == 1):
                t.copy_(torch.rand(t.shape, generator=gen) * 0.8 + 0.4)
            elif leaf in ("bias", "running_mean"):
                t.copy_(torch.randn(t.shape, generator=gen) * 0.1)
            else:
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=gen) / fan_in**0.5)


def _authors_state(gen: torch.Generator) -> dict[str, torch.Tensor]:
    """AIDE_Model.state_dict() keys and shapes: timm's ConvNeXt trunk (as open_clip builds it),
    two ResNet-50s with a 30-channel stem, the SRM conv, the projection and the MLP head."""
    import torchvision
    from timm.models.convnext import ConvNeXt

    state: dict[str, torch.Tensor] = {}
    hpf = torch.randn(30, 1, 5, 5, generator=gen).repeat(1, 3, 1, 1) / 5
    state["hpf.hpf.weight"] = hpf
    for branch in ("model_min", "model_max"):
        net = torchvision.models.resnet50(weights=None)
        net.conv1 = torch.nn.Conv2d(30, 64, 7, 2, 3, bias=False)
        _randomise(net, gen)
        state.update({f"{branch}.{k}": v for k, v in net.state_dict().items()})
    trunk = ConvNeXt(depths=DEPTHS, dims=DIMS, num_classes=0, norm_eps=1e-5)
    _randomise(trunk, gen)
    state.update({TRUNK + k: v for k, v in trunk.state_dict().items()})
    extra = {
        "convnext_proj.0.weight": (256, DIMS[-1]),
        "convnext_proj.0.bias": (256,),
        "fc.fc1.weight": (1024, 2304),
        "fc.fc1.bias": (1024,),
        "fc.fc2.weight": (2, 1024),
        "fc.fc2.bias": (2,),
    }
    for k, shape in extra.items():
        scale = 0.1 if len(shape) == 1 else 1 / shape[1] ** 0.5
        state[k] = torch.randn(shape, generator=gen) * scale
    return state


def _save_like_main_finetune(state: dict[str, torch.Tensor], path: Path) -> Path:
    """utils.save_model: model, optimizer, epoch, scaler and the argparse args."""
    p = torch.nn.Parameter(torch.zeros(4))
    opt = torch.optim.AdamW([p], lr=5e-4, weight_decay=0.0)
    p.grad = torch.ones(4)
    opt.step()
    args = argparse.Namespace(
        model="AIDE",
        batch_size=32,
        blr=5e-4,
        epochs=5,
        resnet_path="pretrained_ckpts/resnet50.pth",
        convnext_path="pretrained_ckpts/open_clip_pytorch_model.bin",
        opt_betas=None,
        smoothing=0.1,
        eval=False,
    )
    scaler = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5}
    scaler |= {"growth_interval": 2000, "_growth_tracker": 0}
    ckpt = {"model": state, "optimizer": opt.state_dict(), "epoch": 4, "scaler": scaler}
    torch.save(ckpt | {"args": args}, path)
    return path


@pytest.fixture(scope="module")
def authors_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    gen = torch.Generator().manual_seed(12)
    state = _authors_state(gen)
    path = tmp_path_factory.mktemp("aide") / "progan_train.pth"
    return _save_like_main_finetune(state, path), state


# -- an independent forward pass, from the paper -------------------------------------------
def _extreme_patches(img: np.ndarray) -> list[np.ndarray]:
    """The paper's patch selection on one [0, 1] (3, H, W) image, in float64 with scipy's
    DCT: 32x32 patches at stride 16, ranked by sum_i 2**i * mean over band i of
    log(|DCT| + 1) (channels summed); flattest, busiest, second flattest, second busiest."""
    from scipy.fft import dctn

    u = np.add.outer(np.arange(32), np.arange(32))
    bands = [(u >= 64 / 6 * i) & (u <= 64 / 6 * (i + 1)) for i in range(6)]
    patches, grades = [], []
    for top in range(0, img.shape[1] - 31, 16):
        for left in range(0, img.shape[2] - 31, 16):
            p = img[:, top : top + 32, left : left + 32].astype(np.float64)
            mag = np.log(np.abs(dctn(p, norm="ortho", axes=(1, 2))) + 1)
            grades.append(sum(2**i * mag[:, b].sum() / b.sum() for i, b in enumerate(bands)))
            patches.append(p)
    order = np.argsort(grades, kind="stable")
    second = 1 if len(order) > 1 else 0
    return [patches[i] for i in (order[0], order[-1], order[second], order[-1 - second])]


def _resnet(sd: dict, pre: str, x: torch.Tensor) -> torch.Tensor:
    def bn(y: torch.Tensor, k: str) -> torch.Tensor:
        w, b = sd[k + ".weight"], sd[k + ".bias"]
        return F.batch_norm(y, sd[k + ".running_mean"], sd[k + ".running_var"], w, b, eps=1e-5)

    x = F.relu(bn(F.conv2d(x, sd[pre + "conv1.weight"], stride=2, padding=3), pre + "bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    for layer, (blocks, stride) in enumerate(zip((3, 4, 6, 3), (1, 2, 2, 2), strict=True), 1):
        for b in range(blocks):
            q, s = f"{pre}layer{layer}.{b}.", stride if b == 0 else 1
            y = F.relu(bn(F.conv2d(x, sd[q + "conv1.weight"]), q + "bn1"))
            y = F.relu(bn(F.conv2d(y, sd[q + "conv2.weight"], stride=s, padding=1), q + "bn2"))
            y = bn(F.conv2d(y, sd[q + "conv3.weight"]), q + "bn3")
            if b == 0:
                x = bn(F.conv2d(x, sd[q + "downsample.0.weight"], stride=s), q + "downsample.1")
            x = F.relu(y + x)
    return x.mean(dim=(2, 3))


def _convnext(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """ConvNeXt (Liu et al. 2022): patchify stem, per stage LN + 2x2 downsampling conv, blocks
    of depthwise 7x7, LN, MLP 4x with GELU, layer scale, residual; then the head LN, pooled."""

    def ln(y: torch.Tensor, k: str) -> torch.Tensor:  # over channels, (N, C, H, W)
        y = y.permute(0, 2, 3, 1)
        y = F.layer_norm(y, y.shape[-1:], sd[k + ".weight"], sd[k + ".bias"], eps=1e-5)
        return y.permute(0, 3, 1, 2)

    t = TRUNK
    x = ln(F.conv2d(x, sd[t + "stem.0.weight"], sd[t + "stem.0.bias"], stride=4), t + "stem.1")
    for i, depth in enumerate(DEPTHS):
        if i:
            d = f"{t}stages.{i}.downsample."
            x = F.conv2d(ln(x, d + "0"), sd[d + "1.weight"], sd[d + "1.bias"], stride=2)
        for j in range(depth):
            q = f"{t}stages.{i}.blocks.{j}."
            dw, dw_bias = sd[q + "conv_dw.weight"], sd[q + "conv_dw.bias"]
            y = F.conv2d(x, dw, dw_bias, padding=3, groups=x.shape[1])
            y = ln(y, q + "norm").permute(0, 2, 3, 1)
            y = F.gelu(F.linear(y, sd[q + "mlp.fc1.weight"], sd[q + "mlp.fc1.bias"]))
            y = F.linear(y, sd[q + "mlp.fc2.weight"], sd[q + "mlp.fc2.bias"])
            x = x + y.permute(0, 3, 1, 2) * sd[q + "gamma"].view(1, -1, 1, 1)
    return ln(x, t + "head.norm").mean(dim=(2, 3))


def _reference(sd: dict, image: np.ndarray) -> float:
    """logit(synthetic) - logit(real) for one RGB uint8 image, as the authors' test
    pipeline feeds it: ToTensor, patches, tensor Resize 256 (no antialias), Normalize."""
    from PIL import Image
    from torchvision import transforms

    to_256 = transforms.Resize([256, 256], antialias=False)
    imagenet = transforms.Normalize(*IMAGENET)
    clip = transforms.Normalize(*CLIP)
    img = transforms.functional.to_tensor(Image.fromarray(image).convert("RGB"))
    patches = [torch.from_numpy(p).float() for p in _extreme_patches(img.numpy())]
    srm = [F.conv2d(imagenet(to_256(p))[None], sd["hpf.hpf.weight"], padding=2) for p in patches]
    low = (
        _resnet(sd, "model_min.", srm[0])
        + _resnet(sd, "model_max.", srm[1])
        + _resnet(sd, "model_min.", srm[2])
        + _resnet(sd, "model_max.", srm[3])
    ) / 4
    sem = _convnext(sd, clip(to_256(img))[None])
    sem = F.linear(sem, sd["convnext_proj.0.weight"], sd["convnext_proj.0.bias"])
    h = F.gelu(F.linear(torch.cat([sem, low], 1), sd["fc.fc1.weight"], sd["fc.fc1.bias"]))
    logits = F.linear(h, sd["fc.fc2.weight"], sd["fc.fc2.bias"])[0]
    return float(logits[1] - logits[0])


def _images() -> list[np.ndarray]:
    import skimage.data

    rng = np.random.default_rng(3)
    return [
        np.ascontiguousarray(skimage.data.astronaut()[:200, 40:300]),  # 200x260 photo
        rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),  # one patch only
        np.ascontiguousarray(skimage.data.camera()[::6, ::5][:64, :96]),  # 64x96 grey
    ]


# -- tests ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_imported_aide_scores_like_the_papers_forward_pass(authors_file, tmp_path):
    from deepaudit.detectors import load_detector
    from deepaudit.detectors.zoo import import_detector

    path, state = authors_file
    out = import_detector("aide", [path], tmp_path / "aide")
    det = load_detector(out, device="cpu")
    images = _images()
    with torch.no_grad():
        want = np.array([_reference(state, im) for im in images])
    got = np.concatenate([det.decision_values(det.input_spec().prepare(im)) for im in images])
    probs = det.predict_proba(images)

    assert np.abs(want).max() > 0.1  # the comparison is not between two near-zero outputs
    assert np.abs(got - want).max() <= 1e-4
    assert np.abs(probs - 1 / (1 + np.exp(-want))).max() <= 1e-4
    assert det.threshold == 0.5


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    from timm.models.convnext import ConvNeXt

    from deepaudit.detectors.zoo import import_detector
    from deepaudit.errors import DeepauditError

    trunk = ConvNeXt(depths=DEPTHS, dims=DIMS, num_classes=0)
    # AIDE's trunk and SRM filters, but a lone 3-channel stem where its two ResNet-50s go
    state = {TRUNK + k: v for k, v in trunk.state_dict().items()}
    state["hpf.hpf.weight"] = torch.zeros(30, 3, 5, 5)
    state["model_min.conv1.weight"] = torch.zeros(64, 3, 7, 7)
    path = tmp_path / "other.pth"
    torch.save({"model": state, "epoch": 1}, path)
    dest = tmp_path / "out"
    with pytest.raises(DeepauditError) as err:
        import_detector("aide", [path], dest)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert "does not fit the aide architecture" in msg and "'model_min.bn1.weight'" in msg
    assert not dest.exists() and not dest.with_name("out.part").exists()


def test_a_checkpoint_without_the_convnext_trunk_needs_the_open_clip_backbone(tmp_path):
    from deepaudit.detectors.zoo import import_detector
    from deepaudit.errors import DeepauditError

    path = tmp_path / "heads_only.pth"
    torch.save({"model": {"fc.fc2.weight": torch.zeros(2, 1024)}}, path)
    with pytest.raises(DeepauditError) as err:
        import_detector("aide", [path], tmp_path / "out")
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert "open_clip_pytorch_model.bin" in msg and "backbone" in msg
    assert not (tmp_path / "out").exists()


def test_a_pickled_object_other_than_the_training_args_is_refused(tmp_path):
    from fractions import Fraction

    from deepaudit.detectors.zoo import import_detector
    from deepaudit.errors import DeepauditError

    path = tmp_path / "foreign.pth"
    torch.save({"model": {"fc.fc2.weight": torch.zeros(2, 1024)}, "args": Fraction(1, 3)}, path)
    with pytest.raises(DeepauditError, match=r"refused.*fractions\.Fraction") as err:
        import_detector("aide", [path], tmp_path / "out")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_the_convnext_trunk_can_come_from_the_open_clip_file_it_was_trained_from(tmp_path):
    from timm.models.convnext import ConvNeXt

    from deepaudit.detectors.zoo import zoo_kind
    from deepaudit.errors import DeepauditError

    trunk = ConvNeXt(depths=DEPTHS, dims=DIMS, num_classes=0).state_dict()
    clip_file = tmp_path / "open_clip_pytorch_model.bin"
    open_clip = {"visual.trunk." + k: v for k, v in trunk.items()}
    open_clip |= {"visual.head.proj.weight": torch.zeros(16, 32), "logit_scale": torch.ones(())}
    torch.save(open_clip, clip_file)
    heads = tmp_path / "heads.pth"
    torch.save({"model": {"fc.fc2.weight": torch.zeros(2, 1024)}}, heads)

    conv = zoo_kind("aide").convert([heads], [clip_file])
    assert set(conv.state) == {"fc.fc2.weight"} | {TRUNK + k for k in trunk}
    assert all(torch.equal(conv.state[TRUNK + k], v) for k, v in trunk.items())
    assert conv.arch["convnext_depths"] == list(DEPTHS)
    assert conv.arch["convnext_dims"] == list(DIMS)
    assert conv.roles[clip_file].startswith("backbone")

    full = tmp_path / "full.pth"
    torch.save({"model": {TRUNK + k: v for k, v in trunk.items()}}, full)
    with pytest.raises(DeepauditError, match="already holds the ConvNeXt trunk"):
        zoo_kind("aide").convert([full], [clip_file])


# -- used by benchmarks/zoo.py: the authors' file and the reference, for any images ---------
def authors_files(root: Path, small: bool = False):
    """The training checkpoint with a tiny ConvNeXt trunk (the ResNet-50 pair is full size;
    the real ConvNeXt-XXLarge has ~850M parameters and needs ~3.6 GB: not benchmarked here)."""
    root.mkdir(parents=True, exist_ok=True)
    state = _authors_state(torch.Generator().manual_seed(12))
    return [_save_like_main_finetune(state, root / "progan_train.pth")], []


def reference_decisions(weights, backbones, images) -> np.ndarray:
    with torch.serialization.safe_globals([argparse.Namespace]):
        sd = torch.load(weights[0], weights_only=True)["model"]
    with torch.no_grad():
        return np.array([_reference(sd, im) for im in images])
