"""Where an image was changed: a detector that outputs a map, and the metrics for maps.

Inpainting and instruction edits change part of a real photo, so a whole-image score says
little; analysts ask *where*. ``localize`` is a timm backbone (features at strides 4 and 8,
fused FPN-style) with a light convolutional head that predicts, per pixel, the probability
that the pixel was generated. It is fully convolutional: trained on crops, it maps whole
images of any size (:meth:`LocalizationDetector.predict_map`).

Ground truth comes from the manifest: an item's ``mask`` (a PNG beside it, white =
manipulated; the suite writes one for every inpainted or edited item), an all-ones map for a
synthetic item without a mask (generated from scratch), an all-zeros map for a real one. It
trains with the shared network trainer (:func:`deepaudit.detectors.train.fit_network`: exact
resume, checkpoints, DDP, mlflow) under a per-pixel binary cross-entropy.

It is also a whole-image detector, so the scan can use it like any other: the image score is
the mean of the highest 2% of pixel probabilities (a small edited region still counts).

Metrics (:func:`localization_report`), as the localisation benchmarks report them (e.g.
OpenSDI, CVPR 2025): pixel AUC over the manipulated images' pixels, and per-image F1 and IoU at
the map threshold chosen on the validation split (the F1-best one), with bootstrap CIs over
images; real images add the fraction of their pixels flagged; per generator; and the same
under JPEG and resizing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.detectors._registry import register_detector
from deepaudit.detectors.base import Detector, load_module_weights, save_module_weights
from deepaudit.detectors.data import ItemSet, LabeledItem, read_for_detector
from deepaudit.errors import DeepauditError

__all__ = [
    "LocalizationDetector",
    "MaskCropDataset",
    "localization_report",
    "read_mask",
    "regions",
]

logger = logging.getLogger(__name__)

TOP_FRACTION = 0.02  # the image score: mean of the top 2% pixel probabilities
_PIXELS_PER_IMAGE = 4096  # pixels sampled per image for the pooled pixel AUC


def _localizer_module(backbone: str, seed: int) -> Any:
    import timm
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(seed)
    try:
        feats = timm.create_model(
            backbone, pretrained=False, features_only=True, out_indices=(1, 2)
        )
    except RuntimeError as exc:
        raise ValueError(f"timm has no model {backbone!r} ({exc})") from None
    c4, c8 = feats.feature_info.channels()
    cfg = getattr(feats, "pretrained_cfg", {}) or {}
    mean = cfg.get("mean", (0.485, 0.456, 0.406))
    std = cfg.get("std", (0.229, 0.224, 0.225))

    class Localizer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.feats = feats
            self.lateral = nn.Conv2d(c8, c4, 1)
            self.head = nn.Sequential(
                nn.Conv2d(c4, 32, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(32, 1, 1)
            )
            self.register_buffer(
                "mean", torch.tensor(mean).view(1, 3, 1, 1) * 255, persistent=False
            )
            self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255, persistent=False)

        def forward(self, x: Any) -> Any:  # uint8 NCHW -> per-pixel logits (N, 1, H, W)
            h, w = x.shape[-2:]
            f4, f8 = self.feats((x.float() - self.mean) / self.std)
            f = f4 + F.interpolate(self.lateral(f8), size=f4.shape[-2:], mode="nearest")
            return F.interpolate(self.head(f), size=(h, w), mode="bilinear", align_corners=False)

    return Localizer()


def read_mask(item: LabeledItem, shape: tuple[int, int]) -> np.ndarray:
    """The item's ground truth as an (H, W) bool map at ``shape``: its mask file (white =
    manipulated), all True for a synthetic item without one, all False for a real one."""
    if item.label == 0:
        return np.zeros(shape, bool)
    if item.mask is None:
        return np.ones(shape, bool)
    from PIL import Image

    try:
        with Image.open(item.mask) as im:
            m = im.convert("L")
            if m.size != (shape[1], shape[0]):
                m = m.resize((shape[1], shape[0]), Image.Resampling.NEAREST)
            return np.asarray(m) > 127
    except OSError as exc:
        raise DeepauditError(f"{item.mask}: cannot read the mask: {exc}") from None


class MaskCropDataset:
    """(uint8 CHW crop, float 1×S×S mask crop, valid) for training a localizer; the image and
    its mask get the same random crop and flip. Broken files are skipped (valid = 0)."""

    def __init__(self, items: ItemSet, size: int, *, train: bool, seed: int = 0) -> None:
        self.items = items.items
        self.size = size
        self.train = train
        self.seed = seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int) -> tuple[Any, Any, int]:
        import torch

        epoch, idx = divmod(int(key), len(self.items))
        item = self.items[idx]
        s = self.size
        try:
            img = read_for_detector(item)
            mask = read_mask(item, img.shape[:2])
        except DeepauditError as exc:
            logger.warning("skipping %s", exc)
            return torch.zeros((3, s, s), dtype=torch.uint8), torch.zeros((1, s, s)), 0
        img, mask = _joint_crop(img, mask, s, np.random.default_rng((self.seed, epoch, idx)))
        if self.train and (epoch + idx) % 2:
            img, mask = img[:, ::-1], mask[:, ::-1]
        # decoded images may be read-only views: torch wants its own writable copy
        x = torch.from_numpy(np.require(img, requirements=("C", "W"))).permute(2, 0, 1)
        y = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None]
        return x, y, 1


def _joint_crop(
    img: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape[:2]
    if min(h, w) < size:  # upscale small images (and their masks) to the crop size
        from PIL import Image

        k = size / min(h, w)
        nw, nh = max(size, round(w * k)), max(size, round(h * k))
        img = np.asarray(Image.fromarray(img).resize((nw, nh), Image.Resampling.BICUBIC))
        m = Image.fromarray(mask.astype(np.uint8) * 255).resize((nw, nh), Image.Resampling.NEAREST)
        mask = np.asarray(m) > 127
        h, w = nh, nw
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return img[y : y + size, x : x + size], mask[y : y + size, x : x + size]


def _has_masks(items: ItemSet | None) -> bool:
    return items is not None and any(i.label == 1 and i.mask is not None for i in items)


def _val_pixel_auc(det: LocalizationDetector, val: ItemSet) -> float:
    """Pixel AUC on val's edited images (with a few real ones): picks a localiser's epoch."""
    edited = [i for i in val if i.label == 1 and i.mask is not None]
    real = [i for i in val if i.label == 0][: len(edited)]
    value = _pixel_auc(_maps_and_truths(det, edited + real))
    return math.nan if value is None else value


def _pixel_loss(logits: Any, target: Any) -> Any:
    """Class-balanced per-pixel BCE: generated pixels are rare (edits cover a fraction of the
    edited images, none of the real ones), and an unweighted loss learns "nothing anywhere"."""
    from torch.nn import functional as F

    pos = target.mean().clamp(1e-3, 1 - 1e-3)
    weight = target * (0.5 / pos) + (1 - target) * (0.5 / (1 - pos))
    return F.binary_cross_entropy_with_logits(logits, target, weight=weight)


@register_detector("localize")
class LocalizationDetector(Detector):
    """A per-pixel detector of generated regions (see the module docstring)."""

    def __init__(
        self,
        *,
        model: str = "resnet10t",
        epochs: int = 10,
        batch_size: int = 16,
        lr: float = 1e-3,
        patience: int = 3,
        map_threshold: float = 0.5,
        max_side: int = 1024,
        device: str = "auto",
        precision: str = "auto",
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.model = model
        self.epochs, self.batch_size, self.lr = int(epochs), int(batch_size), float(lr)
        self.patience = int(patience)
        self.map_threshold = float(map_threshold)
        self.max_side = int(max_side)
        self.device, self.precision = device, precision
        self.module = _localizer_module(model, self.seed)
        self._policy: Any = None

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "model": self.model,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "patience": self.patience,
            "map_threshold": self.map_threshold,
            "max_side": self.max_side,
        }

    # -- training --------------------------------------------------------------------------
    def fit(self, train: ItemSet, val: ItemSet | None = None, **kw: Any) -> Detector:
        from deepaudit.detectors.train import fit_network, run_options

        train.require_both_classes("training")
        history = fit_network(
            self,
            self.module,
            train,
            val,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            patience=self.patience,
            **run_options(self, kw),
            dataset=MaskCropDataset(train, self.input_size, train=True, seed=self.seed),
            loss_fn=_pixel_loss,
            select=_val_pixel_auc if _has_masks(val) else None,
            select_name="val_pixel_auc",
        )
        self.training_summary["history"] = history
        self._policy = None
        if val is not None:
            self.map_threshold = self._best_map_threshold(val)
            self.training_summary["map_threshold_from"] = "val (F1-best over edited items)"
        return self

    def _best_map_threshold(self, val: ItemSet) -> float:
        """The map threshold with the best mean F1 on val's masked items (0.5 without any)."""
        pairs = _maps_and_truths(self, [i for i in val if i.label == 1 and i.mask is not None])
        if not pairs:
            return self.map_threshold
        grid = np.linspace(0.05, 0.95, 19)
        f1s = [np.mean([_f1_iou(p >= t, g)[0] for p, g in pairs]) for t in grid]
        return float(grid[int(np.argmax(f1s))])

    # -- inference -------------------------------------------------------------------------
    def _device_policy(self) -> Any:
        if self._policy is None:
            from deepaudit.detectors.engine import inference_policy

            self._policy = inference_policy(self.module, self.device, self.precision)
        return self._policy

    def _logits(self, x: np.ndarray) -> np.ndarray:
        """Per-pixel logits for a uint8 NHWC batch, on the policy's device and precision."""
        import torch

        policy = self._device_policy()
        dev = policy.torch_device()
        self.module.to(dev).eval()
        t = torch.from_numpy(np.require(x, requirements=("C", "W"))).permute(0, 3, 1, 2).to(dev)
        with torch.inference_mode(), policy.autocast():
            out = self.module(t.contiguous(memory_format=torch.channels_last))
        return out.float().cpu().numpy()[:, 0]

    def score_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """P(synthetic) per prepared crop: the mean of its top 2% pixel probabilities."""
        probs = 1.0 / (1.0 + np.exp(-np.clip(self._logits(inputs), -50, 50)))
        flat = probs.reshape(len(probs), -1)
        k = max(1, int(flat.shape[1] * TOP_FRACTION))
        return np.sort(flat, axis=1)[:, -k:].mean(axis=1)

    def predict_map(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """An (H, W) float32 map of P(generated) per image, at the image's own size (images
        larger than ``max_side`` are mapped at that size and the map scaled back)."""
        from PIL import Image

        out: list[np.ndarray] = []
        for img in images:
            h, w = img.shape[:2]
            k = min(1.0, self.max_side / max(h, w))
            work = img
            if k < 1.0:
                size = (max(32, round(w * k)), max(32, round(h * k)))
                work = np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BILINEAR))
            wh, ww = work.shape[:2]
            ph, pw = -wh % 32, -ww % 32  # the backbone's stride: pad by reflection
            if ph or pw:
                work = np.pad(work, ((0, ph), (0, pw), (0, 0)), mode="reflect")
            logits = self._logits(work[None])[0][:wh, :ww]
            prob = (1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))).astype(np.float32)
            if prob.shape != (h, w):
                prob = np.asarray(
                    Image.fromarray(prob).resize((w, h), Image.Resampling.BILINEAR), np.float32
                )
            out.append(prob)
        return out

    # -- weights ---------------------------------------------------------------------------
    def _save_weights(self, root: Path) -> None:
        save_module_weights(self.module, root)

    def _load_weights(self, root: Path) -> None:
        load_module_weights(self.module, root)


