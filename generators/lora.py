"""Subject LoRA fine-tuning (DreamBooth with LoRA): a few photos of one subject in, an adapter out.

The recipe of Ruiz et al. (2023) with low-rank adapters (peft) instead of full fine-tuning:
the base model learns to draw *this* subject when a rare token is in the prompt
("a photo of sks person"), while optional prior-preservation images of the plain class
("a photo of person") keep it from forgetting what the class looks like otherwise.

Two kinds of base model, so the recipe runs with and without pretrained weights:

- a local diffusers text-to-image pipeline (Stable Diffusion 1.x/2.x layout): LoRA on the
  UNet's attention projections through diffusers' ``add_adapter``; saved with the pipeline's
  ``save_lora_weights`` and loaded back with ``load_lora_weights``, the file any diffusers
  user can load;
- a latent or pixel model trained here (``deepaudit generators train``): LoRA on the UNet's
  convolutions and class embedding through peft; with a class-conditional model one class
  becomes the subject (its label is the "rare token"), with an unconditional one the whole
  model does.

Training runs in :class:`deepaudit.trainer.Trainer`: seeded, checkpointed (adapter weights
and optimizer only, not the base model), resumable after a kill, tracked in mlflow.

Precision follows diffusers' LoRA training scripts: on CUDA the frozen base model is held in
bf16 (fp16 where the GPU has no bf16) and runs under autocast, while the adapter's trainable
parameters stay in fp32 (:func:`lora_mixed_precision`): an optimizer step on half-precision
weights loses updates smaller than their last bit, and fp16 gradients get a loss scaler. On
a CPU everything is fp32 unless ``precision="bf16"`` is asked for.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.errors import DeepauditError, DependencyError
from deepaudit.generators.training import META_NAME, load_training_images
from deepaudit.trainer import Trainer, TrainState

__all__ = [
    "LORA_FORMAT",
    "PIPELINE_LORA_FILE",
    "SUBJECT_DIR",
    "SubjectConfig",
    "SubjectLora",
    "apply_own_lora",
    "lora_mixed_precision",
    "read_subject_lora",
    "train_subject_lora",
]

logger = logging.getLogger(__name__)

LORA_FORMAT = "deepaudit-lora/1"
PIPELINE_LORA_FILE = "pytorch_lora_weights.safetensors"  # the name load_lora_weights looks for
OWN_LORA_FILE = "lora.safetensors"
SUBJECT_DIR = "subject"  # the subject photos as trained on, inside the adapter folder
_PIPELINE_TARGETS = ("to_k", "to_q", "to_v", "to_out.0")
_OWN_TARGETS = ("conv1", "conv2", "class_embedding")


@dataclass(frozen=True)
class SubjectConfig:
    """Everything that decides the adapter's weights."""

    subject: str  # the subject's id: the manifest attribute ``subject`` of every item
    token: str = "sks"  # a rare token the text encoder has no meaning for
    class_noun: str = "person"
    subject_class: str | None = None  # class-conditional models trained here: the class taken
    rank: int = 4
    steps: int = 200
    lr: float = 1e-4
    batch_size: int = 1
    prior_weight: float = 1.0
    prior_count: int = 0  # prior images the base model draws when no folder of them is given
    prior_steps: int = 25  # sampling steps for drawing them
    resolution: int | None = None  # None: the base model's native size
    seed: int = 0
    checkpoint_every: int = 50

    def __post_init__(self) -> None:
        if not self.subject or "/" in self.subject:
            raise ValueError(f"subject must be a plain non-empty id, got {self.subject!r}")
        if self.rank < 1 or self.steps < 1 or self.batch_size < 1:
            raise ValueError("rank, steps and batch_size must be positive")
        if self.prior_count < 0:
            raise ValueError("prior_count must be >= 0")

    @property
    def instance_prompt(self) -> str:
        return f"a photo of {self.token} {self.class_noun}"

    @property
    def class_prompt(self) -> str:
        return f"a photo of {self.class_noun}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SubjectLora:
    """A trained adapter folder as read back: where its base is and what it was trained on."""

    path: Path
    backend: str  # "pipeline" | "own"
    base: Path
    subject: str
    instance_prompts: tuple[str, ...]
    token: str
    class_noun: str
    subject_class: str | None
    rank: int
    steps: int
    weights: Path
    sha256: str
    target_modules: tuple[str, ...]

    def manifest_params(self) -> dict[str, Any]:
        """What each generated item records about the adapter that made it."""
        return {
            "subject": self.subject,
            "instance_prompts": list(self.instance_prompts),
            "lora_rank": self.rank,
            "lora_steps": self.steps,
            "lora_sha256": self.sha256,
            "base_model": self.base.name,
        }


