"""Tiny diffusers pipelines with random weights, written to disk like a user's real weights.

Tests, the demo and benchmarks use them to run the pretrained-pipeline code path
(`generators.pretrained`) offline: the same ``from_pretrained`` loading, schedulers and
output handling as Stable Diffusion, with models small enough to sample in a second on a
CPU. Their outputs are noise-like; they exercise the plumbing, not image quality.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

__all__ = ["write_tiny_autoencoder", "write_tiny_pipeline"]

Task = Literal["text2img", "img2img", "inpaint", "instruct", "text2video", "animatediff"]


def _tokenizer(path: Path):
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    # transformers 5 has no slow CLIP tokenizer; a byte-level vocabulary with no merges works.
    alphabet = sorted(ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(alphabet)}
    for s in alphabet:
        vocab[s + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(path, model_max_length=77)


def write_tiny_pipeline(task: Task, out_dir: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Build a tiny pipeline for ``task`` with random weights and ``save_pretrained`` it."""
    import tempfile

    import torch
    from diffusers import (
        AnimateDiffPipeline,
        AutoencoderKL,
        DDIMScheduler,
        MotionAdapter,
        StableDiffusionImg2ImgPipeline,
        StableDiffusionInpaintPipeline,
        StableDiffusionInstructPix2PixPipeline,
        StableDiffusionPipeline,
        TextToVideoSDPipeline,
        UNet2DConditionModel,
        UNet3DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from deepaudit.generators.pretrained import quiet_hub_progress

    quiet_hub_progress()
    torch.manual_seed(seed)
    out = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        tok = _tokenizer(Path(tmp) / "tok")
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=64,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        steps_offset=1,
    )
    common = {"vae": vae, "text_encoder": text, "tokenizer": tok, "scheduler": scheduler}
    if task == "text2video":
        unet3d = UNet3DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock3D", "CrossAttnDownBlock3D"),
            up_block_types=("CrossAttnUpBlock3D", "UpBlock3D"),
            cross_attention_dim=32,
            attention_head_dim=4,
            norm_num_groups=32,
        )
        pipe = TextToVideoSDPipeline(unet=unet3d, **common)
    else:
        in_ch = {"inpaint": 9, "instruct": 8}.get(task, 4)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=32,
            in_channels=in_ch,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
        )
        if task == "animatediff":  # an image UNet plus motion modules between its blocks
            adapter = MotionAdapter(
                block_out_channels=(32, 64),
                motion_layers_per_block=1,
                motion_num_attention_heads=2,
                motion_norm_num_groups=32,
                use_motion_mid_block=False,
            )
            AnimateDiffPipeline(unet=unet, motion_adapter=adapter, **common).save_pretrained(out)
            return out
        extra = {
            "safety_checker": None,
            "feature_extractor": None,
            "requires_safety_checker": False,
        }
        cls = {
            "text2img": StableDiffusionPipeline,
            "img2img": StableDiffusionImg2ImgPipeline,
            "inpaint": StableDiffusionInpaintPipeline,
            "instruct": StableDiffusionInstructPix2PixPipeline,
        }[task]
        pipe = cls(unet=unet, **common, **extra)
    pipe.save_pretrained(out)
    return out


def write_tiny_autoencoder(
    out: str | os.PathLike[str],
    *,
    latent_channels: Literal[4, 16] = 4,
    single_file: bool = False,
    widths: tuple[int, ...] = (32, 64),
    sample_size: int = 64,
    seed: int = 0,
) -> Path:
    """A random ``AutoencoderKL`` in the SD (4 latent channels) or SD3/Flux (16) layout.

    Written as a diffusers folder, or (``single_file``) as one ``.safetensors`` in the original
    Stable Diffusion key layout, the form SD/Flux autoencoders are often shared in.
    ``sample_size`` is the default tile side: larger images are encoded in tiles.
    ``widths=(128, 256, 512, 512)`` with ``layers=2`` is the real SD architecture.
    """
    import torch
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    sd3 = latent_channels == 16
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(widths),
        up_block_types=("UpDecoderBlock2D",) * len(widths),
        block_out_channels=widths,
        layers_per_block=2 if len(widths) > 2 else 1,
        latent_channels=latent_channels,
        sample_size=sample_size,
        # the published SD3 config (Flux: 0.3611 / 0.1159, same architecture)
        scaling_factor=1.5305 if sd3 else 0.18215,
        shift_factor=0.0609 if sd3 else None,
        use_quant_conv=not sd3,
        use_post_quant_conv=not sd3,
    )
    target = Path(out)
    if not single_file:
        vae.save_pretrained(target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    state = _to_original_layout(vae.state_dict(), len(widths))
    save_file({k: v.contiguous() for k, v in state.items()}, str(target))
    return target


_ATTN_NAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _to_original_layout(state: dict[str, Any], levels: int) -> dict[str, Any]:
    """diffusers' AutoencoderKL keys → the original LDM keys (the inverse of diffusers'
    ``convert_ldm_vae_checkpoint``), so tests can write files in the layout users have."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        new = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", new)
        new = re.sub(
            r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new
        )
        m = re.match(r"decoder\.up_blocks\.(\d+)\.(resnets|upsamplers\.0)\.(.*)", new)
        if m:
            part = "block" if m.group(2) == "resnets" else "upsample"
            new = f"decoder.up.{levels - 1 - int(m.group(1))}.{part}.{m.group(3)}"
        new = re.sub(
            r"mid_block\.resnets\.(\d+)\.", lambda g: f"mid.block_{int(g.group(1)) + 1}.", new
        )
        m = re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)\.(weight|bias)", new)
        if m:
            new = f"{m.group(1)}.mid.attn_1.{_ATTN_NAMES[m.group(2)]}.{m.group(3)}"
            if value.ndim == 2:  # the original attention uses 1x1 convolutions
                value = value[:, :, None, None]
        out[new] = value
    return out
