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

Paired entries (``vae-reconstruct``, ``self-inpaint``) make one synthetic twin per real
image of ``init_from`` (``count`` defaults to all of them): the real file is placed under
``real/`` and both items carry the same ``pair`` id; the twin keeps the real's size and file
format (:mod:`generators.twins`), so the suite's ``format`` does not apply to them, and
``post`` and ``watermark``, which would tell a twin from its real, are refused::

    [[generate]]
    generator = "vae-reconstruct"
    model = "weights/sdxl-vae"   # AutoencoderKL folder, pipeline folder or .safetensors
    init_from = "photos/"        # manifest folder (attributes and splits kept) or folder

Options whose name ends in ``_from`` are paths relative to the spec, like ``init_from``
(``personalize``'s ``subject_from``). A generator that must be fitted first (``personalize``
trains its subject LoRA) does so inside the dataset folder before its items, resuming like
the items do, and its real training photos join the manifest. Items made from a source file
(img2img, inpaint, edit, upscale, video-restyle) record it as ``init`` (path, sha256 and, from
a manifest, id); restyled videos are signed as ``c2pa.edited`` with the source as ingredient.
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
    "SourceFile",
    "SuiteEntry",
    "SuiteSpec",
    "build_generators",
    "entry_sources",
    "generate_batch",
    "init_images",
    "item_id",
    "load_suite",
    "prepare_generators",
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
    paired: bool = False  # a twin per real image of init_from (see generators.twins)


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
        if "generator" not in e:
            raise _fail(p, f"{where} needs 'generator' and 'count'")
        try:
            paired = bool(generator_entry(str(e["generator"])).metadata.get("paired"))
        except ValueError as exc:
            raise _fail(p, f"{where}: {exc}") from None
        if "count" not in e and not paired:
            raise _fail(p, f"{where} needs 'generator' and 'count'")
        if paired:
            count = _check_paired(p, where, e, rel(e["init_from"]) if "init_from" in e else None)
            if suite.get("post") or (suite.get("watermark") and e.get("watermark") != "none"):
                raise _fail(
                    p,
                    f"{where}: {e['generator']} makes twins of real photos; the suite's post "
                    "and watermark would tell a twin from its real, move them to other entries",
                )
        else:
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
        for option, value in options.items():
            if option.endswith("_from") and isinstance(value, str):
                options[option] = rel(value)
                if not options[option].exists():
                    raise _fail(p, f"{where}: {option} not found: {options[option]}")
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
                paired=paired,
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


# tasks that start from a source file, and the kind of file
_NEEDS_INIT = {
    "img2img": "image",
    "inpaint": "image",
    "instruct": "image",
    "upscale": "image",
    "video2video": "video",
}


@dataclass(frozen=True)
class SourceFile:
    """A file an entry starts from (init image or source video)."""

    path: Path
    id: str | None = None  # the item id when the source came from a manifest


def init_images(src: Path, kind: str = "image") -> list[SourceFile]:
    """An entry's sources: a manifest's real items of ``kind``, a folder's files, or a file."""
    from deepaudit.manifest import MANIFEST_NAME, read_manifest
    from deepaudit.manifest_import import iter_files
    from deepaudit.media import sniff_format

    if (src / MANIFEST_NAME).is_file():
        m = read_manifest(src)
        return [
            SourceFile(m.resolve(i), i.id) for i in m.items if i.kind == kind and i.label == "real"
        ]
    files = list(iter_files(src)) if src.is_dir() else [src]
    if kind == "video":
        files = [f for f in files if sniff_format(f).kind == "video"]
    return [SourceFile(f) for f in files]


def entry_sources(e: SuiteEntry, gen: Any) -> tuple[list[SourceFile], list[Any]]:
    """An entry's source files and, for a paired entry, its real photos (``twins``)."""
    if e.paired and e.init_from is not None:
        from deepaudit.generators.twins import list_real_photos

        reals = list_real_photos(e.init_from)
        return [SourceFile(r.path) for r in reals], reals
    if e.init_from is None:
        return [], []
    kind = _NEEDS_INIT.get(getattr(gen, "task", None) or "") or "image"
    return init_images(e.init_from, kind), []


