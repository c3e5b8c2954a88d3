"""UnivFD: the authors' head (fc_weights.pth) plus a CLIP in each of its three formats, made
here with random weights, imported, scored and checked against the paper's math written out
below (and, for the transformers format, against transformers' own CLIP)."""

from __future__ import annotations

import json
import math
import os
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepaudit.detectors import load_detector
from deepaudit.detectors.zoo import import_detector
from deepaudit.detectors.zoo.clip import read_torchscript_tensors
from deepaudit.errors import DeepauditError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# a tiny ViT with ViT-L/14's layout: 224 px, 32 px patches (7x7 grid), 128 wide (CLIP's rule
# width / 64 gives 2 heads), 2 blocks, 64-d embedding; a 64-wide, 1-block text tower
WIDTH, LAYERS, PATCH, IMAGE, EMBED = 128, 2, 32, 224, 64
TEXT_WIDTH, CONTEXT, VOCAB = 64, 8, 50


def _images() -> list[np.ndarray]:
    """Photos and noise of different sizes: larger than the crop, odd offsets, smaller
    (padded by CenterCrop), and greyscale."""
    from skimage import data

    rng = np.random.default_rng(0)
    return [
        data.astronaut(),
        data.chelsea(),
        data.camera()[::2, ::2],
        rng.integers(0, 256, (150, 200, 3), dtype=np.uint8),
        rng.integers(0, 256, (231, 300, 3), dtype=np.uint8),
    ]


