"""A suite spec (TOML) → a dataset folder of generated media + ``manifest.jsonl``.

The spec lists what to generate; everything that decides an output (generator, model,
sampler, steps, seed, prompt, post-processing) is recorded per item, and the same spec
gives byte-identical images on the same machine. An interrupted run resumes: items whose
id is already in the manifest are skipped, and batches are formed from the spec alone so
a resumed batch is the batch an uninterrupted run would have made.

Example (every key is optional unless marked)::

    [suite]
    name = "demo"
    seed = 0                 # base of every item's seed
    format = "png"           # png | jpeg | webp (images); videos are always mp4
    jpeg_quality = 95
    batch_size = 16
    post = ["jpeg:90"]       # perturbations for every output (deepaudit/perturb.py)
    watermark = "sdxl"       # embed an invisible watermark (sdxl | sd1 | sd2)
    sign = { cert = "certs/signer.pem", key = "certs/signer.key.pem" }   # C2PA

    [[generate]]
    generator = "pixel-ddim"     # required: see `deepaudit generators list`
    model = "models/pixel"       # required for most generators (paths relative to the spec)
    count = 100                  # required
    name = "pixel-ddim-20"       # folder and id prefix (default: the generator name)
    seed = 1000                  # default: suite seed + 1,000,000 × entry number
    classes = ["female", "male"] # class-conditional models: cycled over items
    prompts = "prompts.txt"      # one prompt per line, cycled
    init_from = "real/"          # img2img/inpaint/edit/upscale inputs: manifest or folder
    post = []                    # added after the suite's post
    options = { steps = 20 }     # passed to the generator (steps, guidance, sampler, ...)
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from deepaudit.errors import DeepauditError
from deepaudit.perturb import Perturbation, apply_all, parse_perturbation

__all__ = [
    "GenerateReport",
    "GeneratedBatch",
    "SuiteEntry",
    "SuiteSpec",
    "build_generators",
    "generate_batch",
    "init_images",
    "item_id",
    "load_suite",
    "record_batch",
    "run_suite",
    "signing_credentials",
    "suite_batches",
    "write_suite_info",
]

logger = logging.getLogger(__name__)

_SUITE_KEYS = {"name", "seed", "format", "jpeg_quality", "batch_size", "post", "watermark", "sign"}
_ENTRY_KEYS = {
    "watermark",
    "generator",
    "model",
    "count",
    "name",
    "seed",
    "classes",
    "prompts",
    "negative_prompt",
    "init_from",
    "post",
    "options",
}
_FORMATS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}


class SuiteError(DeepauditError):
    """A suite spec is unusable; names the spec file and the problem."""


@dataclass(frozen=True)
class SuiteEntry:
    generator: str
    count: int
    name: str
    seed: int
    model: Path | None = None
    classes: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()
    negative_prompt: str | None = None
    init_from: Path | None = None
    post: tuple[Perturbation, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    watermark: str | None = None  # overrides the suite's; "none" turns it off


@dataclass(frozen=True)
class SuiteSpec:
    path: Path
    name: str
    seed: int
    format: str
    jpeg_quality: int
    batch_size: int
    post: tuple[Perturbation, ...]
    watermark: str | None
    sign_cert: Path | None
    sign_key: Path | None
    entries: tuple[SuiteEntry, ...]

    @property
    def total(self) -> int:
        return sum(e.count for e in self.entries)


def _fail(path: Path, msg: str) -> SuiteError:
    return SuiteError(f"{path}: {msg}")


def load_suite(path: str | os.PathLike[str]) -> SuiteSpec:
    """Parse and check a suite spec; every mistake is a one-line error before any work."""
    from deepaudit.generators._registry import generator_entry

    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _fail(p, f"cannot read suite spec ({exc.strerror or exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise _fail(p, f"not valid TOML: {exc}") from exc
    unknown_top = set(raw) - {"suite", "generate"}
    if unknown_top:
        raise _fail(p, f"unknown section(s) {sorted(unknown_top)}; use [suite] and [[generate]]")
    suite = raw.get("suite", {})
    bad = set(suite) - _SUITE_KEYS
    if bad:
        raise _fail(p, f"unknown key(s) {sorted(bad)} in [suite]; valid: {sorted(_SUITE_KEYS)}")
    base = p.parent

    def rel(v: Any) -> Path:
        q = Path(str(v)).expanduser()
        return q if q.is_absolute() else base / q

    fmt = str(suite.get("format", "png")).lower()
    if fmt not in _FORMATS:
        raise _fail(p, f"format {fmt!r} not supported; use one of {sorted(_FORMATS)}")
    try:
        post = tuple(parse_perturbation(s) for s in suite.get("post", []))
    except ValueError as exc:
        raise _fail(p, str(exc)) from None
    wm = suite.get("watermark")
    if wm is not None:
        from deepaudit.watermark import SCHEMES

        if wm not in SCHEMES:
            raise _fail(p, f"watermark {wm!r} unknown; valid: {sorted(SCHEMES)}")
    sign = suite.get("sign")
    cert = key = None
    if sign is not None:
        if not isinstance(sign, dict) or set(sign) != {"cert", "key"}:
            raise _fail(p, 'sign must be { cert = "CHAIN.pem", key = "KEY.pem" }')
        cert, key = rel(sign["cert"]), rel(sign["key"])
        for f in (cert, key):
            if not f.is_file():
                raise _fail(p, f"signing file not found: {f}")
    seed = int(suite.get("seed", 0))
    entries: list[SuiteEntry] = []
    names: set[str] = set()
    raw_entries = raw.get("generate", [])
    if not raw_entries:
        raise _fail(p, "no [[generate]] entries")
    for k, e in enumerate(raw_entries, start=1):
        where = f"[[generate]] #{k}"
        bad = set(e) - _ENTRY_KEYS
        if bad:
            raise _fail(p, f"unknown key(s) {sorted(bad)} in {where}; valid: {sorted(_ENTRY_KEYS)}")
        if "generator" not in e or "count" not in e:
            raise _fail(p, f"{where} needs 'generator' and 'count'")
        try:
            generator_entry(str(e["generator"]))
        except ValueError as exc:
            raise _fail(p, f"{where}: {exc}") from None
        count = int(e["count"])
        if count < 0:
            raise _fail(p, f"{where}: count must be >= 0")
        name = str(e.get("name", e["generator"]))
        if name in names or "/" in name or name.startswith("."):
            raise _fail(p, f"{where}: name {name!r} is repeated or not a plain folder name")
        names.add(name)
        prompts: tuple[str, ...] = ()
        if "prompts" in e:
            pf = rel(e["prompts"])
            if not pf.is_file():
                raise _fail(p, f"{where}: prompt file not found: {pf}")
            prompts = tuple(
                ln.strip() for ln in pf.read_text(encoding="utf-8").splitlines() if ln.strip()
            )
            if not prompts:
                raise _fail(p, f"{where}: prompt file {pf} has no prompts")
        init = rel(e["init_from"]) if "init_from" in e else None
        if init is not None and not init.exists():
            raise _fail(p, f"{where}: init_from not found: {init}")
        model = rel(e["model"]) if "model" in e else None
        if model is not None and not model.exists():
            raise _fail(p, f"{where}: model folder not found: {model}")
        try:
            epost = tuple(parse_perturbation(s) for s in e.get("post", []))
        except ValueError as exc:
            raise _fail(p, f"{where}: {exc}") from None
        ewm = e.get("watermark")
        if ewm is not None and ewm != "none":
            from deepaudit.watermark import SCHEMES

            if ewm not in SCHEMES:
                raise _fail(p, f"{where}: watermark {ewm!r} unknown; valid: {sorted(SCHEMES)}")
        options = dict(e.get("options", {}))
        if "model" in options:
            raise _fail(p, f"{where}: give model as a key of the entry, not in options")
        entries.append(
            SuiteEntry(
                generator=str(e["generator"]),
                count=count,
                name=name,
                seed=int(e.get("seed", seed + 1_000_000 * k)),
                model=model,
                classes=tuple(str(c) for c in e.get("classes", [])),
                prompts=prompts,
                negative_prompt=e.get("negative_prompt"),
                init_from=init,
                post=post + epost,
                options=options,
                watermark=ewm,
            )
        )
    return SuiteSpec(
        path=p,
        name=str(suite.get("name", p.stem)),
        seed=seed,
        format=fmt,
        jpeg_quality=int(suite.get("jpeg_quality", 95)),
        batch_size=max(1, int(suite.get("batch_size", 16))),
        post=post,
        watermark=wm,
        sign_cert=cert,
        sign_key=key,
        entries=tuple(entries),
    )


@dataclass
class GenerateReport:
    out: Path
    generated: int = 0
    skipped: int = 0  # already in the manifest (resume)
    failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    per_generator: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "generated": self.generated,
            "skipped": self.skipped,
            "failed": self.failed,
            "seconds": round(self.seconds, 2),
            "items_per_s": round(self.generated / self.seconds, 3) if self.seconds else None,
            "per_generator": self.per_generator,
        }


def init_images(src: Path) -> list[Path]:
    """An entry's init images: a manifest's real images, a folder's files, or one file."""
    from deepaudit.manifest import MANIFEST_NAME, read_manifest
    from deepaudit.manifest_import import iter_files

    if (src / MANIFEST_NAME).is_file():
        m = read_manifest(src)
        return [m.resolve(i) for i in m.items if i.kind == "image" and i.label == "real"]
    if src.is_dir():
        return list(iter_files(src))
    return [src]