def run_suite(
    spec: SuiteSpec,
    out_dir: str | os.PathLike[str],
    *,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    limit_batches: int | None = None,
    tracker: Any = None,
) -> GenerateReport:
    """Generate every item of ``spec`` into ``out_dir`` (resuming), returning counts.

    ``limit_batches`` stops after that many batches (tests use it to simulate a kill).
    ``tracker``: where generators that train first (``personalize``) log their runs.
    """
    from deepaudit.manifest import ManifestWriter

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = GenerateReport(out)
    if suite_finished(spec, out):  # a rerun of a finished suite: no model to load
        report.skipped = spec.total
        if progress:
            progress(spec.total, spec.total)
        return report
    creds = signing_credentials(spec)
    gens = build_generators(spec, device)
    started = time.perf_counter()
    batches_done = 0
    sources: dict[str, tuple[list[SourceFile], list[Any]]] = {}
    with ManifestWriter(out) as writer:
        prepare_generators(spec, gens, out, writer, tracker)
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
            if e.name not in sources:
                sources[e.name] = entry_sources(e, gens[e.name])
            inits, reals = sources[e.name]
            batch = generate_batch(spec, e, gens[e.name], idx, todo, inits, reals, out, creds)
            record_batch(batch, writer, report, out)
            done += batch.generated
            if progress and batch.generated:
                progress(done, spec.total)
            batches_done += 1
    report.seconds = time.perf_counter() - started
    write_suite_info(spec, gens, out)
    return report


def suite_finished(spec: SuiteSpec, out: Path) -> bool:
    """Whether ``out`` holds a finished run of ``spec``: suite.json (a run's last write) and
    every item of the spec in the manifest."""
    from deepaudit.manifest import ManifestWriter

    if not (out / "suite.json").is_file():
        return False
    with ManifestWriter(out) as writer:
        return all(item_id(e, i) in writer for e in spec.entries for i in range(e.count))


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
        init_kind = _NEEDS_INIT.get(getattr(gens[e.name], "task", None) or "")
        if e.paired and not init_kind:
            init_kind = "image"
        if init_kind and (e.init_from is None or not init_images(e.init_from, init_kind)):
            raise _fail(spec.path, f"{e.name}: {e.generator} needs init_from {init_kind}s")
    return gens


def prepare_generators(
    spec: SuiteSpec, gens: dict[str, Any], out: Path, writer: Any, tracker: Any = None
) -> None:
    """Fit what must be fitted before any item (a subject LoRA), resuming like the items do;
    the real items it returns (the subject's photos) join the manifest."""
    for e in spec.entries:
        prepare = getattr(gens[e.name], "prepare", None)
        if prepare is not None:
            for real in prepare(out, e.name, tracker=tracker):
                if real.id not in writer:
                    writer.write(real)


def suite_batches(spec: SuiteSpec) -> Iterator[tuple[SuiteEntry, list[int]]]:
    """The batches, from the spec alone: a resumed or sharded run makes the same ones."""
    for e in spec.entries:
        for start in range(0, e.count, spec.batch_size):
            yield e, list(range(start, min(e.count, start + spec.batch_size)))


@dataclass(frozen=True)
class GeneratedBatch:
    """One batch's saved manifest items (in item order), how many it generated (a paired
    entry saves a twin and, once, its real) and the items that failed."""

    entry: str
    items: tuple[Any, ...]  # ManifestItem
    failures: tuple[dict[str, str], ...]
    generated: int = 0


def generate_batch(
    spec: SuiteSpec,
    e: SuiteEntry,
    gen: Any,
    idx: list[int],
    todo: list[int],
    inits: list[SourceFile],
    reals: list[Any],
    out: Path,
    creds: Any,
) -> GeneratedBatch:
    """Generate batch ``idx`` of entry ``e`` and save the items in ``todo`` under ``out``.
    The whole batch is generated even when some items are done: a sampler's batch is what
    decides its outputs."""
    requests = [_request(e, i, inits, gen) for i in idx]
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
    saved: list[Any] = []
    generated = 0
    for i, item in zip(idx, items, strict=True):
        if item is None or i not in todo:
            continue
        if e.paired:
            saved.extend(_save_pair(spec, e, i, item, reals, out, creds))
        else:
            init = inits[i % len(inits)] if inits else None
            saved.append(_save_item(spec, e, i, item, out, creds, init))
        generated += 1
    return GeneratedBatch(e.name, tuple(saved), tuple(failures), generated)