def _backend_of(base: Path) -> str:
    if (base / META_NAME).is_file():
        meta = json.loads((base / META_NAME).read_text())
        if meta.get("family") in ("pixel", "latent"):
            return "own"
        raise DependencyError(
            f"{base}: a {meta.get('family')} model; subject LoRA needs a text-to-image "
            "pipeline or a pixel/latent model trained here"
        )
    if (base / "model_index.json").is_file():
        return "pipeline"
    raise DependencyError(
        f"{base}: not a diffusers pipeline folder (no model_index.json) nor a model trained "
        f"here (no {META_NAME})"
    )


def read_subject_lora(path: str | os.PathLike[str]) -> SubjectLora:
    """Open an adapter folder written by :func:`train_subject_lora`; one-line errors."""
    root = Path(path)
    meta_path = root / META_NAME
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DependencyError(f"{meta_path}: not a subject LoRA folder ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != LORA_FORMAT:
        raise DependencyError(
            f"{meta_path}: not a subject LoRA folder (format is not {LORA_FORMAT})"
        )
    weights = root / meta["weights"]
    if not weights.is_file():
        raise DependencyError(f"{weights}: adapter weights missing")
    from deepaudit.media import file_sha256

    sha = file_sha256(weights)
    if sha != meta["sha256"]:
        raise DependencyError(f"{weights}: sha256 differs from {META_NAME} (file changed)")
    return SubjectLora(
        path=root,
        backend=meta["backend"],
        base=Path(meta["base"]),
        subject=meta["subject"],
        instance_prompts=tuple(meta["instance_prompts"]),
        token=meta["token"],
        class_noun=meta["class_noun"],
        subject_class=meta.get("subject_class"),
        rank=int(meta["rank"]),
        steps=int(meta["steps_done"]),
        weights=weights,
        sha256=sha,
        target_modules=tuple(meta["target_modules"]),
    )


def _square(images: list[np.ndarray], size: int) -> np.ndarray:
    """Centre square crops resized to ``size``, plus their mirror images: (2N, 3, s, s) in
    [-1, 1] (DreamBooth's flip augmentation, drawn from a fixed pool so resume is exact)."""
    from PIL import Image

    out = []
    for img in images:
        h, w = img.shape[:2]
        s = min(h, w)
        y, x = (h - s) // 2, (w - s) // 2
        crop = Image.fromarray(img[y : y + s, x : x + s]).resize(
            (size, size), Image.Resampling.BICUBIC
        )
        arr = np.asarray(crop, dtype=np.float32) / 127.5 - 1.0
        out += [arr, arr[:, ::-1]]
    return np.stack(out).transpose(0, 3, 1, 2).copy()


def _adapter_params(unet: Any) -> Any:
    """The adapter's trainable tensors as one module for checkpoints: a resume copies saved
    values into the very parameters the UNet uses, and the frozen base is never saved."""
    import torch

    trainable = {n.replace(".", "__"): p for n, p in unet.named_parameters() if p.requires_grad}
    return torch.nn.ParameterDict(trainable)


def lora_mixed_precision(unet: Any, frozen: Sequence[Any], weight_dtype: Any) -> list[Any]:
    """Put the frozen parts (the UNet's base weights among them) in ``weight_dtype`` and the
    UNet's trainable (adapter) parameters in fp32, as diffusers' ``cast_training_params``
    does after ``weight_dtype`` loading; returns the trainable parameters for the optimizer.

    With fp32 this changes nothing. Call it after the adapter is added, before the optimizer
    is made (the optimizer keeps references to these very tensors).
    """
    import torch

    for part in (unet, *frozen):
        if part is not None:
            part.to(dtype=weight_dtype)
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.to(torch.float32)
    return params


def train_subject_lora(
    base: str | os.PathLike[str],
    subject_photos: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    config: SubjectConfig,
    prior_photos: str | os.PathLike[str] | None = None,
    device: str = "auto",
    precision: str = "auto",
    tracker: Any = None,
    progress: Callable[[int, int, float], None] | None = None,
    resume: bool = True,
) -> Path:
    """Fine-tune a LoRA of ``base`` on ``subject_photos`` into ``out_dir`` (resuming there).

    subject_photos: a folder of photos or a manifest folder (its real images).
    prior_photos: images of the plain class for prior preservation; without them
        ``config.prior_count`` are drawn from the base model itself (the DreamBooth recipe).
    precision: auto (bf16/fp16 base under autocast on CUDA, fp32 on CPU), fp32, bf16 or
        fp16 (CUDA); the adapter's own parameters are fp32 in every case.
    """
    import torch

    from deepaudit.devices import device_policy, seed_everything

    base = Path(base)
    out = Path(out_dir)
    backend = _backend_of(base)
    photos = load_training_images(subject_photos)
    policy = device_policy(device, precision=precision)  # type: ignore[arg-type]
    dev = policy.torch_device()
    seed_everything(config.seed)
    if backend == "pipeline":
        model: _Backend = _PipelineBackend(base, config, dev)
    else:
        model = _OwnBackend(base, config, dev)
    size = config.resolution or model.native_size
    _keep_subject_photos(photos.images, out / SUBJECT_DIR)
    instance = model.encode_images(_square(photos.images, size))
    prior = None
    if prior_photos is not None or config.prior_count:
        model.prior_cond(1)  # refuses a model that has nothing to preserve, before any work
        prior = model.encode_images(_square(_prior_images(model, config, prior_photos, out), size))
    model.add_adapter()
    weight_dtype = getattr(torch, policy.amp_dtype or "float32")
    params = lora_mixed_precision(model.unet, model.frozen_parts(), weight_dtype)
    opt = torch.optim.AdamW(params, lr=config.lr)
    # fp16 gradients of small losses underflow: scale them (bf16 has fp32's range)
    scaler = torch.amp.GradScaler(dev.type, enabled=policy.amp_dtype == "float16")
    gen = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    state = TrainState(
        modules={"lora": _adapter_params(model.unet)},
        stateful={"opt": opt, **({"scaler": scaler} if scaler.is_enabled() else {})},
        generators={"noise": gen, "photos": rng},
    )
    summary = {
        "base": str(base),
        "subject_photos": len(photos.images),
        "precision": policy.precision,
    }
    summary["prior_images"] = 0 if prior is None else len(prior) // 2
    trainer = Trainer(
        out / "checkpoint",
        state,
        config={**config.to_json(), **summary},
        total=config.steps,
        checkpoint_every=config.checkpoint_every,
        resume=resume,
        finished=out / META_NAME,
    )
    trainer.restore()

    def step(i: int) -> dict[str, float]:
        idx = rng.integers(0, len(instance), config.batch_size)
        with policy.autocast():  # the frozen base in half precision; the loss is fp32
            loss = model.loss(instance[idx].to(dev), model.instance_cond(len(idx)), gen)
        metrics = {"loss": float(loss.detach())}
        if prior is not None:
            pidx = rng.integers(0, len(prior), config.batch_size)
            with policy.autocast():
                prior_loss = model.loss(prior[pidx].to(dev), model.prior_cond(len(pidx)), gen)
            loss = loss + config.prior_weight * prior_loss
            metrics["prior_loss"] = float(prior_loss.detach())
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return metrics

    def report(done: int, total: int, metrics: Mapping[str, float]) -> None:
        if progress is not None:
            progress(done, total, metrics["loss"])

    started = time.monotonic()
    run_params = {**config.to_json(), **summary, "backend": backend, "device": policy.device}
    with trainer.tracking(
        tracker, "personalize-lora", tags={"task": "personalize"}, params=run_params
    ) as run:
        trainer.fit(step, progress=report)
        seconds = time.monotonic() - started
        final = trainer.export(
            lambda: _export(out, model, config, summary, state.step, policy.device, seconds)
        )
        if run is not None:
            run.log_artifact(final / META_NAME)
    return final


def _keep_subject_photos(images: list[np.ndarray], folder: Path) -> None:
    """The photos the adapter learnt from travel with it: a dataset made with it lists them
    as the subject's real images, so one split holds a subject's real and generated items."""
    from deepaudit.media import write_image

    for k, img in enumerate(images):
        path = folder / f"{k:04d}.png"
        if not path.is_file():
            write_image(path, img)


def _prior_images(
    model: _Backend, config: SubjectConfig, folder: str | os.PathLike[str] | None, out: Path
) -> list[np.ndarray]:
    if folder is not None:
        return load_training_images(folder).images
    # drawn by the base model from seeds alone, so a resumed run draws the same ones
    from deepaudit.media import read_image, write_image

    where = out / "prior"
    images = []
    for k in range(config.prior_count):
        path = where / f"{k:04d}.png"
        if not path.is_file():
            write_image(path, model.draw_prior(config.seed + 10_000 + k))
        images.append(read_image(path))
    return images


def _export(
    out: Path,
    model: _Backend,
    config: SubjectConfig,
    summary: dict[str, Any],
    steps_done: int,
    device: str,
    seconds: float,
) -> Path:
    from deepaudit.media import file_sha256

    out.mkdir(parents=True, exist_ok=True)
    weights = model.save_adapter(out)
    meta = {
        "format": LORA_FORMAT,
        "family": "lora",
        "backend": model.name,
        "base": str(model.base.resolve()),
        "subject": config.subject,
        "token": config.token,
        "class_noun": config.class_noun,
        "subject_class": config.subject_class,
        "instance_prompts": [model.instance_description],
        "class_prompt": model.prior_description,
        "rank": config.rank,
        "target_modules": list(model.targets),
        "steps_done": steps_done,
        "weights": weights.name,
        "sha256": file_sha256(weights),
        "config": config.to_json(),
        **summary,
        "device": device,
        "seconds": round(seconds, 1),
    }
    (out / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def _lora_config(config_rank: int, targets: tuple[str, ...]) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=config_rank,
        lora_alpha=config_rank,
        init_lora_weights="gaussian",
        target_modules=list(targets),
    )


def _peft() -> None:
    try:
        import peft  # noqa: F401
    except ImportError:
        raise DependencyError(
            "subject LoRA needs peft: pip install 'deepaudit[personalize]'"
        ) from None


class _Backend:
    """One base model as the trainer sees it: encode, condition, noise loss, save."""

    name: str
    base: Path
    unet: Any
    native_size: int
    targets: tuple[str, ...]
    instance_description: str
    prior_description: str

    def encode_images(self, pixels: np.ndarray) -> Any:
        raise NotImplementedError

    def instance_cond(self, n: int) -> Any:
        raise NotImplementedError

    def prior_cond(self, n: int) -> Any:
        raise NotImplementedError

    def loss(self, x0: Any, cond: Any, gen: Any) -> Any:
        raise NotImplementedError

    def draw_prior(self, seed: int) -> np.ndarray:
        raise NotImplementedError

    def add_adapter(self) -> None:
        raise NotImplementedError

    def frozen_parts(self) -> list[Any]:
        """The base model's parts besides the UNet (held in the training's weight dtype)."""
        raise NotImplementedError

    def save_adapter(self, out: Path) -> Path:
        raise NotImplementedError


class _PipelineBackend(_Backend):
    name = "pipeline"
    targets = _PIPELINE_TARGETS

    def __init__(self, base: Path, config: SubjectConfig, dev: Any) -> None:
        import diffusers
        import torch

        from deepaudit.generators.pretrained import quiet_hub_progress

        _peft()
        quiet_hub_progress()
        self.base, self.config, self.dev = base, config, dev
        index = json.loads((base / "model_index.json").read_text())
        kwargs: dict[str, Any] = {"local_files_only": True, "dtype": torch.float32}
        if "safety_checker" in index:
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        try:
            pipe = diffusers.DiffusionPipeline.from_pretrained(base, **kwargs)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DependencyError(f"{base}: cannot load the pipeline: {first}") from exc
        needed = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
        if not all(hasattr(pipe, c) for c in needed) or not hasattr(pipe, "save_lora_weights"):
            raise DependencyError(
                f"{base}: {type(pipe).__name__} is not a Stable Diffusion style text-to-image "
                "pipeline with LoRA support"
            )
        if pipe.unet.config.get("addition_embed_type") is not None:
            raise DependencyError(
                f"{base}: {type(pipe).__name__}'s UNet needs added conditioning (SDXL style); "
                "subject LoRA supports the Stable Diffusion 1.x/2.x layout"
            )
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(dev)
        self.unet = pipe.unet
        for part in (pipe.unet, pipe.vae, pipe.text_encoder):
            part.requires_grad_(False)
        self.vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        self.native_size = int(pipe.unet.config.sample_size) * self.vae_scale
        self.noise = diffusers.DDPMScheduler.from_config(pipe.scheduler.config)
        self.instance_description = config.instance_prompt
        self.prior_description = config.class_prompt
        self._instance = self._embed(config.instance_prompt)
        self._prior = self._embed(config.class_prompt)

    def _embed(self, prompt: str) -> Any:
        import torch

        tok = self.pipe.tokenizer
        ids = tok(
            prompt,
            padding="max_length",
            max_length=tok.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        with torch.no_grad():
            return self.pipe.text_encoder(ids.to(self.dev))[0]

    def encode_images(self, pixels: np.ndarray) -> Any:
        import torch

        with torch.no_grad():
            x = torch.from_numpy(pixels).to(self.dev)
            z = self.pipe.vae.encode(x).latent_dist.mode()
        return (z * self.pipe.vae.config.scaling_factor).cpu()

    def instance_cond(self, n: int) -> Any:
        return self._instance.expand(n, -1, -1)

    def prior_cond(self, n: int) -> Any:
        return self._prior.expand(n, -1, -1)

    def loss(self, x0: Any, cond: Any, gen: Any) -> Any:
        import torch
        import torch.nn.functional as F

        noise = torch.randn(x0.shape, generator=gen).to(self.dev)
        steps = self.noise.config.num_train_timesteps
        t = torch.randint(0, steps, (x0.shape[0],), generator=gen).to(self.dev)
        noisy = self.noise.add_noise(x0, noise, t)
        target = noise
        if self.noise.config.prediction_type == "v_prediction":
            target = self.noise.get_velocity(x0, noise, t)
        pred = self.unet(noisy, t, encoder_hidden_states=cond).sample
        return F.mse_loss(pred.float(), target.float())

    def draw_prior(self, seed: int) -> np.ndarray:
        import torch

        with torch.inference_mode():
            image = self.pipe(
                self.config.class_prompt,
                generator=torch.Generator().manual_seed(seed),
                num_inference_steps=self.config.prior_steps,
                output_type="np",
            ).images[0]
        return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)

    def add_adapter(self) -> None:
        self.unet.add_adapter(_lora_config(self.config.rank, self.targets))

    def frozen_parts(self) -> list[Any]:
        return [self.pipe.vae, self.pipe.text_encoder]

    def save_adapter(self, out: Path) -> Path:
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(self.unet))
        type(self.pipe).save_lora_weights(out, unet_lora_layers=layers)
        return out / PIPELINE_LORA_FILE