def run_suite(
    spec: SuiteSpec,
    out_dir: str | os.PathLike[str],
    *,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    limit_batches: int | None = None,
) -> GenerateReport:
    """Generate every item of ``spec`` into ``out_dir`` (resuming), returning counts.

    ``limit_batches`` stops after that many batches (tests use it to simulate a kill).
    """
    from deepaudit.manifest import ManifestWriter

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    creds = signing_credentials(spec)
    gens = build_generators(spec, device)
    report = GenerateReport(out)
    started = time.perf_counter()
    batches_done = 0
    inits: dict[str, list[Path]] = {}
    with ManifestWriter(out) as writer:
        done = sum(1 for e in spec.entries for i in range(e.count) if item_id(e, i) in writer)
        report.skipped = done
        if progress:
            progress(done, spec.total)
        for e, idx in suite_batches(spec):
            todo = [i for i in idx if item_id(e, i) not in writer]
            if not todo:
                continue
            if limit_batches is not None and batches_done >= limit_batches:
                report.seconds = time.perf_counter() - started
                return report
            if e.name not in inits:
                inits[e.name] = init_images(e.init_from) if e.init_from is not None else []
            batch = generate_batch(spec, e, gens[e.name], idx, todo, inits[e.name], out, creds)
            record_batch(batch, writer, report, out)
            done += len(batch.items)
            if progress and batch.items:
                progress(done, spec.total)
            batches_done += 1
    report.seconds = time.perf_counter() - started
    write_suite_info(spec, gens, out)
    return report


