"""Labelled items from a manifest, crops for detectors, and a torch Dataset for training.

Every detector sees the same input: an RGB uint8 square of ``input_size`` cut from the
image — centred at test time, random (plus flips and optional blur/JPEG augmentation in
the CNNDetection style) in training. Images smaller than the crop are upscaled first.
Cropping instead of resizing keeps the high-frequency traces that generators leave.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepaudit.errors import DeepauditError

if TYPE_CHECKING:
    from deepaudit.manifest import Manifest

__all__ = ["ItemSet", "LabeledItem", "crop", "items_from_manifest", "load_items"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabeledItem:
    id: str
    path: Path
    label: int  # 1 synthetic, 0 real
    kind: str = "image"
    source: str = ""
    generator: str | None = None  # sampler-level name for grids, e.g. "pixel-ddim"
    split: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    mask: Path | None = None  # ground truth of the edited region (white = generated), if any


@dataclass
class ItemSet:
    items: list[LabeledItem]
    root: Path | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[LabeledItem]:
        return iter(self.items)

    @property
    def labels(self) -> np.ndarray:
        return np.array([i.label for i in self.items], dtype=np.int64)

    def split(self, name: str) -> ItemSet:
        return ItemSet([i for i in self.items if i.split == name], self.root)

    def where(self, **kw: Any) -> ItemSet:
        return ItemSet(
            [i for i in self.items if all(getattr(i, k) == v for k, v in kw.items())], self.root
        )

    def summary(self) -> dict[str, Any]:
        gens: dict[str, int] = {}
        for i in self.items:
            key = i.generator or ("real" if i.label == 0 else i.source)
            gens[key] = gens.get(key, 0) + 1
        return {
            "items": len(self.items),
            "real": int((self.labels == 0).sum()),
            "synthetic": int((self.labels == 1).sum()),
            "sources": gens,
            "root": str(self.root) if self.root else None,
        }

    def require_both_classes(self, what: str) -> None:
        y = self.labels
        if not len(y):
            raise DeepauditError(f"{self.root}: the {what} set is empty")
        if y.min() == y.max():
            only = "real" if y[0] == 0 else "synthetic"
            raise DeepauditError(
                f"{self.root}: the {what} set has only {only} items ({len(y)}); "
                "a detector needs both real and synthetic"
            )


def load_items(manifest: str | os.PathLike[str], *, kinds: Sequence[str] = ("image",)) -> ItemSet:
    """Items of a manifest folder with labels; missing split means 'train'."""
    from deepaudit.manifest import read_manifest

    return items_from_manifest(read_manifest(manifest), kinds=kinds)


def items_from_manifest(m: Manifest, *, kinds: Sequence[str] = ("image",)) -> ItemSet:
    """Items of a manifest already read (a fold made in memory, say); see :func:`load_items`."""
    out = []
    for it in m.items:
        if it.kind not in kinds:
            continue
        gen = None
        if it.label == "synthetic":
            gen = it.source
        mask = it.extra.get("mask")
        out.append(
            LabeledItem(
                id=it.id,
                path=m.resolve(it),
                label=1 if it.label == "synthetic" else 0,
                kind=it.kind,
                source=it.source,
                generator=gen,
                split=it.split or "train",
                attributes=dict(it.attributes),
                mask=m.root / str(mask) if isinstance(mask, str) and mask else None,
            )
        )
    return ItemSet(out, m.root)


def crop(image: np.ndarray, size: int, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """A ``size``² crop: centred, or random (with a random flip) when ``rng`` is given."""
    from PIL import Image

    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    h, w = image.shape[:2]
    if min(h, w) < size:
        s = size / min(h, w)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        image = np.asarray(Image.fromarray(image).resize((nw, nh), Image.Resampling.BICUBIC))
        h, w = image.shape[:2]
    if rng is None:
        y, x = (h - size) // 2, (w - size) // 2
        return np.ascontiguousarray(image[y : y + size, x : x + size])
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    out = image[y : y + size, x : x + size]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def augment(
    image: np.ndarray, rng: np.random.Generator, *, blur_p: float, jpeg_p: float
) -> np.ndarray:
    """CNNDetection-style: Gaussian blur σ∈[0,3] with probability ``blur_p``, JPEG q∈[30,100]."""
    from deepaudit.perturb import Perturbation

    if blur_p and rng.random() < blur_p:
        image = Perturbation("blur", float(rng.uniform(0.1, 3.0))).apply(image)
    if jpeg_p and rng.random() < jpeg_p:
        image = Perturbation("jpeg", float(int(rng.integers(30, 101)))).apply(image)
    return image


def read_for_detector(item: LabeledItem, *, frame: int | None = None) -> np.ndarray:
    """Decode an item's pixels: the image, or one frame (middle by default) of a video."""
    from deepaudit.media import read_image, read_video

    if item.kind == "video":
        if frame is None:
            return read_video(item.path, num_frames=1).frames[0]
        return read_video(item.path).frames[frame]
    return read_image(item.path)


