"""Detectors that are a fixed feature extractor plus a logistic-regression head.

- ``spectral``: log-magnitude Fourier spectrum, azimuthally averaged per colour channel,
  plus the high-frequency energy ratio — the periodic upsampling traces of generators sit
  there (Durall et al. 2020, Frank et al. 2020). Fast CPU baseline.
- ``probe``: a frozen timm backbone's pooled features + a linear probe (UnivFD-style:
  Ojha et al. 2023 use CLIP ViT-L/14). Give ``weights=`` a local checkpoint; with random
  weights the probe still trains but is weak (said in the config).
- ``reconstruction``: distance between an image and its reconstruction through an
  autoencoder loaded from a diffusers folder (AEROBLADE, Ricker et al. 2024; DIRE uses the
  whole diffusion model): images made by a latent diffusion model reconstruct better
  through its own autoencoder. The suite's latent models work (``<model>/vqvae``), so would
  Stable Diffusion's VAE from a local path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.detectors._registry import register_detector
from deepaudit.detectors.base import Detector, LinearHead
from deepaudit.detectors.data import ItemSet, crop, read_for_detector
from deepaudit.errors import DeepauditError, DependencyError

__all__ = ["FeatureDetector", "ProbeDetector", "ReconstructionDetector", "SpectralDetector"]

logger = logging.getLogger(__name__)


class FeatureDetector(Detector):
    """Features of centred (and, in training, random) crops → standardise → logistic regression."""

    def __init__(self, *, c: float = 1.0, train_crops: int = 2, **kw: Any) -> None:
        super().__init__(**kw)
        self.c = float(c)
        self.train_crops = int(train_crops)
        self.head: LinearHead | None = None

    def params(self) -> dict[str, Any]:
        return {**super().params(), "c": self.c, "train_crops": self.train_crops}

    def features(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 → (N, D) float."""
        raise NotImplementedError

    def _decode(self, items: ItemSet, n_crops: int, rng, progress) -> tuple[np.ndarray, np.ndarray]:
        crops, labels = [], []
        skipped = 0
        for k, item in enumerate(items):
            try:
                img = read_for_detector(item)
            except DeepauditError as exc:
                logger.warning("skipping %s", exc)
                skipped += 1
                continue
            if rng is None:
                crops.append(crop(img, self.input_size))
                labels.append(item.label)
            else:
                for _ in range(n_crops):
                    crops.append(crop(img, self.input_size, rng=rng))
                    labels.append(item.label)
            if progress:
                progress(k + 1, len(items))
        if skipped:
            self.training_summary["skipped_broken"] = skipped
        if not crops:
            raise DeepauditError(f"{items.root}: no readable images")
        return np.stack(crops), np.asarray(labels)

    def fit(
        self,
        train: ItemSet,
        val: ItemSet | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
        **_: Any,
    ) -> FeatureDetector:
        train.require_both_classes("training")
        rng = np.random.default_rng(self.seed)
        x, y = self._decode(train, self.train_crops, rng, progress)
        feats = self._features_batched(x)
        self.head = LinearHead(self.c).fit(feats, y, seed=self.seed)
        return self

    def _features_batched(self, crops: np.ndarray, batch: int = 256) -> np.ndarray:
        return np.concatenate(
            [self.features(crops[i : i + batch]) for i in range(0, len(crops), batch)]
        )

    def score_inputs(self, inputs: np.ndarray) -> np.ndarray:
        if self.head is None:
            raise DeepauditError(f"detector {self.name!r} is not trained")
        if not len(inputs):
            return np.zeros(0)
        return self.head.predict_proba(self._features_batched(inputs))

    def _save_weights(self, root: Path) -> None:
        (root / "head.json").write_text(json.dumps(self.head.to_json()))

    def _load_weights(self, root: Path) -> None:
        self.head = LinearHead.from_json(json.loads((root / "head.json").read_text()))


@register_detector("spectral")
class SpectralDetector(FeatureDetector):
    """Azimuthally averaged log spectrum per channel + high-frequency energy ratio."""

    def features(self, crops: np.ndarray) -> np.ndarray:
        x = crops.astype(np.float32) / 255.0
        x = x - x.mean(axis=(1, 2), keepdims=True)
        spec = np.abs(np.fft.fftshift(np.fft.fft2(x, axes=(1, 2)), axes=(1, 2)))
        logspec = np.log1p(spec)
        n = crops.shape[1]
        yy, xx = np.indices((n, n)) - n // 2
        radius = np.sqrt(yy**2 + xx**2).astype(np.int64)
        n_bins = n // 2
        radius = np.minimum(radius, n_bins - 1)
        counts = np.bincount(radius.ravel(), minlength=n_bins)
        feats = []
        for ch in range(3):
            flat = logspec[..., ch].reshape(len(crops), -1)
            sums = np.stack(
                [np.bincount(radius.ravel(), weights=row, minlength=n_bins) for row in flat]
            )
            feats.append(sums / counts)
        power = spec.sum(axis=3) ** 2
        high = power[:, radius >= n_bins // 2].sum(axis=1) / (
            power.reshape(len(crops), -1).sum(axis=1) + 1e-12
        )
        feats.append(np.log(high[:, None] + 1e-12))
        return np.concatenate(feats, axis=1)


