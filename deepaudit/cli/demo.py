"""``deepaudit demo``: the toolkit end to end on built-in data, nothing downloaded.

The default is the **main job** — a scan of a prepared inbox — with what it needs made in
seconds (``make demo``: about a minute on 2 cores):

1. real set: crops of the built-in photos (the same size and format as the synthetic set);
2. a pixel DDPM and a video UNet trained for a few dozen steps on them, and a tiny
   text-to-image pipeline (random weights) that watermarks its output;
3. images and clips generated and C2PA-signed with a demo certificate made on the spot;
4. two detectors (spectral, timm) trained and calibrated on that set;
5. an inpainting set (real crops with one region regenerated; the masks are the ground
   truth) and a localisation detector trained on it, with pixel AUC/F1/IoU and bootstrap
   CIs (:mod:`deepaudit.cli.demo_localize`);
6. the scan of an inbox mixing real, generated, inpainted, signed, stripped, tampered,
   watermarked, video and broken files, and its report (heatmaps of the flagged images).

``full=True`` (``deepaudit demo --full``) is the whole pipeline at larger sizes: a latent
diffusion model too, longer training, and the evaluation grids (per generator,
cross-generator, robustness, format shortcut). ``quick=True`` shrinks everything (the tests
run it). Every step is tracked in mlflow (``OUT/mlflow.db``); the figures printed are
measured, not canned. Part of the CLI layer.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["run_demo"]


_SIZES = {
    # name: (real crops, pixel steps, latent (ae, unet) steps, video steps, per-generator count,
    #        sampling steps, video clips, timm epochs)
    "quick": dict(
        real=96,
        pixel=8,
        ae=8,
        latent=8,
        video=2,
        count=48,
        sample_steps=4,
        clips=2,
        epochs=1,
        channels=(16, 32),
        video_size=16,
        video_frames=4,
    ),
    "main": dict(
        real=240,
        pixel=80,
        ae=0,
        latent=0,
        video=4,
        count=96,
        sample_steps=8,
        clips=2,
        epochs=2,
        channels=(16, 32),
        video_size=16,
        video_frames=4,
    ),
    "full": dict(
        real=600,
        pixel=400,  # 2 CPU cores: ~3 steps/s for the (32, 64, 64) UNet; the demo stays < 10 min
        ae=150,
        latent=250,
        video=40,
        count=300,
        sample_steps=20,
        clips=8,
        epochs=6,
        channels=(32, 64, 64),
        video_size=32,
        video_frames=8,
    ),
}


def run_demo(
    out: str | os.PathLike[str],
    *,
    quick: bool = False,
    full: bool = False,
    device: str = "auto",
    on_step: Callable[[str], None] | None = None,
) -> dict:
    """Run the demo into ``out`` and return its summary (also written to summary.json).
    Default: the main job at seconds-scale sizes; ``full``: the whole pipeline with
    evaluation; ``quick``: tiny sizes, the whole pipeline (for tests)."""
    import time

    from deepaudit.audit.scan import run_scan
    from deepaudit.c2pa_layer import load_signing_credentials, make_demo_credentials, sign_file
    from deepaudit.cli.demo_localize import run_localization
    from deepaudit.detectors import create_detector
    from deepaudit.detectors.data import load_items
    from deepaudit.detectors.evaluate import cross_generator, evaluate_detector
    from deepaudit.detectors.train import train_detector
    from deepaudit.generators import train_generator
    from deepaudit.generators.suite import load_suite, run_suite
    from deepaudit.generators.tiny_pipelines import write_tiny_pipeline
    from deepaudit.generators.training import load_training_images, write_real_crops
    from deepaudit.manifest import read_manifest
    from deepaudit.tracking import Tracker, default_tracking_uri

    say = on_step or (lambda msg: None)
    mode = "quick" if quick else ("full" if full else "main")
    cfg = _SIZES[mode]
    latent = mode != "main"  # the latent model (autoencoder + UNet) only in the full pipeline
    evaluate = mode != "main"
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    uri = (
        default_tracking_uri()
        if "MLFLOW_TRACKING_URI" in os.environ
        else (f"sqlite:///{(root / 'mlflow.db').resolve()}")
    )
    tracker = Tracker(
        uri,
        artifact_root=None
        if "MLFLOW_TRACKING_URI" in os.environ
        else (root / "mlartifacts").resolve().as_uri(),
    )

    def lap(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 1)

    # 1. real set
    t0 = time.perf_counter()
    data = root / "dataset"
    photos = load_training_images(None)
    if not (data / "manifest.jsonl").is_file():
        write_real_crops(data, cfg["real"], size=32, seed=2024, data=photos)
    lap("real_set", t0)
    say(
        f"real set: {cfg['real']} 32x32 crops of {len(photos.images)} built-in photos "
        "(PNG, the same size and format as the synthetic set)"
    )

    # 2. generators
    t0 = time.perf_counter()
    models = root / "models"
    per_family = {
        "pixel": dict(steps=cfg["pixel"], channels=cfg["channels"], batch_size=32),
        "latent": dict(
            steps=cfg["latent"], ae_steps=cfg["ae"], channels=cfg["channels"], batch_size=32
        ),
        "video": dict(
            steps=cfg["video"],
            size=cfg["video_size"],
            frames=cfg["video_frames"],
            channels=(8, 16) if quick else (16, 32),
            batch_size=2,
        ),
    }
    if not latent:
        del per_family["latent"]
    for family, options in per_family.items():
        if not (models / family / "deepaudit.json").is_file():
            train_generator(
                family,  # type: ignore[arg-type]
                models / family,
                name=f"demo-{family}",
                device=device,
                tracker=tracker,
                **options,
            )
    tiny = models / "tiny-sd"
    if not (tiny / "model_index.json").is_file():
        write_tiny_pipeline("text2img", tiny)
    lap("train_generators", t0)
    say(
        f"trained {', '.join(per_family)} diffusion models ({cfg['pixel']} pixel steps) in "
        f"{timings['train_generators']} s"
    )

    # 3. synthetic set, signed with a demo certificate
    t0 = time.perf_counter()
    certs = root / "certs"
    if not (certs / "ca.pem").is_file():
        make_demo_credentials(certs, organization="deepaudit demo")
    n, st = cfg["count"], cfg["sample_steps"]
    prompts = root / "prompts.txt"
    prompts.write_text("a photo of a cat\na city street at night\na bowl of fruit\n")
    spec = root / "suite.toml"
    entries = [
        {"generator": "pixel-ddim", "model": "models/pixel", "count": n, "options": {"steps": st}},
        {"generator": "pixel-dpmpp", "model": "models/pixel", "count": n, "options": {"steps": st}},
        *(
            [
                {
                    "generator": "latent-ddim",
                    "model": "models/latent",
                    "count": n,
                    "options": {"steps": st},
                }
            ]
            if latent
            else []
        ),
        {
            "generator": "video-ddim",
            "model": "models/video",
            "count": cfg["clips"],
            "options": {"steps": st},
        },
        {
            "generator": "sd-text2img",
            "name": "tiny-sd",
            "model": "models/tiny-sd",
            "count": 4,
            "prompts": "prompts.txt",
            "watermark": "sdxl",
            "options": {"steps": 3, "height": 64, "width": 64},
        },
    ]
    spec.write_text(
        '[suite]\nname = "demo"\nbatch_size = 16\n'
        'sign = { cert = "certs/signer.pem", key = "certs/signer.key.pem" }\n'
        + "".join(_toml_entry(e) for e in entries)
    )
    gen_report = run_suite(load_suite(spec), data, device=device)
    manifest = read_manifest(data)
    if any(i.split is None for i in manifest.items):
        manifest = manifest.with_splits(ratios=(0.6, 0.2, 0.2), overwrite=True)
        manifest.write()
    lap("generate", t0)
    s = manifest.summary().to_json()
    say(
        f"generated {gen_report.generated} items ({gen_report.skipped} already there), signed; "
        f"dataset: {s['by_label']}, splits {s['by_split']}"
    )

    # 4. detectors
    t0 = time.perf_counter()
    items = load_items(data)
    dets = root / "detectors"
    trained: dict[str, Any] = {}
    reused: set[str] = set()  # detectors an earlier run trained: their evaluation stands too
    for name, opts in (("spectral", {}), ("timm", {"epochs": cfg["epochs"], "device": device})):
        folder = dets / name
        if (folder / "config.json").is_file():
            reused.add(name)
            from deepaudit.detectors import load_detector

            det = load_detector(folder)
            metrics = det.metrics
        else:
            det = create_detector(name, **opts)
            metrics = train_detector(
                det,
                items,
                folder,
                target_fpr=0.05,
                tracker=tracker,
                register_as=f"deepaudit-demo-{name}",
            )
        trained[name] = {"threshold": det.threshold, "test": metrics.get("test"), "detector": det}
    lap("train_detectors", t0)
    for name, t in trained.items():
        te = t["test"] or {}
        say(
            f"detector {name}: test AUC {te.get('auc')} (95% CI {te.get('ci95', {}).get('auc')}), "
            f"TPR@5%FPR {te.get('tpr_at_fpr_5')}"
        )

    # 5. evaluation grids (the full pipeline)
    t0 = time.perf_counter()
    evals: dict[str, Any] = {}
    cross: dict[str, Any] = {"train_on_rows_test_on_columns": None}
    for name, t in trained.items() if evaluate else ():
        done = root / "evaluation" / name / "metrics.json"
        if name in reused and done.is_file():  # resumed: evaluated by the earlier run
            ev = json.loads(done.read_text())
        else:
            ev = evaluate_detector(
                t["detector"],
                items.split("test"),
                root / "evaluation" / name,
                bootstrap=200 if quick else 1000,
                tracker=tracker,
            )
        evals[name] = {
            "auc": ev["overall"]["auc"],
            "per_generator_auc": {g: m["auc"] for g, m in ev["per_generator"].items()},
            "jpeg75_auc": ev["robustness"].get("jpeg:75", {}).get("auc"),
            "format_shortcut": ev.get("format_shortcut"),
        }
    if evaluate:
        done = root / "evaluation" / "cross" / "cross_generator.json"
        if "spectral" in reused and done.is_file():
            cross = json.loads(done.read_text())
        else:
            cross = cross_generator("spectral", {}, items, root / "evaluation" / "cross")
        lap("evaluate", t0)
        say(
            f"evaluation: spectral AUC after JPEG q75 {evals['spectral']['jpeg75_auc']}; "
            f"cross-generator AUC matrix {cross['train_on_rows_test_on_columns']}"
        )

    # 6. where images were changed: an inpainting set and a localiser trained on it
    t0 = time.perf_counter()
    loc = run_localization(
        root,
        mode,
        photos=photos,
        device=device,
        tracker=tracker,
        evaluate=mode == "full",  # whole-image grids too; the others: the maps' report
        bootstrap=200 if quick else 1000,
        say=say,
    )
    lap("localization", t0)

    # 7. the scan
    t0 = time.perf_counter()
    inbox = root / "inbox"
    _build_scan_inbox(inbox, data, manifest, certs, sign_file, load_signing_credentials)
    _add_inpainted(inbox, loc.dataset, certs, sign_file, load_signing_credentials)
    summary = run_scan(
        [inbox],
        root / "scan",
        detectors=[dets / "spectral", dets / "timm", loc.detector],
        trust_anchors=certs / "ca.pem",
        device=device,
        csv=True,
    )
    lap("scan", t0)
    sj = summary.to_json()
    heatmaps = sorted((root / "scan" / "heatmaps").glob("*.png"))
    say(
        f"scanned {sj['files']} inbox files: "
        + ", ".join(f"{k} {v}" for k, v in sj["by_verdict"].items() if v)
        + f"; {len(heatmaps)} heatmaps of flagged images"
    )

    report = {
        "mode": mode,
        "quick": quick,
        "seconds": round(time.perf_counter() - started, 1),
        "timings_s": timings,
        "dataset": {"path": str(data), **s},
        "generation": gen_report.to_json(),
        "detectors": {
            k: {"threshold": v["threshold"], "test": v["test"]} for k, v in trained.items()
        },
        "evaluation": evals,
        "cross_generator_auc": cross["train_on_rows_test_on_columns"],
        "localization": {
            "dataset": {"path": str(loc.dataset), **loc.summary},
            "generated": loc.generated,
            **loc.figures,
        },
        "scan": sj,
        "outputs": {
            "scan_results": str(root / "scan" / "results.jsonl"),
            "scan_report": str(root / "scan" / "report.html"),
            "heatmaps": str(root / "scan" / "heatmaps"),
            "evaluation": str(root / "evaluation"),
            "mlflow": f"mlflow ui --backend-store-uri {uri}",
        },
    }
    (root / "summary.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def _toml_entry(entry: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)

    return "[[generate]]\n" + "".join(f"{k} = {value(v)}\n" for k, v in entry.items())


def _add_inpainted(inbox: Path, inpainting: Path, certs: Path, sign_file, load_creds) -> None:
    """Three test-split inpainted crops, and one signed as an AI edit of its real photo (as
    an editor that writes Content Credentials does): flagged files get the localiser's map."""
    from deepaudit.manifest import read_manifest

    m = read_manifest(inpainting)
    twins = [i for i in m.items if i.label == "synthetic" and i.split == "test"][:3]
    for i in twins:
        shutil.copyfile(m.resolve(i), inbox / f"inpainted_{i.source}_{Path(i.path).name}")
    real = {i.extra.get("pair"): i for i in m.items if i.label == "real"}
    first = twins[0] if twins else None
    if first is not None and first.extra.get("pair") in real:
        sign_file(
            m.resolve(first),
            load_creds(certs / "signer.pem", certs / "signer.key.pem"),
            inbox / "signed_inpainted.png",
            digital_source_type="compositeWithTrainedAlgorithmicMedia",
            action="c2pa.edited",
            parent=m.resolve(real[first.extra["pair"]]),
        )


