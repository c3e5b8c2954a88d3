"""Audit of a generative model through the dataset it produced.

For the synthetic items of one generator (a ``source`` in a manifest) — against the real
items of the same manifest or of another one:

- provenance coverage: shares of outputs with a valid C2PA manifest, an AI declaration, an
  invisible watermark, AI metadata;
- detectability: AUC of each given detector on the outputs against the real set;
- diversity: mean pairwise cosine distance of small grey thumbnails (or a detector-free
  feature), and the near-duplicate rate by 64-bit average hash (Hamming distance ≤ 4);
- representation: for each prompt (or class), the distribution of an attribute over the
  outputs, from a pluggable classifier — the manifest's own attribute, a user's callable, or
  a zero-shot CLIP model from local weights — and its imbalance: DALL-Eval's mean absolute
  deviation from uniform, (1/k) Σ |share_i − 1/k|, and the largest |share_i − 1/k| (HEIM).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from deepaudit.errors import DeepauditError, DependencyError

__all__ = [
    "AttributeClassifier",
    "ZeroShotCLIP",
    "audit_generator",
    "imbalance",
    "pairwise_diversity",
    "write_generator_audit",
]

logger = logging.getLogger(__name__)


class AttributeClassifier(Protocol):
    labels: Sequence[str]

    def predict(self, images: Sequence[np.ndarray]) -> list[str]: ...


class ZeroShotCLIP:
    """Zero-shot attribute classifier: a CLIP model from a local folder + text prompts."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        labels: Sequence[str],
        *,
        template: str = "a photo of a {}",
    ) -> None:
        from transformers import CLIPModel, CLIPProcessor

        root = Path(path)
        if not (root / "config.json").is_file():
            raise DependencyError(
                f"{root}: not a CLIP model folder (no config.json); nothing is downloaded"
            )
        self.model = CLIPModel.from_pretrained(root).eval()
        self.processor = CLIPProcessor.from_pretrained(root)
        self.labels = list(labels)
        self.prompts = [template.format(lab) for lab in self.labels]

    def predict(self, images: Sequence[np.ndarray]) -> list[str]:
        import torch

        pics = [np.ascontiguousarray(im) for im in images]  # no negative strides for torch
        inputs = self.processor(text=self.prompts, images=pics, return_tensors="pt", padding=True)
        with torch.inference_mode():
            logits = self.model(**inputs).logits_per_image
        return [self.labels[i] for i in logits.argmax(dim=1).tolist()]


