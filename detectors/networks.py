"""Detectors that are neural networks trained end to end: timm classifiers and NPR.

- ``timm``: any timm model name (``resnet10t`` by default, fast on a CPU; resnet50,
  efficientnet_b0 or xception41 on a GPU), optionally starting from a local checkpoint,
  trained with CNNDetection-style blur + JPEG augmentation (Wang et al. 2020).
- ``npr``: Neighbouring Pixel Relationships (Tan et al., CVPR 2024): the residual between
  an image and its 2× nearest down-up-sampled copy exposes the local correlations that
  generators' upsampling layers leave; a timm backbone classifies that residual.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.detectors._registry import register_detector
from deepaudit.detectors.base import Detector, load_module_weights, save_module_weights
from deepaudit.detectors.data import ItemSet
from deepaudit.errors import DependencyError

__all__ = ["NPRDetector", "TimmDetector"]


def _net_module(backbone: str, weights: str | None, npr: bool, seed: int) -> Any:
    import timm
    import torch

    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 1}
    if weights:
        if not Path(weights).is_file():
            raise DependencyError(f"{weights}: pretrained weights not found")
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(weights)})
    try:
        model = timm.create_model(backbone, **kwargs)
    except RuntimeError as exc:  # unknown model name
        raise ValueError(f"timm has no model {backbone!r} ({exc})") from None
    cfg = model.pretrained_cfg
    mean = cfg.get("mean", (0.485, 0.456, 0.406))
    std = cfg.get("std", (0.229, 0.224, 0.225))

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model
            self.register_buffer(
                "mean", torch.tensor(mean).view(1, 3, 1, 1) * 255, persistent=False
            )
            self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255, persistent=False)

        def forward(self, x: Any) -> Any:  # uint8 NCHW
            x = (x.float() - self.mean) / self.std
            if npr:
                down = torch.nn.functional.interpolate(x, scale_factor=0.5, mode="nearest")
                x = (
                    x - torch.nn.functional.interpolate(down, scale_factor=2.0, mode="nearest")
                ) * 4
            return self.net(x)

    return Wrapped()


class _NetworkDetector(Detector):
    npr = False
    supports_sample_weights = True

    def __init__(
        self,
        *,
        model: str = "resnet10t",
        weights: str | None = None,
        epochs: int = 10,
        batch_size: int = 32,
        lr: float = 1e-3,
        patience: int = 3,
        blur_p: float = 0.1,
        jpeg_p: float = 0.1,
        device: str = "auto",
        precision: str = "auto",
        engine: str = "auto",
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.engine = engine
        self.engine_choice: Any = None  # EngineChoice once scoring has started
        self._runner: Any = None
        self._weights_key: str | None = None  # sha256 of the weights loaded from a folder
        self._root: Path | None = None
        self.model = model
        self.weights = weights
        self.epochs, self.batch_size, self.lr, self.patience = (
            int(epochs),
            int(batch_size),
            float(lr),
            int(patience),
        )
        self.blur_p, self.jpeg_p = float(blur_p), float(jpeg_p)
        self.device, self.precision = device, precision
        self.module = _net_module(model, weights, self.npr, self.seed)
        self._policy = None

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "model": self.model,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "patience": self.patience,
            "blur_p": self.blur_p,
            "jpeg_p": self.jpeg_p,
        }

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
            blur_p=self.blur_p,
            jpeg_p=self.jpeg_p,
            **run_options(self, kw),
        )
        self.training_summary["history"] = history
        self._policy = None
        self._runner = self._weights_key = None  # new weights: torch until saved and loaded
        return self

    def _device_policy(self):
        if self._policy is None:
            from deepaudit.detectors.engine import inference_policy

            self._policy = inference_policy(self.module, self.device, self.precision)
        return self._policy

    def runner(self, shape: tuple[int, int, int]) -> Any:
        """The engine that runs the network (:mod:`deepaudit.detectors.engine`): chosen once.
        A detector not loaded from a folder (being trained) always runs on torch."""
        if self._runner is None:
            from deepaudit.detectors.engine import EngineChoice, TorchRunner, make_runner

            policy = self._device_policy()
            precision = policy.precision
            if self._weights_key is None:
                self._runner = TorchRunner(self.module, policy)
                self.engine_choice = EngineChoice("torch", precision, policy.device, "in training")
            else:
                self._runner, self.engine_choice = make_runner(
                    self.module,
                    policy,
                    engine=self.engine,
                    precision=precision,
                    weights_key=self._weights_key,
                    input_shape=shape,
                    input_dtype="uint8",
                    detector_dir=self._root,
                    threads=self.inference_threads,
                )
        return self._runner

    def score_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """P(synthetic) for prepared (N, S, S, 3) uint8 crops."""
        x = np.ascontiguousarray(inputs).transpose(0, 3, 1, 2)  # NCHW view, channels_last
        self.module.eval()
        logits = self.runner(x.shape[1:])(x)
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -500, 500)))

    def _save_weights(self, root: Path) -> None:
        save_module_weights(self.module, root)

    def _load_weights(self, root: Path) -> None:
        from deepaudit.media import file_sha256

        path = load_module_weights(self.module, root)
        self._weights_key, self._root, self._runner = file_sha256(path), root, None


@register_detector("timm")
class TimmDetector(_NetworkDetector):
    """Any timm classifier with one output logit (CNNDetection recipe)."""


@register_detector("npr")
class NPRDetector(_NetworkDetector):
    """NPR: a timm backbone on the up-sampling residual of the image."""

    npr = True
