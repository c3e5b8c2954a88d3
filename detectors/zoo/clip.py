"""CLIP's ViT image encoder, read from an OpenAI, open_clip or transformers checkpoint.

Published detectors built on a frozen CLIP (UnivFD, and others after it) ship only their own
head and tell the user to fetch CLIP from its publisher, so the same encoder arrives in three
layouts. :func:`read_clip_visual` reads any of them into one state dict in OpenAI's naming
(``model.visual`` without the prefix, float32) and a :class:`ClipVisionConfig` inferred from
the tensors' shapes, so a tiny random CLIP runs through the same code as ViT-L/14;
:func:`build_clip_visual` is the encoder that state fits (``encode_image``: the class token
after ``ln_post``, times the visual projection).

The formats:

- OpenAI: the ``.pt`` files that ``clip.load`` downloads are TorchScript archives, i.e. code.
  ``torch.load(weights_only=True)`` refuses them and ``torch.jit.load`` would run their code,
  so :func:`read_torchscript_tensors` unpickles only the archive's object tree with a
  restricted unpickler (module objects become inert records, tensors are rebuilt from the
  archive's raw storages, any other global is refused) and never looks at its code. A plain
  state dict with OpenAI's names (``visual.conv1.weight``...) is read like any checkpoint.
- open_clip: ``open_clip_pytorch_model.bin`` / ``open_clip_model.safetensors``, OpenAI's
  names; an ``open_clip_config.json`` beside it says whether the tower uses QuickGELU.
- transformers: a ``CLIPModel`` or ``CLIPVisionModelWithProjection`` folder (or its
  ``model.safetensors``); q/k/v projections are fused into OpenAI's ``in_proj``.

Shapes do not tell the number of attention heads or the activation. The heads come from the
model's config where one is beside the weights, else CLIP's rule ``width // 64``; the
activation is OpenAI's QuickGELU unless a config says otherwise (LAION's open_clip towers use
exact GELU).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from deepaudit.detectors.zoo.base import read_checkpoint, state_dict_of
from deepaudit.errors import DeepauditError

__all__ = [
    "ClipVisionConfig",
    "ClipVisual",
    "build_clip_visual",
    "is_torchscript_archive",
    "read_clip_visual",
    "read_torchscript_tensors",
]

logger = logging.getLogger(__name__)

Activation = Literal["quick_gelu", "gelu"]
OPEN_CLIP_CONFIG = "open_clip_config.json"
HF_CONFIG = "config.json"
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class ClipVisionConfig:
    """The shape of a CLIP ViT image encoder (JSON-able: it goes into ``arch``)."""

    width: int
    layers: int
    heads: int
    patch_size: int
    image_size: int
    output_dim: int  # the visual projection's output: the embedding a head reads
    mlp_dim: int
    activation: Activation = "quick_gelu"
    layer_norm_eps: float = 1e-5

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ClipVisionConfig:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class ClipVisual:
    """A CLIP image encoder read from disk: OpenAI-named float32 state, config, format."""

    state: dict[str, Any]  # name -> torch.Tensor, without the ``visual.`` prefix
    config: ClipVisionConfig
    format: str  # "openai-torchscript" | "openai" | "open_clip" | "transformers"


# -- reading -------------------------------------------------------------------------------
def read_clip_visual(path: str | os.PathLike[str]) -> ClipVisual:
    """The ViT image encoder in a CLIP checkpoint of any of the three formats."""
    p = Path(path)
    if p.is_dir():
        return _read_transformers_folder(p)
    if not p.is_file():
        raise DeepauditError(f"{p}: no such file or folder")
    if is_torchscript_archive(p):
        tensors, fmt = read_torchscript_tensors(p), "openai-torchscript"
    else:
        tensors = state_dict_of(read_checkpoint(p), p, "state_dict", "model")
        fmt = "open_clip" if (p.parent / OPEN_CLIP_CONFIG).is_file() else "openai"
    if _HF_PATCH in tensors:
        return _from_transformers(tensors, _hf_vision_config(p.parent / HF_CONFIG), p)
    visual = _openai_visual(tensors, p)
    heads, activation, eps = None, "quick_gelu", 1e-5
    if fmt == "open_clip":
        heads, activation = _open_clip_settings(p.parent / OPEN_CLIP_CONFIG, visual)
    config = _infer_config(visual, p, heads=heads, activation=activation, eps=eps)
    return ClipVisual(visual, config, fmt)


def _openai_visual(tensors: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """``visual.*`` of an OpenAI-named state (or a bare visual state), as float32."""
    if "visual.conv1.weight" in tensors:
        visual = {k[7:]: v for k, v in tensors.items() if k.startswith("visual.")}
    elif "conv1.weight" in tensors and "proj" in tensors:
        visual = dict(tensors)
    elif any(k.startswith("visual.layer1.") for k in tensors):
        raise DeepauditError(
            f"{path}: a ResNet CLIP image encoder; only ViT encoders are supported"
        )
    else:
        first = next(iter(tensors), "nothing")
        raise DeepauditError(
            f"{path}: not a CLIP checkpoint (no visual.conv1.weight or "
            f"vision_model.embeddings.patch_embedding.weight; first key {first!r})"
        )
    return {k: v.float() for k, v in visual.items()}


_FIRST_MLP = "transformer.resblocks.0.mlp.c_fc.weight"
_BLOCK = re.compile(r"transformer\.resblocks\.(\d+)\.")


def _infer_config(
    visual: Mapping[str, Any],
    path: Path,
    *,
    heads: int | None,
    activation: Activation,
    eps: float,
) -> ClipVisionConfig:
    for key in ("conv1.weight", "positional_embedding", "proj", _FIRST_MLP):
        if key not in visual:
            raise DeepauditError(f"{path}: not a CLIP ViT image encoder (no {key!r})")
    conv = visual["conv1.weight"]
    width, patch = int(conv.shape[0]), int(conv.shape[-1])
    tokens = int(visual["positional_embedding"].shape[0])
    grid = math.isqrt(max(tokens - 1, 0))
    if grid * grid + 1 != tokens:
        raise DeepauditError(
            f"{path}: positional_embedding has {tokens} rows, not a square grid plus a class token"
        )
    blocks = {int(m.group(1)) for k in visual if (m := _BLOCK.match(k))}
    if heads is None:
        heads = width // 64
    if heads < 1 or width % heads:
        raise DeepauditError(
            f"{path}: cannot tell the attention heads of a {width}-wide encoder (CLIP's rule is "
            "width / 64); put the model's config beside the weights"
        )
    return ClipVisionConfig(
        width=width,
        layers=len(blocks),
        heads=heads,
        patch_size=patch,
        image_size=grid * patch,
        output_dim=int(visual["proj"].shape[1]),
        mlp_dim=int(visual[_FIRST_MLP].shape[0]),
        activation=activation,
        layer_norm_eps=eps,
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DeepauditError(f"{path}: unreadable config ({exc})") from None
    if not isinstance(data, dict):
        raise DeepauditError(f"{path}: unreadable config (not a JSON object)")
    return data


def _open_clip_settings(path: Path, visual: Mapping[str, Any]) -> tuple[int | None, Activation]:
    """Heads and activation from ``open_clip_config.json`` (open_clip's defaults: a head
    width of 64, exact GELU unless ``quick_gelu`` is set)."""
    cfg = _read_json(path)
    model = cfg.get("model_cfg", cfg)
    vision = model.get("vision_cfg") or {}
    width = int(visual["conv1.weight"].shape[0])
    head_width = int(vision.get("head_width", 64))
    activation: Activation = "quick_gelu" if model.get("quick_gelu") else "gelu"
    return max(width // head_width, 1), activation


# transformers' names -> OpenAI's (per block: q/k/v are fused into in_proj below)
_HF_PATCH = "vision_model.embeddings.patch_embedding.weight"
_HF_TOP = {
    "vision_model.embeddings.class_embedding": "class_embedding",
    _HF_PATCH: "conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "positional_embedding",
    "vision_model.pre_layrnorm.weight": "ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "ln_pre.bias",
    "vision_model.post_layernorm.weight": "ln_post.weight",
    "vision_model.post_layernorm.bias": "ln_post.bias",
}
_HF_BLOCK = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


def _read_transformers_folder(folder: Path) -> ClipVisual:
    weights = next((folder / n for n in HF_WEIGHTS if (folder / n).is_file()), None)
    if weights is None:
        raise DeepauditError(
            f"{folder}: no {' or '.join(HF_WEIGHTS)} in this transformers CLIP folder"
        )
    tensors = state_dict_of(read_checkpoint(weights), weights)
    return _from_transformers(tensors, _hf_vision_config(folder / HF_CONFIG), weights)


def _hf_vision_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    cfg = _read_json(path)
    return cfg.get("vision_config") or (cfg if cfg.get("model_type") == "clip_vision_model" else {})


def _from_transformers(
    tensors: Mapping[str, Any], vision_cfg: Mapping[str, Any], path: Path
) -> ClipVisual:
    import torch

    if "visual_projection.weight" not in tensors:
        raise DeepauditError(
            f"{path}: no visual_projection.weight (a CLIPVisionModel without projection; "
            "use the CLIPModel or CLIPVisionModelWithProjection weights)"
        )
    visual: dict[str, Any] = {}
    blocks: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        if key in _HF_TOP:
            visual[_HF_TOP[key]] = t
        elif m := re.match(r"vision_model\.encoder\.layers\.(\d+)\.(.+)$", key):
            blocks.setdefault(int(m.group(1)), {})[m.group(2)] = t
        elif key.startswith("vision_model.") and not key.endswith("position_ids"):
            raise DeepauditError(f"{path}: unexpected key {key!r} for a CLIP vision tower")
    visual["proj"] = tensors["visual_projection.weight"].t()
    for i, block in sorted(blocks.items()):
        out = f"transformer.resblocks.{i}."
        try:
            for kind in ("weight", "bias"):
                visual[out + f"attn.in_proj_{kind}"] = torch.cat(
                    [block.pop(f"self_attn.{x}_proj.{kind}") for x in ("q", "k", "v")]
                )
        except KeyError as exc:
            raise DeepauditError(
                f"{path}: missing key 'vision_model.encoder.layers.{i}.{exc.args[0]}'"
            ) from None
        for name, t in block.items():
            stem, _, leaf = name.rpartition(".")
            if stem not in _HF_BLOCK:
                raise DeepauditError(
                    f"{path}: unexpected key 'vision_model.encoder.layers.{i}.{name}'"
                )
            visual[out + f"{_HF_BLOCK[stem]}.{leaf}"] = t
    visual = {k: v.float().contiguous() for k, v in visual.items()}
    act = str(vision_cfg.get("hidden_act", "quick_gelu"))
    if act not in ("quick_gelu", "gelu"):
        raise DeepauditError(f"{path}: activation {act!r} is not CLIP's (quick_gelu or gelu)")
    heads = vision_cfg.get("num_attention_heads")
    config = _infer_config(
        visual,
        path,
        heads=int(heads) if heads is not None else None,
        activation=act,  # type: ignore[arg-type]
        eps=float(vision_cfg.get("layer_norm_eps", 1e-5)),
    )
    return ClipVisual(visual, config, "transformers")


# -- TorchScript archives, tensors only ----------------------------------------------------
def is_torchscript_archive(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with ``constants.pkl``, as
    ``torch.jit.save`` writes and as torch itself tells them apart)."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/constants.pkl") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


_STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "DoubleStorage": "float64",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


# TorchScript's helpers for typed containers in module attributes: plain data in, data out
_TYPED_CONTAINERS = {
    "restore_type_tag": lambda value, _type: value,
    "build_intlist": list,
    "build_doublelist": list,
    "build_boollist": list,
}


def read_torchscript_tensors(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Every tensor of a TorchScript archive's module tree, by attribute path (the names of
    its ``state_dict()``), read without running or even reading the archive's code.

    The object pickle (``data.pkl``) is read by an unpickler that knows four kinds of global:
    TorchScript classes (``__torch__.*``, which become inert attribute records), the tensor
    rebuild function, storage types and ``OrderedDict``. Any other global is refused.
    """
    import pickle

    import torch

    p = Path(path)
    try:
        z = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DeepauditError(f"{p}: not a TorchScript archive ({exc})") from None
    with z:
        names = z.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") and n.count("/") == 1), None)
        if pkl is None or not any(n.endswith("/constants.pkl") for n in names):
            raise DeepauditError(f"{p}: not a TorchScript archive (no data.pkl/constants.pkl)")
        root = pkl.rsplit("/", 1)[0]

        class Record:
            """A TorchScript object: its attributes, nothing callable."""

            attrs: Mapping[str, Any] = {}  # until the pickle's BUILD sets the instance's own

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                self.attrs: dict[str, Any] = {}

            def __setstate__(self, state: Any) -> None:
                self.attrs = dict(state) if isinstance(state, Mapping) else {}

        record_types: dict[str, type] = {}

        def record_type(name: str) -> type:
            return record_types.setdefault(name, type(name.rsplit(".", 1)[-1], (Record,), {}))

        class StorageType:
            def __init__(self, dtype: Any) -> None:
                self.dtype = dtype

        def storage(key: str, dtype: Any, numel: int) -> Any:
            try:
                raw = z.read(f"{root}/data/{key}")
            except KeyError:
                raise DeepauditError(f"{p}: storage data/{key} is missing") from None
            if not raw:
                return torch.empty(0, dtype=dtype)
            flat = torch.frombuffer(bytearray(raw), dtype=dtype)
            if flat.numel() < numel:
                raise DeepauditError(f"{p}: storage data/{key} is truncated")
            return flat[:numel]

        def rebuild_tensor(flat: Any, offset: int, size: Any, stride: Any, *_: Any) -> Any:
            try:
                return flat.as_strided(tuple(size), tuple(stride), int(offset))
            except (RuntimeError, TypeError, ValueError) as exc:
                raise DeepauditError(f"{p}: malformed tensor record ({exc})") from None

        class Unpickler(pickle.Unpickler):
            def find_class(self, module: str, name: str) -> Any:
                if module == "__torch__" or module.startswith("__torch__."):
                    return record_type(f"{module}.{name}")
                if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                    return rebuild_tensor
                if (module, name) == ("collections", "OrderedDict"):
                    from collections import OrderedDict

                    return OrderedDict
                if module == "torch" and name in _STORAGE_DTYPES:
                    return StorageType(getattr(torch, _STORAGE_DTYPES[name]))
                if module == "torch.jit._pickle" and name in _TYPED_CONTAINERS:
                    return _TYPED_CONTAINERS[name]
                raise DeepauditError(
                    f"{p}: refused: its object pickle needs {module}.{name}, which is neither "
                    "a tensor nor a module record"
                )

            def persistent_load(self, pid: Any) -> Any:
                if (
                    not isinstance(pid, tuple)
                    or len(pid) != 5
                    or pid[0] != "storage"
                    or not isinstance(pid[1], StorageType)
                ):
                    raise DeepauditError(f"{p}: refused: unknown persistent record {pid!r:.60}")
                return storage(str(pid[2]), pid[1].dtype, int(pid[4]))

        try:
            with z.open(pkl) as f:
                top = Unpickler(f).load()
        except DeepauditError:
            raise
        except Exception as exc:
            raise DeepauditError(f"{p}: unreadable TorchScript object pickle ({exc})") from None

    out: dict[str, Any] = {}
    seen: set[int] = set()

    def walk(obj: Any, prefix: str) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        for name, value in obj.attrs.items():
            if isinstance(value, torch.Tensor):
                out[prefix + name] = value.clone()
            elif isinstance(value, Record):
                walk(value, f"{prefix}{name}.")

    if not isinstance(top, Record):
        raise DeepauditError(f"{p}: the archive's top object is not a module")
    walk(top, "")
    if not out:
        raise DeepauditError(f"{p}: the TorchScript archive holds no tensors")
    return out