# --------------------------------------------------------------------------- metrics


def _f1_iou(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    tp = float(np.logical_and(pred, truth).sum())
    fp = float(np.logical_and(pred, ~truth).sum())
    fn = float(np.logical_and(~pred, truth).sum())
    if tp + fp + fn == 0:
        return 1.0, 1.0  # nothing to find and nothing found
    return 2 * tp / (2 * tp + fp + fn), tp / (tp + fp + fn)


def _maps_and_truths(
    det: LocalizationDetector,
    items: Sequence[LabeledItem],
    perturb: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for item in items:
        try:
            img = read_for_detector(item)
            truth = read_mask(item, img.shape[:2])
        except DeepauditError as exc:
            logger.warning("skipping %s", exc)
            continue
        if perturb is not None:
            img = perturb(img)
            if img.shape[:2] != truth.shape:
                from PIL import Image

                m = Image.fromarray(truth.astype(np.uint8) * 255)
                m = m.resize((img.shape[1], img.shape[0]), Image.Resampling.NEAREST)
                truth = np.asarray(m) > 127
        (prob,) = det.predict_map([img])
        out.append((prob, truth))
    return out


def _mean_ci(values: np.ndarray, bootstrap: int, seed: int = 0) -> dict[str, Any]:
    if not len(values):
        return {"mean": None, "ci": [None, None], "n": 0}
    mean = float(values.mean())
    if bootstrap <= 0 or len(values) < 2:
        return {"mean": mean, "ci": [None, None], "n": len(values)}
    rng = np.random.default_rng(seed)
    boots = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(bootstrap)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"mean": mean, "ci": [float(lo), float(hi)], "n": len(values)}


def _pixel_auc(pairs: list[tuple[np.ndarray, np.ndarray]], seed: int = 0) -> float | None:
    from deepaudit.detectors.metrics import auc

    rng = np.random.default_rng(seed)
    ys, ss = [], []
    for prob, truth in pairs:
        flat_p, flat_t = prob.ravel(), truth.ravel()
        idx = rng.choice(flat_p.size, min(flat_p.size, _PIXELS_PER_IMAGE), replace=False)
        ys.append(flat_t[idx])
        ss.append(flat_p[idx])
    if not ys:
        return None
    y, s = np.concatenate(ys).astype(int), np.concatenate(ss)
    if y.min() == y.max():
        return None
    value = auc(y, s)
    return None if value is None or math.isnan(value) else float(value)


def _report_on(
    det: LocalizationDetector,
    edited: list[LabeledItem],
    real: list[LabeledItem],
    threshold: float,
    bootstrap: int,
    perturb: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, Any]:
    pairs = _maps_and_truths(det, edited, perturb)
    scores = np.array([_f1_iou(p >= threshold, t) for p, t in pairs]).reshape(-1, 2)
    out: dict[str, Any] = {
        "edited_images": len(pairs),
        "pixel_auc": _pixel_auc(pairs),
        "f1": _mean_ci(scores[:, 0], bootstrap),
        "iou": _mean_ci(scores[:, 1], bootstrap),
    }
    if real:
        flagged = np.array(
            [float((p >= threshold).mean()) for p, _ in _maps_and_truths(det, real, perturb)]
        )
        out["real_images"] = len(flagged)
        out["real_pixels_flagged"] = _mean_ci(flagged, bootstrap)
    return out


def localization_report(
    det: LocalizationDetector,
    items: ItemSet,
    *,
    robustness: Sequence[str] = ("jpeg:75", "resize:0.5"),
    bootstrap: int = 200,
    max_real: int = 200,
) -> dict[str, Any]:
    """Pixel AUC, F1 and IoU (with bootstrap CIs over images) on the synthetic items that have
    a mask, per generator, and under each perturbation; real images add the fraction of their
    pixels flagged. Raises a one-line error when no item has a mask."""
    from deepaudit.perturb import parse_perturbation

    edited = [i for i in items if i.label == 1 and i.mask is not None]
    if not edited:
        raise DeepauditError(
            f"{items.root}: no synthetic item has a mask; localisation needs edited images "
            "with ground truth (sd-inpaint, self-inpaint or instruction edits)"
        )
    real = [i for i in items if i.label == 0][:max_real]
    t = det.map_threshold
    result: dict[str, Any] = {
        "map_threshold": t,
        "overall": _report_on(det, edited, real, t, bootstrap),
        "per_generator": {},
        "robustness": {},
    }
    for g in sorted({i.generator or i.source for i in edited}):
        sub = [i for i in edited if (i.generator or i.source) == g]
        result["per_generator"][g] = _report_on(det, sub, [], t, bootstrap)
    for spec in robustness:
        p = parse_perturbation(spec)
        rep = _report_on(det, edited, [], t, 0, perturb=lambda im, p=p: p.apply(im))
        result["robustness"][p.spec] = {
            "pixel_auc": rep["pixel_auc"],
            "f1": rep["f1"]["mean"],
            "iou": rep["iou"]["mean"],
        }
    return result


def regions(prob: np.ndarray, threshold: float, *, min_area: float = 0.002) -> list[dict[str, Any]]:
    """Bounding boxes of the connected areas at or over ``threshold`` (each at least
    ``min_area`` of the image), largest first, with their mean probability."""
    import cv2

    binary = (prob >= threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    floor = max(1, int(min_area * prob.size))
    out = []
    for k in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[k])
        if area < floor:
            continue
        mean = float(prob[labels == k].mean())
        out.append({"box": [x, y, w, h], "area": area, "mean_score": round(mean, 4)})
    return sorted(out, key=lambda r: -r["area"])