def signing_credentials(spec: SuiteSpec) -> Any:
    """The suite's C2PA signer, or None when it signs nothing."""
    if spec.sign_cert is None:
        return None
    from deepaudit.c2pa_layer import load_signing_credentials

    return load_signing_credentials(spec.sign_cert, spec.sign_key)


def build_generators(spec: SuiteSpec, device: str) -> dict[str, Any]:
    """Every entry's generator, built before any work so a broken model fails first."""
    from deepaudit.generators._registry import create_generator

    gens = {}
    for e in spec.entries:
        cfg = dict(e.options)
        if e.model is not None:
            cfg["model"] = e.model
        cfg.setdefault("device", device)
        try:
            gens[e.name] = create_generator(e.generator, **cfg)
        except TypeError as exc:
            raise _fail(spec.path, f"{e.name}: bad options for {e.generator}: {exc}") from None
        needs_init = getattr(gens[e.name], "task", None) in (
            "img2img",
            "inpaint",
            "instruct",
            "upscale",
        )
        if needs_init and (e.init_from is None or not init_images(e.init_from)):
            raise _fail(spec.path, f"{e.name}: {e.generator} needs init_from images")
    return gens


def suite_batches(spec: SuiteSpec) -> Iterator[tuple[SuiteEntry, list[int]]]:
    """The batches, from the spec alone: a resumed or sharded run makes the same ones."""
    for e in spec.entries:
        for start in range(0, e.count, spec.batch_size):
            yield e, list(range(start, min(e.count, start + spec.batch_size)))


@dataclass(frozen=True)
class GeneratedBatch:
    """One batch's saved items (in item order) and the items that failed."""

    entry: str
    items: tuple[Any, ...]  # ManifestItem
    failures: tuple[dict[str, str], ...]


def generate_batch(
    spec: SuiteSpec,
    e: SuiteEntry,
    gen: Any,
    idx: list[int],
    todo: list[int],
    inits: list[Path],
    out: Path,
    creds: Any,
) -> GeneratedBatch:
    """Generate batch ``idx`` of entry ``e`` and save the items in ``todo`` under ``out``.
    The whole batch is generated even when some items are done: a sampler's batch is what
    decides its outputs."""
    requests = [_request(e, i, inits) for i in idx]
    failures: list[dict[str, str]] = []
    try:
        items = gen.generate(requests)
    except DeepauditError:
        raise
    except Exception as exc:  # one bad batch: retry item by item, record failures
        logger.warning("%s batch at %d failed (%s); retrying items", e.name, idx[0], exc)
        items = []
        for r in requests:
            try:
                items.extend(gen.generate([r]))
            except Exception as item_exc:
                items.append(None)
                failures.append(_failure(e, r, item_exc))
    saved = tuple(
        _save_item(spec, e, i, item, out, creds)
        for i, item in zip(idx, items, strict=True)
        if item is not None and i in todo
    )
    return GeneratedBatch(e.name, saved, tuple(failures))


