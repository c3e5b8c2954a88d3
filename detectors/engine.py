"""Inference engines for network detectors: torch, or ONNX Runtime on CPU.

On CPUs without bf16 units, ONNX Runtime runs the same network 1.7–2× faster than torch with
the same scores (round-2 measurements: ResNet-50 fp32 on an AVX2 EPYC, 12.1 vs 7.1 images/s,
largest score difference 3e-8). A network detector therefore runs through an engine:

- ``torch``: the module itself (channels_last; autocast for bf16/fp16, CUDA's AMP);
- ``onnx``: the module exported once to ONNX (the TorchScript exporter, opset 17) and run by
  ONNX Runtime's CPU provider. The graph is cached next to the detector
  (``DIR/engine/<sha256 of the weights>-<shape>.onnx``; a read-only folder falls back to
  ``deepaudit.devices.user_cache_dir()/engines``), with both engines' times per thread count as
  measured here (``<key>.json``). At export its outputs are compared with torch's on
  fixed batches — two input sizes when the detector takes images of any size — and a graph
  that differs by more than 1e-4 is refused (deleted; torch is used);
- ``auto``: on CUDA, torch (AMP); on CPU in fp32, the faster of torch and ONNX Runtime as
  timed on the detector's own input shape at export (kept beside the graph), when
  onnxruntime is installed and the export is exact; else torch. ONNX Runtime runs fp32 only,
  so bf16 means torch.

Both take the float32 NCHW batch the detector prepared and return its ``(N,)`` outputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from deepaudit.errors import DeepauditError

__all__ = [
    "ENGINES",
    "EngineChoice",
    "EngineError",
    "OnnxRunner",
    "TorchRunner",
    "inference_policy",
    "make_runner",
]

logger = logging.getLogger(__name__)

EngineName = Literal["auto", "torch", "onnx"]
ENGINES = ("auto", "torch", "onnx")
PARITY = 1e-4
OPSET = 17


class EngineError(DeepauditError):
    """An engine cannot run this detector exactly (export failed or outputs differ)."""


@dataclass(frozen=True)
class EngineChoice:
    """What runs a detector, and why (recorded in scan summaries and reports)."""

    engine: str  # torch | onnx
    precision: str  # fp32 | bf16 | fp16
    device: str
    reason: str
    threads: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "precision": self.precision,
            "device": self.device,
            "threads": self.threads,
            "why": self.reason,
        }


def inference_policy(module: Any, device: str, precision: str) -> Any:
    """The device policy for scoring with ``module``, which it moves there: channels_last on
    the CPU too (~1.5x faster for CNNs, same scores; NOTES.md)."""
    import dataclasses

    import torch

    from deepaudit.devices import device_policy

    policy = dataclasses.replace(device_policy(device, precision=precision), channels_last=True)
    module.to(policy.torch_device()).eval()
    module.to(memory_format=torch.channels_last)
    return policy


class TorchRunner:
    """The module itself, under the device policy (channels_last, autocast)."""

    name = "torch"

    def __init__(self, module: Any, policy: Any) -> None:
        import torch

        self.module, self.policy = module, policy
        self.module.to(policy.torch_device()).eval()
        self.module.to(memory_format=torch.channels_last)

    def __call__(self, x: Any) -> np.ndarray:
        import torch

        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        x = x.to(self.policy.torch_device()).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self.policy.autocast():
            out = self.module(x)
        return out.float().reshape(len(x), -1)[:, 0].cpu().numpy().astype(np.float64)


class OnnxRunner:
    """An exported graph run by ONNX Runtime's CPU provider."""

    name = "onnx"

    def __init__(self, path: Path, threads: int, input_dtype: str) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, int(threads))
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.dtype = np.dtype(input_dtype)
        self.path, self.threads = path, int(threads)

    def __call__(self, x: Any) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            x = x.cpu().numpy()
        out = self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=self.dtype)})[0]
        return np.asarray(out, np.float64).reshape(len(x), -1)[:, 0]


def _cache_dir(detector_dir: Path | None) -> Path:
    if detector_dir is not None:
        d = Path(detector_dir) / "engine"
        try:
            d.mkdir(exist_ok=True)
            probe = d / ".writable"
            probe.touch()
            probe.unlink()
            return d
        except OSError:
            pass
    from deepaudit.devices import user_cache_dir

    d = user_cache_dir() / "engines"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _examples(shape: tuple[int, ...], dtype: str, dynamic: bool) -> list[np.ndarray]:
    """Fixed batches to check an export on: the detector's shape, and for detectors that
    take any size a second, odd size (a graph with a baked-in size fails there)."""
    rng = np.random.default_rng(0)
    shapes = [(4, *shape)]
    if dynamic:
        c, h, w = shape
        shapes.append((2, c, h + 37, w + 21))
    out = []
    for s in shapes:
        if dtype == "uint8":
            out.append(rng.integers(0, 256, s, dtype=np.uint8))
        else:
            out.append(rng.normal(0, 1, s).astype(np.float32))
    return out


def _export(module: Any, path: Path, example: np.ndarray, dynamic: bool) -> None:
    import torch

    axes = {0: "n", 2: "h", 3: "w"} if dynamic else {0: "n"}
    tmp = path.with_suffix(".onnx.part")
    cpu = module.to("cpu").eval()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            cpu,
            (torch.from_numpy(example),),
            str(tmp),
            dynamo=False,
            opset_version=OPSET,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": axes, "y": {0: "n"}},
        )
    os.replace(tmp, path)


