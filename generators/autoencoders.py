"""``vae-reconstruct``: each real photo passed through a latent-diffusion autoencoder.

Rajan et al. (ICLR 2025, "aligned datasets") make the synthetic twin of a real photo by
encoding and decoding it with the autoencoder of a latent diffusion model, with no denoising:
the twin shares the photo's content, size and format, so the only thing a detector can learn
from the pair is the decoder's trace. That trace is the generator's, so this only works with
the real generators' autoencoders, which users have on disk; nothing is downloaded.

Accepted ``model=``: a diffusers ``AutoencoderKL`` folder (``config.json`` +
``diffusion_pytorch_model.safetensors``), a pipeline folder with a ``vae/`` subfolder, or one
``.safetensors`` file in the original Stable Diffusion layout (a VAE alone, or a whole
checkpoint whose ``first_stage_model.`` part is used), converted by diffusers' own converter.
The 4-channel (SD 1.x/2.x, SDXL) and 16-channel (SD3, Flux) latent layouts differ in their
scaling and shift factors; a diffusers config carries them, a single file cannot say which
16-channel model it belongs to, so ``layout="sd3"`` or ``"flux"`` is asked for there.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.errors import DependencyError
from deepaudit.generators._registry import register_generator
from deepaudit.generators.base import BatchedGenerator, GeneratedItem, GenerationRequest
from deepaudit.manifest import GeneratorInfo

__all__ = ["LATENT_LAYOUTS", "LatentLayout", "VaeReconstructGenerator", "load_autoencoder"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LatentLayout:
    """How a model family normalises its latents before the diffusion model sees them."""

    name: str
    latent_channels: int
    scaling_factor: float
    shift_factor: float = 0.0
    sample_size: int = 512  # the training resolution: the default tile side

    def to_json(self) -> dict[str, Any]:
        return {
            "layout": self.name,
            "latent_channels": self.latent_channels,
            "scaling_factor": self.scaling_factor,
            "shift_factor": self.shift_factor,
        }


# The published configs (vae/config.json of each model's diffusers release).
LATENT_LAYOUTS: dict[str, LatentLayout] = {
    "sd": LatentLayout("sd", 4, 0.18215, 0.0, 512),
    "sdxl": LatentLayout("sdxl", 4, 0.13025, 0.0, 1024),
    "sd3": LatentLayout("sd3", 16, 1.5305, 0.0609, 1024),
    "flux": LatentLayout("flux", 16, 0.3611, 0.1159, 1024),
}
_ORIGINAL_PREFIXES = ("first_stage_model.", "vae.")


def _layout_from_config(cfg: Any, layout: str) -> LatentLayout:
    channels = int(cfg.latent_channels)
    scale = float(cfg.scaling_factor)
    shift = float(getattr(cfg, "shift_factor", None) or 0.0)
    size = cfg.sample_size[0] if isinstance(cfg.sample_size, list | tuple) else cfg.sample_size
    if layout != "auto":
        return _named_layout(layout, channels, size=int(size))
    for known in LATENT_LAYOUTS.values():
        if known.latent_channels == channels and abs(known.scaling_factor - scale) < 1e-4:
            return LatentLayout(known.name, channels, scale, shift, int(size))
    return LatentLayout("custom", channels, scale, shift, int(size))


def _named_layout(layout: str, channels: int, *, size: int | None = None) -> LatentLayout:
    if layout not in LATENT_LAYOUTS:
        raise ValueError(f"layout must be one of {['auto', *LATENT_LAYOUTS]}, got {layout!r}")
    known = LATENT_LAYOUTS[layout]
    if known.latent_channels != channels:
        raise ValueError(
            f"layout {layout!r} has {known.latent_channels} latent channels, the autoencoder "
            f"has {channels}"
        )
    if size is None:
        return known
    return LatentLayout(known.name, channels, known.scaling_factor, known.shift_factor, size)


def _read_original_checkpoint(path: Path) -> dict[str, Any]:
    """The autoencoder's tensors of an original-layout file, without its ``first_stage_model.``
    prefix; only those tensors are read (a whole SD checkpoint holds gigabytes more)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            keys = list(fh.keys())
            prefix = next((p for p in _ORIGINAL_PREFIXES if any(k.startswith(p) for k in keys)), "")
            state = {
                k[len(prefix) :]: fh.get_tensor(k)
                for k in keys
                if k.startswith(prefix) and k[len(prefix) :].split(".")[0] in _ORIGINAL_PARTS
            }
    except (OSError, SafetensorError) as exc:
        raise DependencyError(f"{path}: not a readable safetensors file ({exc})") from None
    if "encoder.conv_in.weight" not in state or "decoder.conv_out.weight" not in state:
        raise DependencyError(
            f"{path}: no autoencoder in this file (no encoder.conv_in / decoder.conv_out "
            "tensors in the original Stable Diffusion layout)"
        )
    return state


_ORIGINAL_PARTS = {"encoder", "decoder", "quant_conv", "post_quant_conv"}