class _OwnBackend(_Backend):
    name = "own"
    targets = _OWN_TARGETS

    def __init__(self, base: Path, config: SubjectConfig, dev: Any) -> None:
        import diffusers
        import torch

        from deepaudit.generators.diffusion import load_diffusion_model

        _peft()
        self.base, self.config, self.dev = base, config, dev
        self.model = load_diffusion_model(base, device=dev)
        self.unet = self.model.unet
        for part in (self.unet, self.model.vae):
            if part is not None:
                part.requires_grad_(False)
        classes = self.model.classes
        if classes:
            if config.subject_class not in classes:
                raise DeepauditError(
                    f"{base}: class-conditional on {', '.join(classes)}; give subject_class, "
                    f"the class that becomes the subject (got {config.subject_class!r})"
                )
            label = classes.index(config.subject_class)
            self.instance_description = f"class {config.subject_class}"
        else:
            if config.subject_class is not None:
                raise DeepauditError(f"{base}: unconditional model; it has no subject_class")
            label = None
            self.instance_description = "unconditional"
        # a class-conditional model keeps its other classes through the "no class" token;
        # an unconditional one has nothing to preserve
        self._label = label
        self._null = len(classes) if classes else None
        self.prior_description = "no class" if classes else "none"
        self.native_size = int(self.model.meta["image_size"])
        self.noise = diffusers.DDPMScheduler.from_config(self.model.scheduler_config)
        self._torch = torch

    def _labels(self, value: int | None, n: int) -> Any:
        if value is None:
            return None
        return self._torch.full((n,), value, dtype=self._torch.long, device=self.dev)

    def encode_images(self, pixels: np.ndarray) -> Any:
        import torch

        x = torch.from_numpy(pixels)
        if self.model.vae is None:
            return x
        with torch.no_grad():
            z = self.model.vae.encode(x.to(self.dev)).latent_dist.mode()
        return (z * float(self.model.meta["latent_scale"])).cpu()

    def instance_cond(self, n: int) -> Any:
        return self._labels(self._label, n)

    def prior_cond(self, n: int) -> Any:
        if self._null is None:
            raise DeepauditError(
                f"{self.base}: prior preservation needs a class-conditional model (an "
                "unconditional model becomes the subject as a whole)"
            )
        return self._labels(self._null, n)

    def loss(self, x0: Any, cond: Any, gen: Any) -> Any:
        import torch
        import torch.nn.functional as F

        noise = torch.randn(x0.shape, generator=gen).to(self.dev)
        steps = self.noise.config.num_train_timesteps
        t = torch.randint(0, steps, (x0.shape[0],), generator=gen).to(self.dev)
        pred = self.unet(self.noise.add_noise(x0, noise, t), t, class_labels=cond).sample
        return F.mse_loss(pred.float(), noise)

    def draw_prior(self, seed: int) -> np.ndarray:
        from deepaudit.generators.base import GenerationRequest
        from deepaudit.generators.diffusion import TinyDiffusionGenerator

        family = str(self.model.meta["family"])
        gen = TinyDiffusionGenerator(
            name="prior",
            family=family,
            sampler="ddim",
            model=self.base,
            steps=self.config.prior_steps,
            device=str(self.dev),
        )
        return gen.generate([GenerationRequest(seed=seed)])[0].pixels

    def add_adapter(self) -> None:
        from peft import inject_adapter_in_model

        inject_adapter_in_model(_lora_config(self.config.rank, self.targets), self.unet)

    def frozen_parts(self) -> list[Any]:
        return [self.model.vae]

    def save_adapter(self, out: Path) -> Path:
        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import save_file

        state = get_peft_model_state_dict(self.unet)
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, out / OWN_LORA_FILE)
        return out / OWN_LORA_FILE


def apply_own_lora(unet: Any, lora: SubjectLora) -> None:
    """Put a subject adapter trained on a model made here into that model's UNet."""
    from peft import inject_adapter_in_model
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    _peft()
    inject_adapter_in_model(_lora_config(lora.rank, lora.target_modules), unet)
    result = set_peft_model_state_dict(unet, load_file(lora.weights))
    missing = [k for k in getattr(result, "unexpected_keys", []) if "lora" in k]
    if missing:
        raise DependencyError(f"{lora.weights}: adapter does not fit {lora.base} ({missing[0]})")
    unet.eval()
