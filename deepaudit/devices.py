"""Where tensors run and in what precision: CUDA when present, else CPU; plus seeding.

Simple over easy: float32 on CPU unless asked, bf16 autocast on GPUs that support it (fp16
otherwise), channels_last and pinned memory only where they help (CUDA).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "DevicePolicy",
    "Precision",
    "cpu_flags",
    "cpu_has_bf16",
    "describe_environment",
    "device_policy",
    "resolve_precision",
    "seed_everything",
    "select_device",
    "user_cache_dir",
]

DeviceName = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
_PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def select_device(preference: str = "auto") -> str:
    """ "auto" → "cuda" when a GPU is usable, else "cpu"; "cuda[:N]" fails clearly without one."""
    if preference == "cpu":
        return "cpu"  # (without importing torch: a cluster scan's driver need not)
    import torch

    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {preference!r} asked for, but no CUDA GPU is available")
        if ":" in preference:
            index = int(preference.split(":", 1)[1])
            if index >= torch.cuda.device_count():
                raise ValueError(
                    f"device {preference!r} asked for, but only "
                    f"{torch.cuda.device_count()} GPU(s) exist"
                )
        return preference
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {preference!r}")


@dataclass(frozen=True)
class DevicePolicy:
    """A device and the speed settings that go with it."""

    device: str
    amp_dtype: Literal["bfloat16", "float16"] | None
    channels_last: bool
    pin_memory: bool
    num_workers: int

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def precision(self) -> str:
        """What the forward pass runs in: fp32, bf16 or fp16."""
        return {"bfloat16": "bf16", "float16": "fp16"}.get(self.amp_dtype or "", "fp32")

    def torch_device(self) -> Any:
        import torch

        return torch.device(self.device)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Mixed precision for the forward pass when the policy asks for it; else nothing."""
        if self.amp_dtype is None:
            yield
            return
        import torch

        with torch.autocast(
            device_type="cuda" if self.is_cuda else "cpu", dtype=getattr(torch, self.amp_dtype)
        ):
            yield

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "amp_dtype": self.amp_dtype,
            "channels_last": self.channels_last,
            "pin_memory": self.pin_memory,
            "num_workers": self.num_workers,
        }


def device_policy(device: str = "auto", *, precision: Precision = "auto") -> DevicePolicy:
    """The policy for a device: "auto" precision is bf16/fp16 autocast on CUDA, fp32 on CPU."""
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {_PRECISIONS}, got {precision!r}")
    name = select_device(device)
    cuda = name.startswith("cuda")
    amp: Literal["bfloat16", "float16"] | None
    if precision == "fp32" or (precision == "auto" and not cuda):
        amp = None
    elif precision == "bf16":
        if not cuda and cpu_has_bf16() is False:
            raise ValueError(
                "precision bf16 refused: this CPU has no bf16 units (no avx512_bf16 or amx_bf16 "
                "in /proc/cpuinfo), where bf16 runs ~5x slower than fp32 (measured); use fp32 "
                "or auto"
            )
        amp = "bfloat16"
    elif precision == "fp16":
        if not cuda:
            raise ValueError("fp16 autocast needs CUDA; use bf16 or fp32 on CPU")
        amp = "float16"
    else:  # auto on CUDA
        import torch

        amp = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    cpus = os.cpu_count() or 1
    return DevicePolicy(
        device=name,
        amp_dtype=amp,
        channels_last=cuda,
        pin_memory=cuda,
        num_workers=min(8, max(0, cpus - 1)) if cuda else min(2, max(0, cpus - 1)),
    )


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all GPUs); optionally ask torch for deterministic kernels."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


_SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_flags() -> list[str]:
    """The CPU features that decide inference speed here (bf16 units, AVX-512, AVX2), from
    /proc/cpuinfo (empty elsewhere): every speed figure should name them."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [x for x in _SPEED_FLAGS if x in have]
    except OSError:
        pass
    return []


def cpu_has_bf16() -> bool | None:
    """Whether the CPU has bf16 units (AVX512-BF16 or AMX-BF16); None where /proc/cpuinfo
    cannot tell (not Linux)."""
    flags = cpu_flags()
    if not flags:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: str = "auto") -> str:
    """``auto`` made concrete for inference: bf16 on CPUs with bf16 units (about 2× fp32 for
    CNNs there, scores within ~0.01), fp32 on other CPUs (where bf16 is ~5× *slower*), and
    ``auto`` on CUDA (the device policy's AMP). Other values are returned as given."""
    if precision != "auto":
        return precision
    if select_device(device).startswith("cuda"):
        return "auto"
    return "bf16" if cpu_has_bf16() else "fp32"


def describe_environment() -> dict[str, Any]:
    """Versions and hardware, for bug reports and run records."""
    import platform
    from importlib import metadata

    import torch

    versions = {}
    for dist in (
        "deepaudit",
        "torch",
        "torchvision",
        "timm",
        "diffusers",
        "transformers",
        "opencv-python-headless",
        "pillow",
        "numpy",
        "scikit-learn",
        "scikit-image",
        "c2pa-python",
        "mlflow",
        "fairlearn",
        "imageio-ffmpeg",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append({"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)})
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "gpus": gpus,
        "default_device": select_device("auto"),
        "versions": versions,
    }


def user_cache_dir() -> Path:
    """deepaudit's per-user cache (ONNX graphs of read-only detector folders, the facts a
    cluster scan's driver keeps of detectors): ``$DEEPAUDIT_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/deepaudit`` (``~/.cache/deepaudit``)."""
    if own := os.environ.get("DEEPAUDIT_CACHE_DIR"):
        return Path(own)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deepaudit"