# -- the authors' files, with random weights -------------------------------------------------
def _block(prefix: str, width: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    def w(*shape: int, scale: float) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    return {
        f"{prefix}attn.in_proj_weight": w(3 * width, width, scale=width**-0.5),
        f"{prefix}attn.in_proj_bias": w(3 * width, scale=0.1),
        f"{prefix}attn.out_proj.weight": w(width, width, scale=width**-0.5),
        f"{prefix}attn.out_proj.bias": w(width, scale=0.1),
        f"{prefix}ln_1.weight": 1 + w(width, scale=0.1),
        f"{prefix}ln_1.bias": w(width, scale=0.1),
        f"{prefix}mlp.c_fc.weight": w(4 * width, width, scale=width**-0.5),
        f"{prefix}mlp.c_fc.bias": w(4 * width, scale=0.1),
        f"{prefix}mlp.c_proj.weight": w(width, 4 * width, scale=(4 * width) ** -0.5),
        f"{prefix}mlp.c_proj.bias": w(width, scale=0.1),
        f"{prefix}ln_2.weight": 1 + w(width, scale=0.1),
        f"{prefix}ln_2.bias": w(width, scale=0.1),
    }


def openai_clip_state(seed: int = 0, dtype: torch.dtype = torch.float16) -> dict:
    """A random ``CLIP.state_dict()`` with OpenAI's names and layout (ViT image tower, text
    tower), in OpenAI's release dtype."""
    g = torch.Generator().manual_seed(seed)
    tokens = (IMAGE // PATCH) ** 2 + 1
    s = {
        "positional_embedding": torch.randn(CONTEXT, TEXT_WIDTH, generator=g) * 0.01,
        "text_projection": torch.randn(TEXT_WIDTH, EMBED, generator=g) * TEXT_WIDTH**-0.5,
        "logit_scale": torch.tensor(math.log(1 / 0.07)),
        "visual.class_embedding": torch.randn(WIDTH, generator=g) * WIDTH**-0.5,
        "visual.positional_embedding": torch.randn(tokens, WIDTH, generator=g) * WIDTH**-0.5,
        "visual.proj": torch.randn(WIDTH, EMBED, generator=g) * WIDTH**-0.5,
        "visual.conv1.weight": torch.randn(WIDTH, 3, PATCH, PATCH, generator=g) * 0.02,
        "visual.ln_pre.weight": 1 + 0.1 * torch.randn(WIDTH, generator=g),
        "visual.ln_pre.bias": 0.1 * torch.randn(WIDTH, generator=g),
    }
    for i in range(LAYERS):
        s |= _block(f"visual.transformer.resblocks.{i}.", WIDTH, g)
    s |= {
        "visual.ln_post.weight": 1 + 0.1 * torch.randn(WIDTH, generator=g),
        "visual.ln_post.bias": 0.1 * torch.randn(WIDTH, generator=g),
    }
    s |= _block("transformer.resblocks.0.", TEXT_WIDTH, g)
    s |= {
        "token_embedding.weight": 0.02 * torch.randn(VOCAB, TEXT_WIDTH, generator=g),
        "ln_final.weight": torch.ones(TEXT_WIDTH),
        "ln_final.bias": torch.zeros(TEXT_WIDTH),
    }
    return {k: v.to(dtype) for k, v in s.items()}


def save_torchscript(state: dict, path: Path) -> None:
    """A TorchScript archive whose module tree carries ``state`` (and the extra buffers of
    OpenAI's archives), as OpenAI's ``ViT-L-14.pt`` does."""
    root = torch.nn.Module()
    for key, t in state.items():
        *mods, leaf = key.split(".")
        m = root
        for name in mods:
            if name not in m._modules:
                m.add_module(name, torch.nn.Module())
            m = m._modules[name]
        m.register_parameter(leaf, torch.nn.Parameter(t, requires_grad=False))
    root.register_buffer("input_resolution", torch.tensor(IMAGE))
    root.register_buffer("context_length", torch.tensor(CONTEXT))
    root.register_buffer("vocab_size", torch.tensor(VOCAB))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated, and OpenAI's files use it
        torch.jit.save(torch.jit.script(root), str(path))


def save_head(path: Path, seed: int = 1, in_features: int = EMBED) -> dict:
    """``fc_weights.pth`` as the authors save it: ``model.fc.state_dict()``."""
    torch.manual_seed(seed)
    fc = torch.nn.Linear(in_features, 1)
    torch.nn.init.normal_(fc.weight, 0.0, 3 * in_features**-0.5)
    torch.nn.init.normal_(fc.bias, 0.0, 0.5)
    torch.save(fc.state_dict(), path)
    return {k: v.detach().clone() for k, v in fc.state_dict().items()}


def save_open_clip(folder: Path, *, quick_gelu: bool, safetensors: bool) -> tuple[Path, dict]:
    """open_clip's ``open_clip_pytorch_model.bin`` / ``open_clip_model.safetensors`` (float32,
    OpenAI's names) with the ``open_clip_config.json`` the Hub repositories carry."""
    folder.mkdir()
    state = openai_clip_state(seed=2, dtype=torch.float32)
    if safetensors:
        from safetensors.torch import save_file

        path = folder / "open_clip_model.safetensors"
        save_file(state, path)
    else:
        path = folder / "open_clip_pytorch_model.bin"
        torch.save(state, path)
    model_cfg: dict = {
        "embed_dim": EMBED,
        "vision_cfg": {"image_size": IMAGE, "layers": LAYERS, "width": WIDTH, "patch_size": PATCH},
        "text_cfg": {"context_length": CONTEXT, "vocab_size": VOCAB, "width": TEXT_WIDTH},
    }
    if quick_gelu:
        model_cfg["quick_gelu"] = True
    cfg = {"model_cfg": model_cfg, "preprocess_cfg": {"mean": CLIP_MEAN, "std": CLIP_STD}}
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    return path, state


def transformers_clip(folder: Path, *, vision_only: bool) -> torch.nn.Module:
    """A transformers CLIP folder (``save_pretrained``), 4 heads so the config must be read."""
    import transformers

    vision = dict(
        hidden_size=WIDTH,
        intermediate_size=4 * WIDTH,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        image_size=IMAGE,
        patch_size=PATCH,
        projection_dim=EMBED,
    )
    if vision_only:
        model = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(**vision))
    else:
        text = dict(
            hidden_size=TEXT_WIDTH,
            intermediate_size=4 * TEXT_WIDTH,
            num_hidden_layers=1,
            num_attention_heads=1,
            vocab_size=VOCAB,
            max_position_embeddings=CONTEXT,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
        cfg = transformers.CLIPConfig(vision_config=vision, text_config=text, projection_dim=EMBED)
        model = transformers.CLIPModel(cfg)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # livelier than transformers' init, so the parity check has teeth
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif p.ndim <= 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * p.shape[-1] ** -0.5)
    model.save_pretrained(folder)
    return model.eval()


# -- the paper's math, written out -----------------------------------------------------------
def centre_crop_inputs(images: list[np.ndarray]) -> torch.Tensor:
    """validate.py's transform: CenterCrop(224), ToTensor, Normalize(CLIP stats)."""
    from PIL import Image
    from torchvision import transforms

    tf = transforms.Compose(
        [
            transforms.CenterCrop(IMAGE),
            transforms.ToTensor(),
            transforms.Normalize(CLIP_MEAN, CLIP_STD),
        ]
    )
    return torch.stack([tf(Image.fromarray(im).convert("RGB")) for im in images])


def encode_image(x: torch.Tensor, s: dict, *, heads: int, quick_gelu: bool = True) -> torch.Tensor:
    """CLIP ViT ``encode_image`` on OpenAI-named float32 weights (``visual.`` dropped)."""
    n = x.shape[0]
    tok = F.conv2d(x, s["conv1.weight"], stride=PATCH).flatten(2).transpose(1, 2)
    tok = torch.cat([s["class_embedding"].expand(n, 1, -1), tok], 1) + s["positional_embedding"]
    tok = F.layer_norm(tok, (WIDTH,), s["ln_pre.weight"], s["ln_pre.bias"])
    d = WIDTH // heads
    for i in range(LAYERS):
        b = {k.split(f"resblocks.{i}.")[1]: v for k, v in s.items() if f"resblocks.{i}." in k}
        h = F.layer_norm(tok, (WIDTH,), b["ln_1.weight"], b["ln_1.bias"])
        q, k, v = (h @ b["attn.in_proj_weight"].T + b["attn.in_proj_bias"]).chunk(3, dim=-1)
        q, k, v = (t.reshape(n, -1, heads, d).transpose(1, 2) for t in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1) @ v
        att = att.transpose(1, 2).reshape(n, -1, WIDTH)
        tok = tok + att @ b["attn.out_proj.weight"].T + b["attn.out_proj.bias"]
        h = F.layer_norm(tok, (WIDTH,), b["ln_2.weight"], b["ln_2.bias"])
        h = h @ b["mlp.c_fc.weight"].T + b["mlp.c_fc.bias"]
        h = h * torch.sigmoid(1.702 * h) if quick_gelu else F.gelu(h)
        tok = tok + h @ b["mlp.c_proj.weight"].T + b["mlp.c_proj.bias"]
    cls = F.layer_norm(tok[:, 0], (WIDTH,), s["ln_post.weight"], s["ln_post.bias"])
    return cls @ s["proj"]


def visual_of(state: dict) -> dict:
    return {k[7:]: v.float() for k, v in state.items() if k.startswith("visual.")}


def check_parity(out: Path, images: list[np.ndarray], features: torch.Tensor, head: dict) -> None:
    want = (features @ head["weight"].T + head["bias"]).reshape(-1).double().numpy()
    det = load_detector(out)
    spec = det.input_spec()
    raw = np.concatenate([det.decision_values(spec.prepare(im)) for im in images])
    np.testing.assert_allclose(raw, want, atol=1e-4, rtol=0)
    np.testing.assert_allclose(det.predict_proba(images), 1 / (1 + np.exp(-want)), atol=1e-5)
    assert np.ptp(want) > 0.5  # the images score differently, so parity means something


# -- the formats -----------------------------------------------------------------------------
@pytest.mark.parametrize("archive", [False, True], ids=["state-dict", "torchscript"])
def test_openai_format_imports_and_scores_as_the_paper(tmp_path, archive):
    state = openai_clip_state()
    backbone = tmp_path / "ViT-L-14.pt"
    if archive:
        save_torchscript(state, backbone)
    else:
        torch.save(state, backbone)
    head = save_head(tmp_path / "fc_weights.pth")
    out = import_detector(
        "univfd", [tmp_path / "fc_weights.pth"], tmp_path / "det", backbones=[backbone]
    )

    images = _images()
    with torch.no_grad():
        feats = encode_image(centre_crop_inputs(images), visual_of(state), heads=WIDTH // 64)
    check_parity(out, images, feats, head)

    config = json.loads((out / "config.json").read_text())
    imported = config["imported"]
    assert imported["kind"] == "univfd" and imported["licence"].startswith("MIT")
    assert imported["preprocessing"]["resize"] is None and imported["preprocessing"]["crop"] == 224
    assert tuple(imported["preprocessing"]["mean"]) == CLIP_MEAN
    roles = {i["file"]: i["role"] for i in imported["inputs"]}
    assert roles["fc_weights.pth"].startswith("weights")
    fmt = "openai-torchscript" if archive else "openai"
    assert roles["ViT-L-14.pt"] == f"backbone (CLIP ViT image encoder, {fmt} format)"
    assert config["params"]["arch"]["clip"]["activation"] == "quick_gelu"


def test_a_training_checkpoint_of_theirs_gives_the_same_head(tmp_path):
    """train.py saves ``{'model': CLIPModel.state_dict(), 'optimizer', 'total_steps'}``; its
    ``fc.*`` is the head, and its ``model.*`` CLIP copy is not used."""
    state = openai_clip_state()
    torch.save(state, tmp_path / "ViT-L-14.pt")
    head = save_head(tmp_path / "fc_weights.pth")
    model = {f"model.{k}": v for k, v in list(state.items())[:3]} | {
        f"fc.{k}": v for k, v in head.items()
    }
    ckpt = {"model": model, "optimizer": {"state": {}, "param_groups": []}, "total_steps": 7}
    torch.save(ckpt, tmp_path / "model_epoch_best.pth")
    bb = [tmp_path / "ViT-L-14.pt"]
    released = import_detector(
        "univfd", [tmp_path / "fc_weights.pth"], tmp_path / "a", backbones=bb
    )
    trained = import_detector(
        "univfd", [tmp_path / "model_epoch_best.pth"], tmp_path / "b", backbones=bb
    )
    dets = [load_detector(released), load_detector(trained)]
    images = _images()[:2]
    a, b = (d.predict_proba(images) for d in dets)
    # the same head; each detector picks its engine on its own (torch or ONNX Runtime, by
    # measured speed), and their float sums may differ in the last bits (seen in CI: 7e-8)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_torchscript_tensors_are_those_torch_jit_reads(tmp_path):
    state = openai_clip_state()
    save_torchscript(state, tmp_path / "ViT-L-14.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = torch.jit.load(str(tmp_path / "ViT-L-14.pt")).state_dict()
    got = read_torchscript_tensors(tmp_path / "ViT-L-14.pt")
    assert list(got) == list(want)
    assert all(torch.equal(got[k], want[k]) and got[k].dtype == want[k].dtype for k in want)


def test_torchscript_archive_with_foreign_globals_is_refused_unrun(tmp_path):
    flag = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.makedirs, (str(flag),))

    archive = tmp_path / "ViT-L-14.pt"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ViT-L-14/data.pkl", pickle.dumps({"visual": Payload()}, protocol=2))
        z.writestr("ViT-L-14/constants.pkl", pickle.dumps((), protocol=2))
    save_head(tmp_path / "fc_weights.pth")
    with pytest.raises(DeepauditError) as err:
        import_detector(
            "univfd", [tmp_path / "fc_weights.pth"], tmp_path / "det", backbones=[archive]
        )
    assert str(err.value).startswith(f"{archive}: refused") and "os.makedirs" in str(err.value)
    assert "\n" not in str(err.value)
    assert not flag.exists() and not (tmp_path / "det").exists()


@pytest.mark.parametrize(
    ("quick_gelu", "safetensors"),
    [(True, False), (True, True), (False, False)],
    ids=["bin-quickgelu", "safetensors-quickgelu", "bin-gelu"],
)
def test_open_clip_format_follows_its_config(tmp_path, quick_gelu, safetensors):
    backbone, state = save_open_clip(
        tmp_path / "oc", quick_gelu=quick_gelu, safetensors=safetensors
    )
    head = save_head(tmp_path / "fc_weights.pth", seed=4)
    out = import_detector(
        "univfd", [tmp_path / "fc_weights.pth"], tmp_path / "det", backbones=[backbone]
    )
    images = _images()
    with torch.no_grad():
        feats = encode_image(
            centre_crop_inputs(images), visual_of(state), heads=WIDTH // 64, quick_gelu=quick_gelu
        )
    check_parity(out, images, feats, head)
    arch = json.loads((out / "config.json").read_text())["params"]["arch"]
    assert arch["backbone_format"] == "open_clip"
    assert arch["clip"]["activation"] == ("quick_gelu" if quick_gelu else "gelu")


@pytest.mark.parametrize("vision_only", [False, True], ids=["CLIPModel", "VisionWithProjection"])
def test_transformers_folder_scores_as_transformers_clip(tmp_path, vision_only):
    model = transformers_clip(tmp_path / "hf", vision_only=vision_only)
    head = save_head(tmp_path / "fc_weights.pth", seed=5)
    out = import_detector(
        "univfd", [tmp_path / "fc_weights.pth"], tmp_path / "det", backbones=[tmp_path / "hf"]
    )
    images = _images()
    with torch.no_grad():
        pooled = model.vision_model(pixel_values=centre_crop_inputs(images)).pooler_output
        feats = model.visual_projection(pooled)
    check_parity(out, images, feats, head)
    clip = json.loads((out / "config.json").read_text())["params"]["arch"]["clip"]
    assert clip["heads"] == 4 and clip["width"] == WIDTH and clip["image_size"] == IMAGE


# -- refusals --------------------------------------------------------------------------------
def _refused(tmp_path: Path, head: Path, backbones: list[Path]) -> str:
    with pytest.raises(DeepauditError) as err:
        import_detector("univfd", [head], tmp_path / "det", backbones=backbones)
    msg = str(err.value)
    assert "\n" not in msg
    assert not (tmp_path / "det").exists() and not (tmp_path / "det.part").exists()
    return msg


def test_head_of_the_wrong_width_is_refused_naming_the_key(tmp_path):
    torch.save(openai_clip_state(), tmp_path / "ViT-B-16.pt")
    save_head(tmp_path / "fc_weights.pth", in_features=EMBED // 2)
    msg = _refused(tmp_path, tmp_path / "fc_weights.pth", [tmp_path / "ViT-B-16.pt"])
    assert msg.startswith(f"{tmp_path / 'fc_weights.pth'}: 'fc.weight'")
    assert f"{EMBED // 2}-d" in msg and f"{EMBED}-d" in msg


def test_foreign_head_checkpoint_is_refused_naming_the_first_bad_key(tmp_path):
    torch.save(openai_clip_state(), tmp_path / "ViT-L-14.pt")
    torch.save({"model": {"conv1.weight": torch.zeros(8, 3, 3, 3)}}, tmp_path / "other.pth")
    msg = _refused(tmp_path, tmp_path / "other.pth", [tmp_path / "ViT-L-14.pt"])
    assert "missing key 'fc.weight'" in msg and "unexpected key 'fc.conv1.weight'" in msg


def test_backbone_of_the_wrong_architecture_is_refused_naming_it_and_the_key(tmp_path):
    state = openai_clip_state()
    del state["visual.ln_post.weight"]
    torch.save(state, tmp_path / "ViT-L-14.pt")
    save_head(tmp_path / "fc_weights.pth")
    msg = _refused(tmp_path, tmp_path / "fc_weights.pth", [tmp_path / "ViT-L-14.pt"])
    assert msg.startswith(f"{tmp_path / 'ViT-L-14.pt'}: ") and "'ln_post.weight'" in msg


def test_missing_backbone_says_what_is_needed(tmp_path):
    save_head(tmp_path / "fc_weights.pth")
    msg = _refused(tmp_path, tmp_path / "fc_weights.pth", [])
    assert "missing backbone" in msg and "ViT-L-14.pt" in msg and "--backbone" in msg

    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    msg = _refused(tmp_path, tmp_path / "fc_weights.pth", [tmp_path / "hf"])
    assert msg.startswith(f"{tmp_path / 'hf'}: no model.safetensors")


def test_the_detector_cannot_be_made_without_the_authors_files():
    from deepaudit.detectors import create_detector

    with pytest.raises(DeepauditError, match="detectors import univfd"):
        create_detector("imported-univfd")


def test_a_non_clip_backbone_is_refused(tmp_path):
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3)}, tmp_path / "resnet.pth")
    save_head(tmp_path / "fc_weights.pth")
    msg = _refused(tmp_path, tmp_path / "fc_weights.pth", [tmp_path / "resnet.pth"])
    assert msg.startswith(f"{tmp_path / 'resnet.pth'}: not a CLIP checkpoint")


