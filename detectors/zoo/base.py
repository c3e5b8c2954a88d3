"""Published detectors: the authors' released checkpoints as deepaudit detector folders.

A *kind* (:class:`ZooKind`) knows one paper's detector: its architecture (``build``), how the
authors' files map onto it (``convert``), its exact preprocessing, its licence and where the
weights are published. :func:`import_detector` turns the authors' files into a folder —

- ``config.json``: the kind, paper, source, licence, the sha256 of every input file, the
  preprocessing, the published threshold and the sha256 of ``model.safetensors``;
- ``model.safetensors``: the converted weights (no pickle is ever written or read back);

and :class:`ImportedDetector` loads it (checking that hash) and scores through the inference
contract. Checkpoints are read with ``torch.load(weights_only=True)`` and nothing wider; a
file that needs more is refused, as is one whose keys or shapes do not fit the architecture,
and in every such case nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from deepaudit.detectors._registry import CONFIG_NAME, register_detector
from deepaudit.detectors.base import Detector
from deepaudit.detectors.inference import InputSpec
from deepaudit.errors import DeepauditError
from deepaudit.media import file_sha256

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KINDS",
    "Converted",
    "ImportedDetector",
    "Preprocessing",
    "ZooKind",
    "check_state",
    "file_sha256",
    "import_detector",
    "read_checkpoint",
    "register_kind",
    "zoo_kind",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
WEIGHTS_NAME = "model.safetensors"
FORMAT = "deepaudit-imported/1"


@dataclass(frozen=True)
class Preprocessing:
    """A paper's test-time pipeline, from decoded RGB uint8 pixels to the network's input:
    optional resize of the shorter side, optional centre crop (None: the whole image), then
    ``(x / 255 - mean) / std`` in RGB channel order (torchvision ``ToTensor`` + ``Normalize``).
    """

    resize: int | None = None
    resize_mode: str = "bilinear"
    crop: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_range: str = "[0, 1] (x / 255), then (x - mean) / std"
    channel_order: str = "RGB"

    def input_spec(self) -> InputSpec:
        return InputSpec(self.crop, resize=self.resize, resize_mode=self.resize_mode, exact=True)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Preprocessing:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        for k in ("mean", "std"):
            if k in known:
                known[k] = tuple(float(v) for v in known[k])
        return cls(**known)


@dataclass
class Converted:
    """What a kind makes of the authors' files: weights in the architecture's own naming,
    the architecture's parameters (JSON), and a role for each input file."""

    state: dict[str, Any]  # name -> torch.Tensor
    arch: dict[str, Any] = field(default_factory=dict)
    roles: dict[Path, str] = field(default_factory=dict)