def _config_from_original(state: dict[str, Any]) -> dict[str, Any]:
    """The diffusers ``AutoencoderKL`` config that fits an original-layout state dict."""
    levels = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.down.")})
    widths = [int(state[f"encoder.down.{i}.block.0.conv1.weight"].shape[0]) for i in levels]
    per_level = {int(k.split(".")[4]) for k in state if k.startswith("encoder.down.0.block.")}
    return {
        "in_channels": int(state["encoder.conv_in.weight"].shape[1]),
        "out_channels": int(state["decoder.conv_out.weight"].shape[0]),
        "down_block_types": ["DownEncoderBlock2D"] * len(widths),
        "up_block_types": ["UpDecoderBlock2D"] * len(widths),
        "block_out_channels": widths,
        "layers_per_block": len(per_level),
        "latent_channels": int(state["encoder.conv_out.weight"].shape[0]) // 2,
        "use_quant_conv": "quant_conv.weight" in state,
        "use_post_quant_conv": "post_quant_conv.weight" in state,
        "mid_block_add_attention": "encoder.mid.attn_1.q.weight" in state,
    }


def load_autoencoder(
    path: str | os.PathLike[str], *, layout: str = "auto", dtype: Any = None
) -> tuple[Any, LatentLayout]:
    """An ``AutoencoderKL`` and its latent layout from a local folder or single file."""
    import torch
    from diffusers import AutoencoderKL

    from deepaudit.generators.pretrained import quiet_hub_progress

    quiet_hub_progress()
    root = Path(path)
    dtype = dtype or torch.float32
    if root.is_file():
        if root.suffix.lower() != ".safetensors":
            raise DependencyError(
                f"{root}: only .safetensors single files are read (pickled .ckpt/.pt files can "
                "run code when loaded); convert it or give a diffusers folder"
            )
        from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

        state = _read_original_checkpoint(root)
        config = _config_from_original(state)
        channels = config["latent_channels"]
        if layout == "auto":
            if channels != 4:
                raise DependencyError(
                    f"{root}: a {channels}-channel single-file autoencoder does not say which "
                    'model it belongs to; add options = { layout = "sd3" } or "flux"'
                )
            layout = "sd"
        try:
            chosen = _named_layout(layout, channels)
        except ValueError as exc:
            raise DependencyError(f"{root}: {exc}") from None
        config.update(scaling_factor=chosen.scaling_factor, sample_size=chosen.sample_size)
        if chosen.shift_factor:
            config["shift_factor"] = chosen.shift_factor
        vae = AutoencoderKL(**config)
        converted = convert_ldm_vae_checkpoint(state, config)
        missing, unexpected = vae.load_state_dict(converted, strict=False)
        if missing or unexpected:
            raise DependencyError(
                f"{root}: the autoencoder tensors do not fit the layout they imply "
                f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
            )
        if dtype != torch.float32:
            vae = vae.to(dtype)
        return vae.eval(), chosen
    folder = _autoencoder_folder(root)
    try:
        vae = AutoencoderKL.from_pretrained(folder, local_files_only=True, torch_dtype=dtype)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DependencyError(f"{folder}: cannot load AutoencoderKL: {first}") from None
    try:
        chosen = _layout_from_config(vae.config, layout)
    except ValueError as exc:
        raise DependencyError(f"{folder}: {exc}") from None
    return vae.eval(), chosen


def _autoencoder_folder(root: Path) -> Path:
    if not root.is_dir():
        raise DependencyError(f"{root}: no such autoencoder folder or .safetensors file")
    for folder in (root, root / "vae"):
        cfg = folder / "config.json"
        if not cfg.is_file():
            continue
        try:
            cls = json.loads(cfg.read_text(encoding="utf-8")).get("_class_name")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
            raise DependencyError(f"{cfg}: unreadable autoencoder config ({exc})") from None
        if cls != "AutoencoderKL":
            raise DependencyError(
                f"{cfg}: a {cls or 'model of unknown class'}, not an AutoencoderKL; point "
                "model= at the pipeline's vae/ folder or an AutoencoderKL"
            )
        return folder
    raise DependencyError(
        f"{root}: not an autoencoder (no config.json here or in vae/); give a diffusers "
        "AutoencoderKL folder, a pipeline folder or an original-layout .safetensors file"
    )