@register_detector("probe")
class ProbeDetector(FeatureDetector):
    """A frozen timm backbone (local weights) + a linear probe on its pooled features."""

    def __init__(
        self,
        *,
        backbone: str = "resnet18",
        weights: str | None = None,
        device: str = "auto",
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.backbone = backbone
        self.weights = weights
        self.device = device
        self._model = None

    def params(self) -> dict[str, Any]:
        return {**super().params(), "backbone": self.backbone, "weights": self.weights}

    def _net(self):
        if self._model is None:
            import timm
            import torch

            from deepaudit.devices import device_policy

            self._policy = device_policy(self.device)
            kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 0}
            if self.weights:
                if not Path(self.weights).is_file():
                    raise DependencyError(f"{self.weights}: backbone weights not found")
                kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(self.weights)})
            else:
                self.training_summary["warning"] = (
                    "random backbone weights: give weights= for a real probe"
                )
                torch.manual_seed(self.seed)
            model = (
                timm.create_model(self.backbone, **kwargs).eval().to(self._policy.torch_device())
            )
            cfg = model.pretrained_cfg
            self._mean = torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1)
            self._std = torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1)
            self._model = model
        return self._model

    def features(self, crops: np.ndarray) -> np.ndarray:
        import torch

        net = self._net()
        dev = self._policy.torch_device()
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255)
        x = ((x - self._mean) / self._std).to(dev)
        with torch.inference_mode(), self._policy.autocast():
            return net(x).float().cpu().numpy()


@register_detector("reconstruction")
class ReconstructionDetector(FeatureDetector):
    """Autoencoder reconstruction error (AEROBLADE-style) from a diffusers AutoencoderKL folder."""

    def __init__(self, *, autoencoder: str | None = None, device: str = "auto", **kw: Any) -> None:
        super().__init__(**kw)
        if autoencoder is None:
            raise DependencyError(
                "detector 'reconstruction' needs autoencoder=DIR: a diffusers AutoencoderKL folder "
                "(e.g. a latent model made by `deepaudit generators train --family latent`)"
            )
        self.autoencoder = str(autoencoder)
        self.device = device
        self._ae = None

    def params(self) -> dict[str, Any]:
        return {**super().params(), "autoencoder": self.autoencoder}

    def _model(self):
        if self._ae is None:
            from diffusers import AutoencoderKL

            from deepaudit.devices import device_policy

            root = Path(self.autoencoder)
            if (root / "vqvae" / "config.json").is_file():  # a suite latent model folder
                root = root / "vqvae"
            elif (root / "vae" / "config.json").is_file():  # a Stable Diffusion folder
                root = root / "vae"
            if not (root / "config.json").is_file():
                raise DependencyError(f"{self.autoencoder}: no AutoencoderKL config.json found")
            self._policy = device_policy(self.device, precision="fp32")
            self._ae = AutoencoderKL.from_pretrained(root).eval().to(self._policy.torch_device())
        return self._ae

    def features(self, crops: np.ndarray) -> np.ndarray:
        import torch

        ae = self._model()
        x = (
            torch.from_numpy(crops)
            .permute(0, 3, 1, 2)
            .float()
            .div(127.5)
            .sub(1)
            .to(self._policy.torch_device())
        )
        with torch.inference_mode():
            rec = ae.decode(ae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
        err = (rec - x).abs()
        lap = torch.tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=x.dtype, device=x.device)
        lap = lap.view(1, 1, 3, 3).repeat(3, 1, 1, 1)
        hf = torch.nn.functional.conv2d(rec - x, lap, groups=3).abs()
        feats = [
            err.mean(dim=(2, 3)),
            err.flatten(1).std(dim=1, keepdim=True),
            err.flatten(1).quantile(0.9, dim=1, keepdim=True),
            hf.mean(dim=(2, 3)),
        ]
        return torch.log(torch.cat(feats, dim=1) + 1e-6).cpu().numpy()