class CropDataset:
    """A torch-style Dataset of (uint8 CHW crop, label); broken files are skipped and counted."""

    def __init__(
        self,
        items: ItemSet,
        size: int,
        *,
        train: bool,
        seed: int = 0,
        blur_p: float = 0.0,
        jpeg_p: float = 0.0,
        cache_bytes: int = 2 << 30,
    ) -> None:
        self.items = items.items
        self.size = size
        self.train = train
        self.seed = seed
        self.blur_p, self.jpeg_p = blur_p, jpeg_p
        self.cache_bytes = cache_bytes
        self._cache: dict[int, np.ndarray] = {}
        self._cached = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int) -> tuple[Any, int, int]:
        """``key`` = epoch × len + index (see :class:`EpochSampler`): augmentation differs per
        epoch while persistent DataLoader workers keep their decoded-image caches."""
        import torch

        epoch, idx = divmod(int(key), len(self.items))
        item = self.items[idx]
        img = self._cache.get(idx)
        if img is None:
            try:
                img = read_for_detector(item)
            except DeepauditError as exc:
                logger.warning("skipping %s", exc)
                blank = torch.zeros((3, self.size, self.size), dtype=torch.uint8)
                return blank, item.label, 0  # valid=0: the trainer drops it
            if self._cached + img.nbytes <= self.cache_bytes:  # decode once, crop every epoch
                self._cache[idx] = img
                self._cached += img.nbytes
        if self.train:
            rng = np.random.default_rng((self.seed, epoch, idx))
            # blur and JPEG keep the size, so the random crop is the final one
            img = augment(
                crop(img, self.size, rng=rng), rng, blur_p=self.blur_p, jpeg_p=self.jpeg_p
            )
        else:
            img = crop(img, self.size)
        t = torch.from_numpy(np.array(img)).permute(2, 0, 1)
        return t, item.label, 1


class EpochSampler:
    """Shuffled indices for one epoch, offset by epoch × n (decoded by CropDataset).

    With ``weights`` an epoch is n draws with replacement, item i with probability
    ∝ weights[i] (group-balanced sampling for fairness mitigation); still seeded per epoch,
    so a resumed run draws what an uninterrupted one would.

    The sampler lives in the main process, so ``set_epoch`` reaches persistent workers;
    with ``num_replicas`` > 1 each rank takes its share of the same permutation (DDP).
    """

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        rank: int = 0,
        num_replicas: int = 1,
        weights: Sequence[float] | None = None,
    ) -> None:
        self.n, self.seed, self.rank, self.num_replicas = n, seed, rank, num_replicas
        self.epoch = 0
        self.start = 0
        self.p: np.ndarray | None = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
                raise DeepauditError(
                    f"sample weights must be {n} finite non-negative numbers, not all zero"
                )
            self.p = w / w.sum()

    def set_epoch(self, epoch: int, *, start: int = 0) -> None:
        """The epoch to draw; ``start`` skips this rank's first indices (a run resumed from
        a checkpoint made inside the epoch sees the rest of the same permutation)."""
        self.epoch, self.start = epoch, start

    def __iter__(self):
        rng = np.random.default_rng((self.seed, self.epoch))
        if self.p is None:
            perm = rng.permutation(self.n)
        else:  # weighted: n draws with replacement, e.g. group-balanced sampling
            perm = rng.choice(self.n, size=self.n, replace=True, p=self.p)
        if self.num_replicas > 1:  # pad so every rank gets the same number of items
            per = -(-self.n // self.num_replicas)
            perm = np.resize(perm, per * self.num_replicas)[self.rank :: self.num_replicas]
        return iter((perm[self.start :] + self.epoch * self.n).tolist())

    def __len__(self) -> int:
        return -(-self.n // self.num_replicas) if self.num_replicas > 1 else self.n