def record_batch(batch: GeneratedBatch, writer: Any, report: GenerateReport, out: Path) -> None:
    """The one writer's part: manifest lines, failures and counts for a saved batch."""
    for f in batch.failures:
        report.failed.append(f)
        with (out / "failures.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(f) + "\n")
    for item in batch.items:
        if item.id not in writer:  # a paired real is written once, for all its twins
            writer.write(item)
    report.generated += batch.generated
    report.per_generator[batch.entry] = report.per_generator.get(batch.entry, 0) + batch.generated


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


def _check_paired(p: Path, where: str, e: dict[str, Any], init: Path | None) -> int:
    """The count of a paired entry (all its real images by default), after its checks."""
    from deepaudit.generators.twins import REAL_FOLDER, list_real_photos

    gen = e["generator"]
    if init is None or not init.exists():
        raise _fail(p, f"{where}: {gen} needs init_from (real images) that exist")
    for key in ("post", "watermark"):
        if e.get(key) not in (None, [], "none"):
            raise _fail(
                p,
                f"{where}: {gen} makes twins of real photos; {key} would tell a twin "
                "from its real, so it is refused here",
            )
    if str(e.get("name", gen)) == REAL_FOLDER:
        raise _fail(p, f"{where}: name {REAL_FOLDER!r} is where the real photos go; pick another")
    n = len(list_real_photos(init))
    if n == 0:
        raise _fail(p, f"{where}: no real images in {init}")
    return int(e.get("count", n))


def item_id(e: SuiteEntry, i: int) -> str:
    return f"{e.name}/{i:06d}"


def _request(e: SuiteEntry, i: int, inits: list[SourceFile], gen: Any):
    from deepaudit.generators.base import GenerationRequest
    from deepaudit.media import read_image

    init = video = fps = None
    if inits and gen.kind == "video":
        video, fps = _read_source_video(inits[i % len(inits)].path, getattr(gen, "max_frames", 16))
    elif inits:
        init = read_image(inits[i % len(inits)].path)
    return GenerationRequest(
        seed=e.seed + i,
        prompt=e.prompts[i % len(e.prompts)] if e.prompts else None,
        negative_prompt=e.negative_prompt,
        class_label=e.classes[i % len(e.classes)] if e.classes else None,
        init_image=init,
        init_video=video,
        init_fps=fps,
    )


def _read_source_video(path: Path, max_frames: int) -> tuple[np.ndarray, float]:
    """The first ``max_frames`` consecutive frames (motion at the source's own pace) and fps."""
    from deepaudit.media import iter_video_frames, probe

    fps = probe(path).fps or 8.0
    frames = []
    for _, frame in iter_video_frames(path):
        frames.append(frame)
        if len(frames) >= max_frames:
            break
    if not frames:
        raise DeepauditError(f"{path}: no frame could be decoded")
    return np.stack(frames), float(fps)


def _failure(e: SuiteEntry, r: Any, exc: BaseException) -> dict[str, str]:
    return {
        "id": f"{e.name}/seed-{r.seed}",
        "generator": e.generator,
        "seed": str(r.seed),
        "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
    }


def _save_pair(spec: SuiteSpec, e: SuiteEntry, i: int, item: Any, reals: list, out: Path, creds):
    """The real image (placed once) and its twin, in the real's format (generators.twins)."""
    from deepaudit.generators.twins import pair_items

    sign = None
    if creds is not None:
        from deepaudit.c2pa_layer import sign_file

        params = {"seed": item.info.seed, "model": item.info.model}

        def sign(path: Path) -> None:
            sign_file(path, creds, digital_source_type="trainedAlgorithmicMedia", parameters=params)

    (out / e.name).mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {"suite": spec.name}
    if creds is not None:
        extra["c2pa"] = True
    return pair_items(
        out,
        out / e.name / f"{i:06d}",
        item_id(e, i),
        item.pixels,
        reals[i % len(reals)],
        source=e.name,
        generator=item.info,
        mask=item.mask,
        extra=extra,
        sign=sign,
    )


def _save_item(
    spec: SuiteSpec,
    e: SuiteEntry,
    i: int,
    item: Any,
    out: Path,
    creds: Any,
    init: SourceFile | None,
):
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
    if init is not None:
        where = os.path.relpath(init.path.resolve(), out.resolve())
        extra["init"] = {"path": Path(where).as_posix(), "sha256": file_sha256(init.path)}
        if init.id is not None:
            extra["init"]["id"] = init.id
    if creds is not None:
        from deepaudit.c2pa_layer import sign_file

        params = {"seed": item.info.seed, "sampler": item.info.sampler, "model": item.info.model}
        # a restyled video is an edit of its source: c2pa.edited, the source as ingredient
        parent = init.path if init is not None and item.kind == "video" else None
        sign_file(
            path,
            creds,
            digital_source_type="trainedAlgorithmicMedia",
            parameters=params,
            parent=parent,
        )
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