def record_batch(batch: GeneratedBatch, writer: Any, report: GenerateReport, out: Path) -> None:
    """The one writer's part: manifest lines, failures and counts for a saved batch."""
    for f in batch.failures:
        report.failed.append(f)
        with (out / "failures.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(f) + "\n")
    for item in batch.items:
        writer.write(item)
        report.generated += 1
        report.per_generator[batch.entry] = report.per_generator.get(batch.entry, 0) + 1


def write_suite_info(spec: SuiteSpec, gens: dict[str, Any], out: Path) -> None:
    (out / "suite.json").write_text(
        json.dumps(
            {
                "spec": str(spec.path),
                "name": spec.name,
                "generators": {n: g.describe() for n, g in gens.items()},
            },
            indent=2,
            default=str,
        )
        + "\n"
    )


def item_id(e: SuiteEntry, i: int) -> str:
    return f"{e.name}/{i:06d}"


def _request(e: SuiteEntry, i: int, inits: list[Path]):
    from deepaudit.generators.base import GenerationRequest
    from deepaudit.media import read_image

    init = read_image(inits[i % len(inits)]) if inits else None
    return GenerationRequest(
        seed=e.seed + i,
        prompt=e.prompts[i % len(e.prompts)] if e.prompts else None,
        negative_prompt=e.negative_prompt,
        class_label=e.classes[i % len(e.classes)] if e.classes else None,
        init_image=init,
    )


def _failure(e: SuiteEntry, r: Any, exc: BaseException) -> dict[str, str]:
    return {
        "id": f"{e.name}/seed-{r.seed}",
        "generator": e.generator,
        "seed": str(r.seed),
        "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
    }


def _save_item(spec: SuiteSpec, e: SuiteEntry, i: int, item: Any, out: Path, creds: Any):
    from deepaudit.manifest import ManifestItem
    from deepaudit.media import file_sha256, write_image, write_video
    from deepaudit.watermark import embed_watermark

    folder = out / e.name
    folder.mkdir(parents=True, exist_ok=True)
    transforms = [p.spec for p in e.post]
    extra: dict[str, Any] = {"suite": spec.name}
    px = item.pixels
    scheme = e.watermark if e.watermark is not None else spec.watermark
    if scheme == "none":
        scheme = None
    if item.kind == "image":
        if scheme:
            try:
                px = embed_watermark(px, scheme)
                extra["watermark"] = scheme
            except ValueError as exc:  # too small to carry the mark
                logger.warning("%s: no watermark (%s)", item_id(e, i), exc)
        px = apply_all(px, list(e.post), seed=e.seed + i)
        path = folder / f"{i:06d}{_FORMATS[spec.format]}"
        write_image(path, px, quality=spec.jpeg_quality)
        frames, fps = 1, None
        h, w = px.shape[:2]
    else:
        frames_px = np.stack([apply_all(f, list(e.post), seed=e.seed + i) for f in px])
        path = folder / f"{i:06d}.mp4"
        written = write_video(path, frames_px, fps=item.fps or 8.0)
        path = written.path
        frames, fps = len(frames_px), float(item.fps or 8.0)
        h, w = frames_px.shape[1:3]
    if item.mask is not None:
        mask_path = write_image(folder / f"{i:06d}.mask.png", item.mask)
        extra["mask"] = mask_path.relative_to(out).as_posix()
    if creds is not None:
        from deepaudit.c2pa_layer import sign_file

        params = {"seed": item.info.seed, "sampler": item.info.sampler, "model": item.info.model}
        sign_file(path, creds, digital_source_type="trainedAlgorithmicMedia", parameters=params)
        extra["c2pa"] = True
    return ManifestItem(
        id=item_id(e, i),
        path=path.relative_to(out).as_posix(),
        sha256=file_sha256(path),
        kind=item.kind,
        label="synthetic",
        source=e.name,
        generator=item.info,
        attributes=dict(item.attributes),
        width=int(w),
        height=int(h),
        frames=frames,
        fps=fps,
        transforms=tuple(transforms),
        extra=extra,
    )