class ZooKind:
    """One published detector. Subclasses fill in the class attributes and the two methods.

    ``build(arch)`` returns a ``torch.nn.Module`` whose forward takes the preprocessed float
    batch ``(N, 3, H, W)`` and returns ``(N,)`` decision values, higher meaning synthetic;
    ``probability`` maps them to P(synthetic) (a sigmoid for the logit-trained networks).
    """

    name: ClassVar[str] = ""  # the KIND argument of `detectors import`
    title: ClassVar[str] = ""  # e.g. "CNNDetection"
    paper: ClassVar[str] = ""  # authors, title, venue year
    source: ClassVar[str] = ""  # the authors' code repository
    weights_at: ClassVar[str] = ""  # where the authors publish the weights (never fetched)
    licence: ClassVar[str] = ""
    non_commercial: ClassVar[bool] = False
    training_domain: ClassVar[str] = ""  # what the released weights were trained on
    files: ClassVar[str] = ""  # what to pass to `detectors import` (help text)
    published_threshold: ClassVar[float] = 0.5  # on P(synthetic)
    preprocessing: ClassVar[Preprocessing] = Preprocessing()
    score_meaning: ClassVar[str] = "sigmoid of the network's logit"
    # False when ``probability`` is only a monotone map of a distance, not a probability:
    # such a detector's scores are left out of the scan's fusion until it is calibrated
    probabilistic: ClassVar[bool] = True
    # the network exports to ONNX (plain tensor ops, no data-dependent Python): the onnx
    # engine may run it (still checked for parity at export, at two input sizes)
    onnx_export: ClassVar[bool] = False
    # sha256 -> what it is, for upstream files whose hashes are published (e.g. OpenAI's CLIP
    # checkpoints, whose download URLs carry them); inputs are matched against these
    known_files: ClassVar[dict[str, str]] = {}
    # recorded (and shown by `detectors info`) when no input matches ``known_files``
    unverified_warning: ClassVar[str | None] = None

    def convert(self, weights: Sequence[Path], backbones: Sequence[Path]) -> Converted:
        raise NotImplementedError

    def build(self, arch: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def probability(self, raw: Any) -> Any:
        import torch

        return torch.sigmoid(raw)

    def preprocessing_for(self, arch: Mapping[str, Any]) -> Preprocessing:
        """The preprocessing of an imported folder (a kind may vary it with ``arch``)."""
        return self.preprocessing

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.name,
            "title": self.title,
            "paper": self.paper,
            "source": self.source,
            "weights_at": self.weights_at,
            "licence": self.licence,
            "non_commercial": self.non_commercial,
            "training_domain": self.training_domain,
            "files": self.files,
            "published_threshold": self.published_threshold,
            "score": self.score_meaning,
            "probabilistic": self.probabilistic,
        }


KINDS: dict[str, ZooKind] = {}


def register_kind(cls: type[ZooKind]) -> type[ZooKind]:
    """Register a kind and its detector class ``imported-<kind>`` (shown by `detectors list`)."""
    kind = cls()
    if not kind.name or kind.name in KINDS:
        raise ValueError(f"kind name {kind.name!r} is empty or taken")
    KINDS[kind.name] = kind
    det_cls = type(f"Imported_{kind.name}", (ImportedDetector,), {"zoo_kind": kind})
    det_cls.__doc__ = f"{kind.title}, the authors' weights (`detectors import {kind.name}`)."
    register_detector(
        f"imported-{kind.name}",
        paper=kind.paper,
        source=kind.source,
        licence=kind.licence,
        non_commercial=kind.non_commercial,
    )(det_cls)
    return cls


