"""``personalize``: one real subject drawn in new scenes by a base model with a subject LoRA.

The standard recipe for a deepfake of a real person (DreamBooth/LoRA): 3-20 photos of the
subject fine-tune an adapter (:mod:`generators.lora`), then prompts with the rare token put
the subject anywhere. ``model`` is either an adapter folder made by ``deepaudit generators
personalize`` or a base model together with ``subject_from`` (photos): then the suite trains
the adapter into the dataset folder first (resuming), through :meth:`prepare`.

Prompts may hold ``{subject}`` (replaced by "sks person"); a prompt without the token gets
the instance prompt in front, so every item shows the subject. With a class-conditional
model trained here every item is of the subject's class. ``task = "inpaint"`` paints the
subject into real photos with an inpainting pipeline (``inpaint_model_from``) carrying the
adapter; the mask is kept as localisation ground truth, as for ``sd-inpaint``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from deepaudit.errors import DeepauditError, DependencyError
from deepaudit.generators._registry import register_generator
from deepaudit.generators.base import BatchedGenerator, GeneratedItem, GenerationRequest
from deepaudit.generators.lora import (
    LORA_FORMAT,
    PIPELINE_LORA_FILE,
    SUBJECT_DIR,
    SubjectConfig,
    SubjectLora,
    apply_own_lora,
    read_subject_lora,
    train_subject_lora,
)
from deepaudit.generators.training import META_NAME
from deepaudit.manifest import ManifestItem

__all__ = ["PersonalizeGenerator"]

_TASKS = ("text2img", "inpaint")


def _is_lora_folder(path: Path) -> bool:
    try:
        return json.loads((path / META_NAME).read_text()).get("format") == LORA_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


class PersonalizeGenerator(BatchedGenerator):
    """A base model with a subject adapter; trains the adapter first when given photos."""

    kind = "image"

    def __init__(
        self,
        *,
        model: str | os.PathLike[str] | None = None,
        subject_from: str | os.PathLike[str] | None = None,
        prior_from: str | os.PathLike[str] | None = None,
        subject: str | None = None,
        token: str = "sks",
        class_noun: str = "person",
        subject_class: str | None = None,
        rank: int = 4,
        train_steps: int = 200,
        lr: float = 1e-4,
        train_batch_size: int = 1,
        prior_count: int = 0,
        prior_weight: float = 1.0,
        resolution: int | None = None,
        train_seed: int = 0,
        task: Literal["text2img", "inpaint"] = "text2img",
        inpaint_model_from: str | os.PathLike[str] | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        strength: float = 0.75,
        height: int | None = None,
        width: int | None = None,
        batch_size: int = 4,
        device: str = "auto",
    ) -> None:
        if model is None:
            raise DependencyError(
                "generator 'personalize' needs model=DIR: a subject LoRA folder, or a base "
                "model with subject_from=PHOTOS"
            )
        if task not in _TASKS:
            raise ValueError(f"personalize: task must be one of {', '.join(_TASKS)}, got {task!r}")
        self.name, self.task, self.device = "personalize", task, device
        root = Path(model)
        self.lora: SubjectLora | None = None
        self.config: SubjectConfig | None = None
        self.base = root
        self.subject_from = Path(subject_from) if subject_from is not None else None
        self.prior_from = Path(prior_from) if prior_from is not None else None
        if _is_lora_folder(root):
            if subject_from is not None:
                raise ValueError(f"{root}: already a trained subject LoRA; drop subject_from")
            self.lora = read_subject_lora(root)
            self.base = self.lora.base
        elif subject_from is None or subject is None:
            raise DependencyError(
                f"{root}: not a subject LoRA folder; to train one give subject_from=PHOTOS "
                "and subject=ID"
            )
        else:
            self.config = SubjectConfig(
                subject=subject,
                token=token,
                class_noun=class_noun,
                subject_class=subject_class,
                rank=rank,
                steps=train_steps,
                lr=lr,
                batch_size=train_batch_size,
                prior_count=prior_count,
                prior_weight=prior_weight,
                resolution=resolution,
                seed=train_seed,
            )
        self.inpaint_model = Path(inpaint_model_from) if inpaint_model_from else None
        if task == "inpaint" and self.inpaint_model is None:
            raise DependencyError(
                "personalize: task 'inpaint' needs inpaint_model_from=DIR (an inpainting "
                "pipeline the adapter is loaded into)"
            )
        self.sample = {
            "sampler": sampler,
            "steps": steps,
            "guidance": guidance,
            "strength": strength,
            "height": height,
            "width": width,
            "batch_size": batch_size,
        }
        self.batch_size = int(batch_size)
        self.inner: Any = None
        if self.lora is not None:
            self._load()

    # -- fitting ---------------------------------------------------------------------------
    def prepare(self, root: Path, name: str, *, tracker: Any = None) -> list[ManifestItem]:
        """Train the adapter into ``root/name/lora`` (resuming) unless given one, and return
        the subject's photos as real items written under ``root/name/subject``."""
        if self.lora is None:
            assert self.config is not None and self.subject_from is not None
            folder = root / name / "lora"
            if not _is_lora_folder(folder):
                train_subject_lora(
                    self.base,
                    self.subject_from,
                    folder,
                    config=self.config,
                    prior_photos=self.prior_from,
                    device=self.device,
                    tracker=tracker,
                )
            self.lora = read_subject_lora(folder)
            self._load()
        return self._subject_items(root, name)

    def _subject_items(self, root: Path, name: str) -> list[ManifestItem]:
        from deepaudit.media import file_sha256, probe

        assert self.lora is not None
        items = []
        photos = sorted((self.lora.path / SUBJECT_DIR).glob("*.png"))
        for k, src in enumerate(photos):
            dest = root / name / SUBJECT_DIR / f"{k:06d}.png"
            if not dest.is_file():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
            info = probe(dest)
            items.append(
                ManifestItem(
                    id=f"{name}/{SUBJECT_DIR}/{k:06d}",
                    path=dest.relative_to(root).as_posix(),
                    sha256=file_sha256(dest),
                    kind="image",
                    label="real",
                    source="subject-photos",
                    attributes={"subject": self.lora.subject},
                    width=info.width,
                    height=info.height,
                )
            )
        return items

    def _load(self) -> None:
        assert self.lora is not None
        lora, opts = self.lora, self.sample
        if lora.backend == "pipeline":
            from deepaudit.generators.pretrained import PretrainedPipelineGenerator

            model = self.inpaint_model if self.task == "inpaint" else lora.base
            self.inner = PretrainedPipelineGenerator(
                name=self.name,
                task=self.task,
                model=model,
                sampler=opts["sampler"],
                steps=opts["steps"] or 30,
                guidance=7.5 if opts["guidance"] is None else opts["guidance"],
                strength=opts["strength"],
                height=opts["height"],
                width=opts["width"],
                batch_size=opts["batch_size"],
                device=self.device,
            )
            try:
                self.inner.pipe.load_lora_weights(lora.path, weight_name=PIPELINE_LORA_FILE)
            except (ValueError, KeyError, RuntimeError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise DependencyError(f"{lora.weights}: cannot load into {model}: {first}") from exc
            return
        if self.task != "text2img":
            raise DependencyError(f"{lora.path}: inpainting needs a pipeline-based subject LoRA")
        from deepaudit.generators.diffusion import TinyDiffusionGenerator

        family = json.loads((lora.base / META_NAME).read_text())["family"]
        self.inner = TinyDiffusionGenerator(
            name=self.name,
            family=family,
            sampler=opts["sampler"] or "ddim",
            model=lora.base,
            steps=opts["steps"],
            guidance=1.0 if opts["guidance"] is None else opts["guidance"],
            batch_size=opts["batch_size"],
            device=self.device,
        )
        apply_own_lora(self.inner.model.unet, lora)

    # -- generating -------------------------------------------------------------------------
    def subject_prompt(self, prompt: str | None) -> str:
        """The prompt with the subject in it (see the module docstring)."""
        assert self.lora is not None
        subject = f"{self.lora.token} {self.lora.class_noun}"
        if not prompt:
            return self.lora.instance_prompts[0]
        if "{subject}" in prompt:
            return prompt.replace("{subject}", subject)
        if self.lora.token in prompt.split():
            return prompt
        return f"{self.lora.instance_prompts[0]}, {prompt}"

    def _batch(self, requests: Sequence[GenerationRequest]) -> list[GeneratedItem]:
        if self.inner is None or self.lora is None:
            raise DeepauditError(
                f"{self.base}: the subject LoRA is not trained yet; run the entry through "
                "`deepaudit generate` or train it with `deepaudit generators personalize`"
            )
        lora = self.lora
        if lora.backend == "pipeline":
            asked = [replace(r, prompt=self.subject_prompt(r.prompt)) for r in requests]
        else:
            asked = [replace(r, class_label=lora.subject_class) for r in requests]
        items = self.inner.generate(asked)
        for item in items:
            params = {**item.info.params, **lora.manifest_params(), "lora": lora.path.name}
            item.info = replace(item.info, params=params)
            item.attributes = {**item.attributes, "subject": lora.subject}
        return items

    def describe(self) -> dict[str, Any]:
        if self.lora is None:
            return {"name": self.name, "base": str(self.base), "trained": False}
        return {
            **(self.inner.describe() if self.inner is not None else {}),
            "name": self.name,
            "task": self.task,
            "lora_path": str(self.lora.path),
            **self.lora.manifest_params(),
        }


@register_generator(
    "personalize",
    family="personalize",
    description="subject LoRA (DreamBooth): a few photos of one subject, drawn in new prompts",
)
def _personalize(**cfg: Any) -> PersonalizeGenerator:
    return PersonalizeGenerator(**cfg)