# -- the encoder ---------------------------------------------------------------------------
def build_clip_visual(config: ClipVisionConfig) -> Any:
    """CLIP's ViT image encoder (``torch.nn.Module``): ``(N, 3, S, S)`` normalised pixels in,
    ``(N, output_dim)`` image embeddings out; its state dict uses OpenAI's names."""
    return _encoder_class()(config)


@functools.cache
def _encoder_class() -> type:
    """The module classes, defined on first use so importing deepaudit needs no torch."""
    from collections import OrderedDict

    import torch
    import torch.nn.functional as F
    from torch import nn

    class QuickGELU(nn.Module):
        # OpenAI trained CLIP with this sigmoid approximation; exact GELU shifts the features
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.sigmoid(1.702 * x)

    class SelfAttention(nn.Module):
        """Multi-head self-attention with OpenAI's fused in-projection (their names)."""

        def __init__(self, width: int, heads: int) -> None:
            super().__init__()
            self.heads = heads
            self.in_proj_weight = nn.Parameter(torch.zeros(3 * width, width))
            self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
            self.out_proj = nn.Linear(width, width)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n, length, width = x.shape
            qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
            qkv = qkv.reshape(n, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
            out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
            return self.out_proj(out.transpose(1, 2).reshape(n, length, width))

    class Block(nn.Module):
        def __init__(self, c: ClipVisionConfig) -> None:
            super().__init__()
            act = QuickGELU() if c.activation == "quick_gelu" else nn.GELU()
            self.ln_1 = nn.LayerNorm(c.width, eps=c.layer_norm_eps)
            self.attn = SelfAttention(c.width, c.heads)
            self.ln_2 = nn.LayerNorm(c.width, eps=c.layer_norm_eps)
            mlp = [
                ("c_fc", nn.Linear(c.width, c.mlp_dim)),
                ("gelu", act),
                ("c_proj", nn.Linear(c.mlp_dim, c.width)),
            ]
            self.mlp = nn.Sequential(OrderedDict(mlp))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class Transformer(nn.Module):
        def __init__(self, c: ClipVisionConfig) -> None:
            super().__init__()
            self.resblocks = nn.Sequential(*[Block(c) for _ in range(c.layers)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.resblocks(x)

    class VisionTransformer(nn.Module):
        def __init__(self, c: ClipVisionConfig) -> None:
            super().__init__()
            self.config = c
            grid = c.image_size // c.patch_size
            self.conv1 = nn.Conv2d(3, c.width, c.patch_size, stride=c.patch_size, bias=False)
            self.class_embedding = nn.Parameter(torch.zeros(c.width))
            self.positional_embedding = nn.Parameter(torch.zeros(grid * grid + 1, c.width))
            self.ln_pre = nn.LayerNorm(c.width, eps=c.layer_norm_eps)
            self.transformer = Transformer(c)
            self.ln_post = nn.LayerNorm(c.width, eps=c.layer_norm_eps)
            self.proj = nn.Parameter(torch.zeros(c.width, c.output_dim))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.conv1(x).flatten(2).transpose(1, 2)  # (N, grid², width)
            cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
            x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
            x = self.transformer(self.ln_pre(x))
            return self.ln_post(x[:, 0]) @ self.proj

    return VisionTransformer