def _time(fn: Any, x: np.ndarray, reps: int = 3) -> float:
    fn(x)  # warm-up
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - t)
    return best


def make_runner(
    module: Any,
    policy: Any,
    *,
    engine: str,
    precision: str,
    weights_key: str,
    input_shape: tuple[int, int, int],
    input_dtype: str = "float32",
    dynamic: bool = False,
    detector_dir: Path | None = None,
    threads: int | None = None,
) -> tuple[Any, EngineChoice]:
    """The runner for a detector's network and the record of the choice.

    ``weights_key``: the sha256 of the weights (the cache key); ``input_shape``: (C, H, W) of
    one prepared input (for whole-image detectors a typical size, with ``dynamic=True``).
    """
    if engine not in ENGINES:
        raise DeepauditError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    threads = threads or max(1, os.cpu_count() or 1)
    device = policy.device
    if engine == "onnx" and (policy.is_cuda or precision != "fp32"):
        raise DeepauditError(
            f"the onnx engine runs fp32 on the CPU only (asked: {precision} on {device}); "
            "use --engine torch or auto"
        )
    if engine == "torch" or policy.is_cuda or precision != "fp32":
        why = (
            "asked for"
            if engine == "torch"
            else ("CUDA: torch with AMP" if policy.is_cuda else f"{precision}: torch only")
        )
        return TorchRunner(module, policy), EngineChoice("torch", precision, device, why)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        if engine == "onnx":
            raise DeepauditError(
                "the onnx engine needs onnxruntime (pip install onnxruntime)"
            ) from None
        why = "onnxruntime is not installed"
        return TorchRunner(module, policy), EngineChoice("torch", precision, device, why)
    torch_runner = TorchRunner(module, policy)  # on the CPU: the export leaves it there
    try:
        path, timing, session = _onnx_graph(
            torch_runner,
            weights_key=weights_key,
            input_shape=input_shape,
            input_dtype=input_dtype,
            dynamic=dynamic,
            detector_dir=detector_dir,
            threads=threads,
        )
    except EngineError as exc:
        if engine == "onnx":
            raise
        logger.info("onnx engine not used: %s", exc)
        first = str(exc).split(": ", 1)[-1]
        return torch_runner, EngineChoice("torch", precision, device, first)
    if engine == "auto" and timing["onnx_s"] >= timing["torch_s"]:
        why = f"torch measured faster here ({timing['torch_s']:.3g} s vs {timing['onnx_s']:.3g} s)"
        return torch_runner, EngineChoice("torch", precision, device, why)
    why = (
        "asked for"
        if engine == "onnx"
        else (
            f"measured {timing['torch_s'] / timing['onnx_s']:.2f}× torch's speed here, "
            f"outputs within {timing['max_abs_diff']:.1e}"
        )
    )
    runner = session or OnnxRunner(path, threads, input_dtype)
    return runner, EngineChoice("onnx", "fp32", device, why, threads)


def _onnx_graph(
    torch_runner: TorchRunner,
    *,
    weights_key: str,
    input_shape: tuple[int, int, int],
    input_dtype: str,
    dynamic: bool,
    detector_dir: Path | None,
    threads: int,
) -> tuple[Path, dict[str, float], OnnxRunner | None]:
    """The checked graph's path, the two engines' times at ``threads`` (exported, checked
    and timed on first use), and the ONNX Runtime session if one had to be opened."""
    import onnxruntime
    import torch

    shape_tag = "any" if dynamic else "x".join(map(str, input_shape))
    tag = hashlib.sha256(
        f"{weights_key}|{shape_tag}|{input_dtype}|{torch.__version__}|{OPSET}".encode()
    ).hexdigest()[:20]
    cache = _cache_dir(detector_dir)
    path = cache / f"{tag}.onnx"
    meta_path = cache / f"{tag}.json"
    examples = _examples(input_shape, input_dtype, dynamic)
    meta: dict[str, Any] = {}
    if path.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            meta = {}
    session: OnnxRunner | None = None
    if not meta.get("checked"):
        try:
            _export(torch_runner.module, path, examples[0], dynamic)
        except Exception as exc:  # the exporter raises many types
            raise EngineError(f"{path}: the network does not export to ONNX ({exc})") from None
        session = OnnxRunner(path, threads, input_dtype)
        diff = max(float(np.max(np.abs(session(x) - torch_runner(x)))) for x in examples)
        if not diff <= PARITY:
            path.unlink(missing_ok=True)
            raise EngineError(
                f"{path}: ONNX outputs differ from torch's by {diff:.2e} (> {PARITY:g}); not used"
            )
        meta = {
            "checked": True,
            "max_abs_diff": diff,
            "onnxruntime": onnxruntime.__version__,
            "torch": torch.__version__,
            "timings": {},
        }
    timings = meta.setdefault("timings", {})
    if str(threads) not in timings:  # each thread count is timed once, on this machine
        session = session or OnnxRunner(path, threads, input_dtype)
        batch = examples[0]
        timings[str(threads)] = {
            "torch_s": _time(torch_runner, batch, reps=2),
            "onnx_s": _time(session, batch, reps=2),
            "batch": list(batch.shape),
        }
        tmp = meta_path.with_suffix(".json.part")
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp, meta_path)
    return path, {**timings[str(threads)], "max_abs_diff": meta["max_abs_diff"]}, session