class VaeReconstructGenerator(BatchedGenerator):
    """Encode → decode each request's ``init_image``; the output has the input's size."""

    kind = "image"
    task = "reconstruct"

    def __init__(
        self,
        *,
        model: str | os.PathLike[str] | None = None,
        layout: str = "auto",
        tile_size: int | None = None,
        sample_posterior: bool = False,
        batch_size: int = 4,
        device: str = "auto",
        precision: str = "auto",
    ) -> None:
        import torch

        from deepaudit.devices import device_policy

        if model is None:
            raise DependencyError(
                "generator 'vae-reconstruct' needs model= (an AutoencoderKL folder, a pipeline "
                "folder or an original-layout .safetensors file)"
            )
        self.name = "vae-reconstruct"
        self.path = Path(model)
        self.policy = device_policy(device, precision=precision)  # type: ignore[arg-type]
        self.dtype = (
            getattr(torch, self.policy.amp_dtype) if self.policy.amp_dtype else torch.float32
        )
        vae, self.layout = load_autoencoder(self.path, layout=layout, dtype=self.dtype)
        self.vae = vae.to(self.policy.device)
        self.factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.tile_size = int(tile_size or self.layout.sample_size)
        if self.tile_size < 2 * self.factor or self.tile_size % self.factor:
            raise ValueError(
                f"tile_size must be a multiple of {self.factor} and at least {2 * self.factor}, "
                f"got {self.tile_size}"
            )
        # diffusers' tiling: overlapping tiles blended in latent space (encode) and pixel
        # space (decode), used only when an image is larger than a tile.
        self.vae.enable_tiling()
        self.vae.tile_sample_min_size = self.tile_size
        self.vae.tile_latent_min_size = self.tile_size // self.factor
        self.sample_posterior = bool(sample_posterior)
        self.batch_size = max(1, int(batch_size))
        self.model_name = self.path.stem if self.path.is_file() else self.path.name

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model_name,
            "model_path": str(self.path),
            **self.layout.to_json(),
            "tile_size": self.tile_size,
            "precision": self.policy.precision,
            "device": self.policy.device,
        }

    def reconstruct(self, images: Sequence[np.ndarray], seeds: Sequence[int]) -> list[np.ndarray]:
        """Encode and decode images of one size (uint8 RGB) as one batch."""
        import torch
        import torch.nn.functional as F

        h, w = images[0].shape[:2]
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
        x = x.to(self.policy.device, self.dtype) / 127.5 - 1.0
        pad_h, pad_w = -h % self.factor, -w % self.factor
        if pad_h or pad_w:  # the encoder halves the side per level: pad, decode, crop back
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        lay = self.layout
        with torch.inference_mode():
            dist = self.vae.encode(x).latent_dist
            if self.sample_posterior:
                gens = [torch.Generator(self.policy.device).manual_seed(int(s)) for s in seeds]
                noise = torch.stack(
                    [
                        torch.randn(dist.mean.shape[1:], generator=g, device=self.policy.device)
                        for g in gens
                    ]
                ).to(self.dtype)
                z = dist.mean + dist.std * noise
            else:
                z = dist.mode()
            # The latent the diffusion model of this family sees; decoding undoes it, so a
            # plain round trip is unchanged by it, but the numbers in between are the real ones.
            latents = (z - lay.shift_factor) * lay.scaling_factor
            out = self.vae.decode(latents / lay.scaling_factor + lay.shift_factor).sample
        if not torch.isfinite(out).all():
            raise DependencyError(
                f"{self.path}: the decoder overflowed in {self.policy.precision} (the SDXL "
                "autoencoder does in fp16); use precision bf16 or fp32"
            )
        out = out[:, :, :h, :w].float().clamp(-1, 1)
        px = ((out + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return [np.ascontiguousarray(p) for p in px]

    def _batch(self, requests: Sequence[GenerationRequest]) -> list[GeneratedItem]:
        for r in requests:
            if r.init_image is None:
                raise ValueError(
                    "vae-reconstruct: every request needs an init_image (a real photo)"
                )
        started = time.perf_counter()
        out: list[np.ndarray | None] = [None] * len(requests)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for k, r in enumerate(requests):
            by_shape.setdefault(r.init_image.shape, []).append(k)  # type: ignore[union-attr]
        for idx in by_shape.values():  # one batch per image size: tensors need one shape
            images = [np.asarray(requests[k].init_image)[..., :3] for k in idx]
            made = self.reconstruct(images, [requests[k].seed for k in idx])
            for k, px in zip(idx, made, strict=True):
                out[k] = px
        seconds = (time.perf_counter() - started) / len(requests)
        params = {
            "task": "reconstruct",
            **self.layout.to_json(),
            "tile_size": self.tile_size,
            "precision": self.policy.precision,
            "posterior": "sample" if self.sample_posterior else "mode",
        }
        return [
            GeneratedItem(
                px,  # type: ignore[arg-type]
                GeneratorInfo(model=self.model_name, seed=int(r.seed), params=params),
                seconds=seconds,
            )
            for r, px in zip(requests, out, strict=True)
        ]


@register_generator(
    "vae-reconstruct",
    family="pretrained",
    description="a real photo's twin through a local SD/SDXL/SD3/Flux autoencoder (aligned)",
    metadata={
        "paired": True,
        "paper": "Rajan et al., Aligned Datasets Improve Detection of Latent "
        "Diffusion-Generated Images, ICLR 2025",
    },
)
def _vae_reconstruct(**cfg: Any) -> VaeReconstructGenerator:
    return VaeReconstructGenerator(**cfg)