# -- used by benchmarks/zoo.py: the authors' files and the reference, for any images ---------
def _set_size(small: bool) -> None:
    """The tiny test CLIP, or ViT-L/14 itself (1024 wide, 24 blocks, 14 px patches, 768-d)."""
    global WIDTH, LAYERS, PATCH, EMBED
    WIDTH, LAYERS, PATCH, EMBED = (128, 2, 32, 64) if small else (1024, 24, 14, 768)


def authors_files(root: Path, small: bool = False):
    _set_size(small)
    root.mkdir(parents=True, exist_ok=True)
    torch.save(openai_clip_state(), root / "ViT-L-14.pt")
    save_head(root / "fc_weights.pth", in_features=EMBED)
    return [root / "fc_weights.pth"], [root / "ViT-L-14.pt"]


def reference_decisions(weights, backbones, images) -> np.ndarray:
    state = visual_of(torch.load(backbones[0], weights_only=True))
    _set_size(state["conv1.weight"].shape[-1] == 32)
    head = torch.load(weights[0], weights_only=True)
    with torch.no_grad():
        feats = encode_image(centre_crop_inputs(images), state, heads=WIDTH // 64)
    return (feats @ head["weight"].T + head["bias"]).reshape(-1).double().numpy()


def test_a_backbone_not_proven_to_be_openais_is_flagged(tmp_path, monkeypatch):
    from deepaudit.detectors.zoo import zoo_kind
    from deepaudit.media import file_sha256

    torch.save(openai_clip_state(), tmp_path / "ViT-L-14.pt")
    save_head(tmp_path / "fc_weights.pth")
    args = ([tmp_path / "fc_weights.pth"],)
    kw = {"backbones": [tmp_path / "ViT-L-14.pt"]}
    out = import_detector("univfd", *args, tmp_path / "a", **kw)
    ident = load_detector(out).identity()
    assert ident["warnings"] and "not OpenAI's ViT-L-14.pt" in ident["warnings"][0]
    # the same file, were its hash the published one: recognised, no warning
    kind = zoo_kind("univfd")
    known = {file_sha256(tmp_path / "ViT-L-14.pt"): "OpenAI's ViT-L-14.pt"}
    monkeypatch.setattr(type(kind), "known_files", known)
    ident = load_detector(import_detector("univfd", *args, tmp_path / "b", **kw)).identity()
    assert ident["warnings"] == []
    assert [i["known_as"] for i in ident["inputs"]] == [None, "OpenAI's ViT-L-14.pt"]