def zoo_kind(name: str) -> ZooKind:
    if name not in KINDS:
        import difflib

        close = difflib.get_close_matches(name, list(KINDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DeepauditError(
            f"no published-detector kind {name!r}{hint}; kinds: {', '.join(KINDS)}"
        )
    return KINDS[name]


# -- reading the authors' files ------------------------------------------------------------
def read_checkpoint(path: str | os.PathLike[str], *, allow: Sequence[type] = ()) -> Any:
    """A checkpoint's contents via ``torch.load(weights_only=True)`` (or safetensors): tensors
    in plain containers only. Anything else is a :class:`DeepauditError` naming the file.

    ``allow``: inert classes a kind's authors pickle next to the weights (e.g. the training
    script's ``argparse.Namespace``), added to weights_only's allowlist for this read only;
    their instances are only rebuilt from plain values, never called.
    """
    import contextlib
    import pickle
    import zipfile

    import torch

    p = Path(path)
    if not p.is_file():
        raise DeepauditError(f"{p}: no such file")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(p)
        except Exception as exc:
            raise DeepauditError(f"{p}: not a readable safetensors file ({_first(exc)})") from None
    with open(p, "rb") as f:
        magic = f.read(4)
    if magic[:2] != b"PK" and magic[:1] != b"\x80":
        raise DeepauditError(
            f"{p}: not a torch checkpoint (neither torch's zip format nor a pickle; "
            f"starts with {magic!r})"
        )
    import warnings

    extra = torch.serialization.safe_globals(list(allow)) if allow else contextlib.nullcontext()
    try:
        with warnings.catch_warnings(), extra:  # e.g. "pickle protocol 4": the error says it
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = _first(exc)
        if "weights only load failed" in text.lower() or "unsupported global" in str(exc).lower():
            glob = _unsupported_global(str(exc))
            what = f" (it needs {glob})" if glob else ""
            raise DeepauditError(
                f"{p}: refused: the checkpoint holds Python objects beyond tensors and plain "
                f"containers{what}; only torch.load(weights_only=True) files are read"
            ) from None
        raise DeepauditError(f"{p}: not a torch checkpoint ({text})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise DeepauditError(f"{p}: corrupt or truncated checkpoint ({_first(exc)})") from None


def _first(exc: BaseException) -> str:
    """The first sentence of an exception's message, for a one-line error."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return line.split(". ")[0].rstrip(".")[:200]


def _unsupported_global(text: str) -> str | None:
    import re

    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    return m.group(1) if m else None


def state_dict_of(obj: Any, path: Path, *keys: str) -> dict[str, Any]:
    """The tensor mapping inside a checkpoint: ``obj`` itself, or ``obj[key]`` for the first
    of ``keys`` present; a leading ``module.`` (DataParallel) is dropped from every name."""
    import torch

    if isinstance(obj, Mapping):
        for k in keys:
            if k in obj and isinstance(obj[k], Mapping):
                obj = obj[k]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise DeepauditError(
            f"{path}: holds no state dict (looked for {', '.join(keys) or 'tensors'})"
        )
    out = {}
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            out[k[7:] if k.startswith("module.") else k] = v
    if not out:
        raise DeepauditError(f"{path}: holds no tensors where the weights should be")
    return out


def check_state(module: Any, state: Mapping[str, Any], path: Path | str, kind: str) -> None:
    """Refuse (one line, first offending key) weights that do not fit the architecture."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            parts.append(f"missing key {missing[0]!r}{more}")
        if unexpected:
            more = f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""
            parts.append(f"unexpected key {unexpected[0]!r}{more}")
        raise DeepauditError(f"{path}: does not fit the {kind} architecture: {'; '.join(parts)}")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise DeepauditError(
                f"{path}: does not fit the {kind} architecture: {k!r} has shape "
                f"{tuple(state[k].shape)}, the architecture needs {tuple(v.shape)}"
            )


# -- import --------------------------------------------------------------------------------
def import_detector(
    kind: str,
    weights: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    name: str | None = None,
    backbones: Sequence[str | os.PathLike[str]] = (),
    expect_sha256: Sequence[str] = (),
    force: bool = False,
) -> Path:
    """Turn the authors' files into a detector folder at ``out`` (all or nothing).

    ``expect_sha256``: hashes the inputs must have (e.g. those the authors list); any input
    whose hash is not among them is refused.
    """

    k = zoo_kind(kind)
    dest = Path(out)
    if dest.exists() and any(dest.iterdir()) and not force:
        raise DeepauditError(f"{dest}: exists and is not empty (pass --force to replace it)")
    inputs = [Path(w) for w in weights]
    extra = [Path(b) for b in backbones]
    if not inputs:
        raise DeepauditError(f"{kind}: no weights given ({k.files})")
    for p in (*inputs, *extra):
        if not p.exists():
            raise DeepauditError(f"{p}: no such file or folder")
    hashes = {p: _tree_sha256(p) for p in (*inputs, *extra)}
    if expect_sha256:
        wanted = {h.lower() for h in expect_sha256}
        for p, h in hashes.items():
            if h not in wanted:
                raise DeepauditError(f"{p}: sha256 {h} is not among the expected hashes")
    conv = k.convert(inputs, extra)
    module = k.build(conv.arch)
    check_state(module, conv.state, inputs[0], kind)
    module.load_state_dict(conv.state, strict=True)
    state = {n: t.detach().cpu().contiguous() for n, t in module.state_dict().items()}

    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        from safetensors.torch import save_file

        save_file(state, tmp / WEIGHTS_NAME)
        pre = k.preprocessing_for(conv.arch)
        known = {p: k.known_files.get(h) for p, h in hashes.items()}
        warnings = (
            [k.unverified_warning] if k.unverified_warning and not any(known.values()) else []
        )
        imported = {
            "format": FORMAT,
            **k.describe(),
            "name": name or dest.name,
            "inputs": [
                {
                    "file": p.name,
                    "path": str(p.resolve()),
                    "sha256": hashes[p],
                    "role": conv.roles.get(p, "weights" if p in inputs else "backbone"),
                    "known_as": known[p],
                }
                for p in (*inputs, *extra)
            ],
            "warnings": warnings,
            "preprocessing": pre.to_json(),
            "weights_sha256": file_sha256(tmp / WEIGHTS_NAME),
            "imported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        det = _detector_class(k)(arch=conv.arch, input_size=pre.crop or pre.resize or 224)
        det.threshold = k.published_threshold
        det.imported = imported
        (tmp / CONFIG_NAME).write_text(json.dumps(det.config(), indent=2) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _tree_sha256(p: Path) -> str:
    """A file's sha256; for a folder (a diffusers model), the sha256 of its files' listing
    (relative path and sha256 per file, sorted)."""
    if p.is_file():
        return file_sha256(p)
    lines = [
        f"{f.relative_to(p).as_posix()} {file_sha256(f)}"
        for f in sorted(p.rglob("*"))
        if f.is_file()
    ]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _detector_class(kind: ZooKind) -> type[ImportedDetector]:
    from deepaudit.detectors._registry import detector_entry

    return detector_entry(f"imported-{kind.name}").factory


# -- the detector --------------------------------------------------------------------------
class ImportedDetector(Detector):
    """A published detector imported by :func:`import_detector`: scores only, never trained
    here (calibrate it on your own data with ``deepaudit detectors calibrate``)."""

    zoo_kind: ClassVar[ZooKind]

    def __init__(
        self,
        *,
        arch: Mapping[str, Any] | None = None,
        device: str = "auto",
        precision: str = "auto",
        engine: str = "auto",
        batch_size: int = 16,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.arch = dict(arch or {})
        self.device, self.precision, self.engine = device, precision, engine
        self.engine_choice: Any = None
        self._runner: Any = None
        self._root: Path | None = None
        self.batch_size = int(batch_size)
        self.module = self.zoo_kind.build(self.arch)
        self.module.eval()
        self.imported: dict[str, Any] = {}
        self._policy = None

    @property
    def preprocessing(self) -> Preprocessing:
        pre = self.imported.get("preprocessing")
        return Preprocessing.from_json(pre) if pre else self.zoo_kind.preprocessing_for(self.arch)

    def params(self) -> dict[str, Any]:
        return {"input_size": self.input_size, "arch": self.arch}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "imported": self.imported}

    def _identity_extra(self) -> dict[str, Any]:
        imp = self.imported
        return {
            "zoo_kind": self.zoo_kind.name,
            "title": self.zoo_kind.title,
            "name": imp.get("name"),
            "licence": imp.get("licence", self.zoo_kind.licence),
            "non_commercial": bool(imp.get("non_commercial", self.zoo_kind.non_commercial)),
            "source": imp.get("source", self.zoo_kind.source),
            "paper": imp.get("paper", self.zoo_kind.paper),
            "training_domain": imp.get("training_domain", self.zoo_kind.training_domain),
            "inputs": [
                {k: i.get(k) for k in ("file", "sha256", "role", "known_as")}
                for i in imp.get("inputs", [])
            ],
            "warnings": list(imp.get("warnings") or []),
            "weights_sha256": imp.get("weights_sha256"),
            "preprocessing": imp.get("preprocessing"),
            "published_threshold": imp.get("published_threshold"),
            "probabilistic": self.zoo_kind.probabilistic,
        }

    def fit(self, train: Any, val: Any = None, **kwargs: Any) -> Detector:
        raise DeepauditError(
            f"{self.name}: published detectors are imported, not trained here; "
            "fit a calibration on your data with `deepaudit detectors calibrate`"
        )

    def input_spec(self) -> InputSpec:
        return self.preprocessing.input_spec()

    def _device_policy(self) -> Any:
        if self._policy is None:
            from deepaudit.detectors.engine import inference_policy

            self._policy = inference_policy(self.module, self.device, self.precision)
        return self._policy

    def runner(self) -> Any:
        """The engine that runs the network (:mod:`deepaudit.detectors.engine`): chosen once."""
        if self._runner is None:
            from deepaudit.detectors.engine import EngineChoice, TorchRunner, make_runner

            policy = self._device_policy()
            precision = policy.precision
            key = self.imported.get("weights_sha256")
            if not self.zoo_kind.onnx_export or key is None:
                if self.engine == "onnx":
                    raise DeepauditError(
                        f"{self.name}: runs on the torch engine only (its network does not "
                        "export to ONNX exactly)"
                    )
                self._runner = TorchRunner(self.module, policy)
                why = "asked for" if self.engine == "torch" else "this kind runs on torch only"
                self.engine_choice = EngineChoice("torch", precision, policy.device, why)
            else:
                pre = self.preprocessing
                side = pre.crop or 256
                self._runner, self.engine_choice = make_runner(
                    self.module,
                    policy,
                    engine=self.engine,
                    precision=precision,
                    weights_key=key,
                    input_shape=(3, side, side),
                    dynamic=pre.crop is None,
                    detector_dir=self._root,
                    threads=self.inference_threads,
                )
        return self._runner

    def decision_values(self, inputs: np.ndarray) -> np.ndarray:
        """The network's raw outputs for prepared uint8 ``(N, H, W, 3)`` inputs."""
        import torch

        run = self.runner()
        pre = self.preprocessing
        dev = self._device_policy().torch_device()
        mean = torch.tensor(pre.mean, device=dev).view(1, 3, 1, 1)
        std = torch.tensor(pre.std, device=dev).view(1, 3, 1, 1)
        out = []
        for i in range(0, len(inputs), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(inputs[i : i + self.batch_size]))
            x = x.to(dev).permute(0, 3, 1, 2).float().div(255.0)
            out.append(run((x - mean) / std))
        return np.concatenate(out) if out else np.zeros(0)

    def score_inputs(self, inputs: np.ndarray) -> np.ndarray:
        import torch

        raw = torch.from_numpy(self.decision_values(inputs))
        return self.zoo_kind.probability(raw).numpy().astype(np.float64)

    def _save_weights(self, root: Path) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        save_file(state, root / WEIGHTS_NAME)
        self.imported["weights_sha256"] = file_sha256(root / WEIGHTS_NAME)

    def _load_weights(self, root: Path) -> None:
        from safetensors.torch import load_file

        path = root / WEIGHTS_NAME
        if not path.is_file():
            raise DeepauditError(f"{path}: missing")
        want = self.imported.get("weights_sha256")
        got = file_sha256(path)
        if want != got:
            raise DeepauditError(
                f"{path}: sha256 {got[:16]}… does not match the {str(want)[:16]}… recorded at "
                "import (the weights changed since)"
            )
        state = load_file(path)
        check_state(self.module, state, path, self.zoo_kind.name)
        self.module.load_state_dict(state, strict=True)
        self.module.eval()
        self._root = root

    def _restore(self, root: Path, config: dict[str, Any]) -> None:
        imported = config.get("imported") or {}
        if imported.get("format") != FORMAT:
            raise DeepauditError(
                f"{root}: not an imported detector folder (format {imported.get('format')!r})"
            )
        self.imported = imported  # the weights' hash is checked against it at load