def _build_scan_inbox(
    inbox: Path, data: Path, manifest, certs: Path, sign_file, load_creds
) -> None:
    """Test-split real and generated files, signed/stripped/tampered/capture-claim copies, a
    generated clip, a full-size photo, and the broken files users meet."""
    from PIL import Image

    from deepaudit.photos import builtin_photos, png_bomb_header

    if inbox.exists():
        shutil.rmtree(inbox)
    inbox.mkdir(parents=True)
    test = [i for i in manifest.items if i.split == "test"] or list(manifest.items)
    real = [i for i in test if i.label == "real"][:6]
    fake = [i for i in test if i.label == "synthetic" and i.kind == "image"]
    clip = next((i for i in manifest.items if i.kind == "video"), None)
    for i in real:
        shutil.copyfile(data / i.path, inbox / f"real_{Path(i.path).name}")
    by_source: dict[str, int] = {}
    for i in fake:
        if by_source.get(i.source, 0) < 3:
            by_source[i.source] = by_source.get(i.source, 0) + 1
            shutil.copyfile(data / i.path, inbox / f"{i.source}_{Path(i.path).name}")
    creds = load_creds(certs / "signer.pem", certs / "signer.key.pem")
    first = next(inbox.glob("pixel-ddim_*.png"))
    signed = inbox / "signed_ai.png"
    shutil.copyfile(first, signed)  # already signed by the suite
    Image.open(signed).save(inbox / "stripped_ai.png")  # re-saving drops the manifest
    raw = bytearray(signed.read_bytes())
    raw[raw.index(b"IDAT") + 8] ^= 0x01
    (inbox / "tampered_ai.png").write_bytes(bytes(raw))
    real_png = inbox / f"real_{Path(real[0].path).name}"
    sign_file(real_png, creds, inbox / "signed_capture.png", digital_source_type="digitalCapture")
    if clip is not None:
        shutil.copyfile(data / clip.path, inbox / "generated_clip.mp4")
    # the invisible watermark alone: a watermarking pipeline's output, its manifest stripped
    marked = next((i for i in manifest.items if i.source == "tiny-sd"), None)
    if marked is not None:
        Image.open(data / marked.path).save(inbox / "watermarked_ai.png")
    # AI metadata alone: generation parameters as AUTOMATIC1111 writes them, no manifest
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(
        "parameters",
        "a photo of a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 32x32, "
        "Model: sd_xl_base_1.0",
    )
    Image.open(first).save(inbox / "ai_metadata.png", pnginfo=info)
    photos = builtin_photos()
    from deepaudit.media import write_video
    from deepaudit.photos import pan_clip

    write_video(inbox / "real_clip.mp4", pan_clip(photos[1].image, frames=12, size=96), fps=12)
    photo = photos[0]
    Image.fromarray(photo.image).save(inbox / "photo_fullsize.jpg", quality=90)
    good_jpeg = inbox / "photo_fullsize.jpg"
    (inbox / "empty.jpg").write_bytes(b"")
    (inbox / "truncated.jpg").write_bytes(good_jpeg.read_bytes()[:2000])
    (inbox / "notes.png").write_text("not an image, whatever the name says\n")
    (inbox / "invoice.mp4").write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    (inbox / "bomb.png").write_bytes(png_bomb_header(100_000, 100_000))