class ManifestAttribute:
    """The attribute the manifest already records for each item (e.g. a requested class)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.labels: list[str] = []


def imbalance(counts: dict[str, int], k: int | None = None) -> dict[str, float | None]:
    """MAD from uniform and the largest deviation, over ``k`` groups (default: those seen)."""
    total = sum(counts.values())
    k = k or len(counts)
    if not total or not k:
        return {"mad_from_uniform": None, "max_abs_deviation": None}
    shares = [c / total for c in counts.values()] + [0.0] * max(0, k - len(counts))
    dev = [abs(s - 1 / k) for s in shares]
    return {"mad_from_uniform": float(np.mean(dev)), "max_abs_deviation": float(max(dev))}


def _thumb(img: np.ndarray, side: int = 16) -> np.ndarray:
    from PIL import Image

    grey = Image.fromarray(img).convert("L").resize((side, side), Image.Resampling.BILINEAR)
    return np.asarray(grey, dtype=np.float32).ravel()


def _ahash(img: np.ndarray) -> int:
    t = _thumb(img, 8)
    bits = (t > t.mean()).astype(np.uint8)
    return int("".join(map(str, bits)), 2)


def pairwise_diversity(
    images: Sequence[np.ndarray], *, max_items: int = 500, seed: int = 0
) -> dict[str, Any]:
    """Mean pairwise cosine distance of centred thumbnails, and the near-duplicate rate."""
    if len(images) < 2:
        return {"mean_pairwise_distance": None, "near_duplicate_rate": None, "n": len(images)}
    idx = np.random.default_rng(seed).permutation(len(images))[:max_items]
    feats = np.stack([_thumb(images[i]) for i in idx])
    feats -= feats.mean(axis=1, keepdims=True)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True) + 1e-8
    sim = feats @ feats.T
    iu = np.triu_indices(len(idx), 1)
    hashes = [_ahash(images[i]) for i in idx]
    dup = set()
    for a in range(len(hashes)):
        for b in range(a + 1, len(hashes)):
            if bin(hashes[a] ^ hashes[b]).count("1") <= 4:
                dup.add(b)
    return {
        "mean_pairwise_distance": float(np.mean(1.0 - sim[iu])),
        "near_duplicate_rate": len(dup) / len(idx),
        "n": len(idx),
    }


def audit_generator(
    dataset: str | os.PathLike[str],
    *,
    source: str | None = None,
    real: str | os.PathLike[str] | None = None,
    detectors: Sequence[str | os.PathLike[str]] = (),
    trust_anchors: str | os.PathLike[str] | None = None,
    classifier: AttributeClassifier
    | ManifestAttribute
    | Callable[[Sequence[np.ndarray]], list[str]]
    | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Audit the generator ``source`` (default: every synthetic item) of a dataset folder."""
    from deepaudit.audit.metadata import read_ai_metadata
    from deepaudit.audit.provenance import inspect_provenance
    from deepaudit.audit.watermark import detect_watermark
    from deepaudit.c2pa_layer import make_context
    from deepaudit.detectors import load_detector
    from deepaudit.detectors.data import load_items
    from deepaudit.detectors.inference import score_items
    from deepaudit.detectors.metrics import auc
    from deepaudit.manifest import read_manifest
    from deepaudit.media import read_image

    m = read_manifest(dataset)
    synth = [
        i
        for i in m.items
        if i.label == "synthetic" and i.kind == "image" and (source is None or i.source == source)
    ]
    if not synth:
        sources = sorted({i.source for i in m.items if i.label == "synthetic"})
        raise DeepauditError(
            f"{m.path}: no synthetic images from {source!r}; "
            f"sources: {', '.join(sources) or 'none'}"
        )
    ctx = make_context(trust_anchors)
    cov = {
        "c2pa_valid": 0,
        "c2pa_trusted": 0,
        "ai_declaration": 0,
        "watermark": 0,
        "ai_metadata": 0,
    }
    images: list[np.ndarray] = []
    for k, it in enumerate(synth):
        path = m.resolve(it)
        rec = inspect_provenance(path, context=ctx)
        cov["c2pa_valid"] += rec.state in ("trusted", "untrusted")
        cov["c2pa_trusted"] += rec.state == "trusted"
        cov["ai_declaration"] += rec.state in ("trusted", "untrusted") and rec.ai_declaration in (
            "ai-generated",
            "ai-edited",
        )
        try:
            img = read_image(path)
        except DeepauditError as exc:
            logger.warning("skipping %s", exc)
            continue
        images.append(img)
        with contextlib.suppress(ValueError):  # too small to carry a mark
            cov["watermark"] += detect_watermark(img).detected
        with contextlib.suppress(DeepauditError):
            cov["ai_metadata"] += read_ai_metadata(path).declares_ai
        if progress:
            progress(k + 1, len(synth))
    n = len(synth)
    result: dict[str, Any] = {
        "dataset": str(m.path),
        "source": source or "all synthetic",
        "items": n,
        "provenance_coverage": {k: v / n for k, v in cov.items()},
        "diversity": pairwise_diversity(images),
    }
    real_root = Path(real) if real is not None else Path(dataset)
    if detectors:
        all_items = load_items(real_root)
        reals = [i for i in all_items if i.label == 0]
        if not reals:
            raise DeepauditError(f"{real_root}: no real images to compare against")
        from deepaudit.detectors.data import ItemSet, LabeledItem

        ours = [
            LabeledItem(it.id, m.resolve(it), 1, source=it.source, generator=it.source)
            for it in synth
        ]
        pool = ItemSet(reals + ours, real_root)
        detect = {}
        for d in detectors:
            det = load_detector(d)
            s = score_items(det, pool)
            ok = ~np.isnan(s)
            value = auc(pool.labels[ok], s[ok])
            detect[Path(d).name] = {
                "auc": None if np.isnan(value) else value,
                "real": len(reals),
                "synthetic": len(ours),
            }
        result["detectability"] = detect
    if classifier is not None:
        result["representation"] = _representation(synth, images, classifier)
    return result


def write_generator_audit(result: dict[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Save an :func:`audit_generator` result as ``generator_audit.json`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "generator_audit.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path


def _representation(items, images, classifier) -> dict[str, Any]:
    if isinstance(classifier, ManifestAttribute):
        predicted = [str(it.attributes.get(classifier.name, "n/a")) for it in items]
        name = f"manifest attribute {classifier.name!r}"
        k = None
    else:
        predict = classifier.predict if hasattr(classifier, "predict") else classifier
        predicted = []
        for i in range(0, len(images), 32):
            predicted.extend(predict(images[i : i + 32]))
        name = type(classifier).__name__
        k = len(getattr(classifier, "labels", []) or []) or None
    by_prompt: dict[str, dict[str, int]] = {}
    for it, lab in zip(items, predicted, strict=False):
        key = (it.generator.prompt if it.generator and it.generator.prompt else None) or str(
            (it.generator.params or {}).get("class", "all") if it.generator else "all"
        )
        by_prompt.setdefault(key, {})
        by_prompt[key][lab] = by_prompt[key].get(lab, 0) + 1
    overall: dict[str, int] = {}
    for counts in by_prompt.values():
        for lab, c in counts.items():
            overall[lab] = overall.get(lab, 0) + c
    return {
        "classifier": name,
        "overall": {"counts": overall, **imbalance(overall, k)},
        "by_prompt": {p: {"counts": c, **imbalance(c, k)} for p, c in by_prompt.items()},
    }
