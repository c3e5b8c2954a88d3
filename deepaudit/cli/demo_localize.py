"""The demo's localisation step: an inpainting set with free ground truth, a localiser on it.

``self-inpaint`` (with ``restore_background``) regenerates one region of a real crop and
pastes the real pixels back around it, so the suite's saved mask *is* the answer: where the
pixels were generated. A ``localize`` detector is trained on those twins and their reals
(split by ``pair``, so a photo and its twins never straddle train and test), and reports
pixel AUC, F1 and IoU with bootstrap CIs over the test images.

What the figures measure: the inpainting pipeline is the suite's tiny one with random
weights (nothing is downloaded), so the regenerated region is noise-like. Finding it is far
easier than finding a real model's edit; the figures show that the training, the map, the
metrics and the scan's heatmaps work end to end, not how well real-world edits are found
(the best published IoU on OpenSDI is 0.43). Part of the CLI layer, run by
:mod:`deepaudit.cli.demo`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LOCALIZATION_SIZES", "Localization", "localization_figures", "run_localization"]

# per demo mode: real crops (each gets one twin per mask shape), crop side, sampling steps,
# mask shapes, localiser epochs
LOCALIZATION_SIZES: dict[str, dict[str, Any]] = {
    "quick": dict(real=15, size=32, steps=2, masks=("object",), epochs=2),
    "main": dict(real=30, size=64, steps=2, masks=("object",), epochs=3),
    "full": dict(real=64, size=64, steps=2, masks=("object", "rectangle"), epochs=6),
}


@dataclass(frozen=True)
class Localization:
    """What the step made: the inpainting dataset, the trained localiser and its figures."""

    dataset: Path
    detector: Path
    figures: dict[str, Any]
    generated: int
    summary: dict[str, Any]


def run_localization(
    root: Path,
    mode: str,
    *,
    photos: Any,
    device: str,
    tracker: Any,
    evaluate: bool,
    bootstrap: int,
    say: Callable[[str], None],
) -> Localization:
    """Make (or resume) the inpainting set under ``root``, train the localiser on it and
    measure it on its test split; ``evaluate`` runs the whole evaluation (whole-image grids
    too, into ``root/evaluation/localize``), else only the localisation report."""
    from deepaudit.detectors import create_detector, load_detector
    from deepaudit.detectors.data import load_items
    from deepaudit.detectors.evaluate import evaluate_detector
    from deepaudit.detectors.localize import localization_report
    from deepaudit.detectors.train import train_detector
    from deepaudit.generators.suite import load_suite, run_suite
    from deepaudit.generators.tiny_pipelines import write_tiny_pipeline
    from deepaudit.generators.training import write_real_crops
    from deepaudit.manifest import read_manifest

    cfg = LOCALIZATION_SIZES[mode]
    source, data = root / "inpaint-source", root / "inpainting"
    if not (source / "manifest.jsonl").is_file():
        write_real_crops(source, cfg["real"], size=cfg["size"], seed=77, data=photos)
    pipe = root / "models" / "tiny-inpaint"
    if not (pipe / "model_index.json").is_file():
        write_tiny_pipeline("inpaint", pipe)
    spec = root / "inpainting.toml"  # no prompt, so guidance 1 (no second, unconditional pass)
    spec.write_text(
        '[suite]\nname = "demo-inpainting"\nbatch_size = 16\n'
        + "".join(
            f'[[generate]]\ngenerator = "self-inpaint"\nname = "self-inpaint-{shape}"\n'
            f'model = "models/tiny-inpaint"\ninit_from = "inpaint-source"\n'
            f'options = {{ steps = {cfg["steps"]}, mask = "{shape}", '
            "guidance = 1.0, restore_background = true, batch_size = 16 }\n"
            for shape in cfg["masks"]
        )
    )
    report = run_suite(load_suite(spec), data, device=device)
    manifest = read_manifest(data)
    if any(i.split is None for i in manifest.items):
        manifest = _split_by_pair(manifest)
        manifest.write()
    items = load_items(data)
    folder = root / "detectors" / "localize"
    if (folder / "config.json").is_file():
        det = load_detector(folder)
    else:
        det = create_detector(
            "localize",
            model="resnet10t",
            input_size=cfg["size"],
            epochs=cfg["epochs"],
            batch_size=16,
            lr=3e-3,
            patience=cfg["epochs"],
            device=device,
        )
        train_detector(
            det,
            items,
            folder,
            target_fpr=0.05,
            tracker=tracker,
            register_as="deepaudit-demo-localize",
        )
    test = items.split("test")
    if evaluate:
        ev = evaluate_detector(
            det, test, root / "evaluation" / "localize", bootstrap=bootstrap, tracker=tracker
        )
        loc = ev["localization"]
    else:
        loc = localization_report(det, test, bootstrap=bootstrap)
        out = root / "evaluation" / "localize"
        out.mkdir(parents=True, exist_ok=True)
        (out / "localization.json").write_text(json.dumps(loc, indent=2) + "\n")
    figures = localization_figures(loc)
    figures["settings"] = {
        "inpainting": f"self-inpaint, tiny random-weight pipeline, {cfg['steps']} steps, "
        f"masks {'+'.join(cfg['masks'])}, real background restored",
        "crops": f"{cfg['real']} real {cfg['size']}x{cfg['size']} crops of the built-in photos",
        "localiser": f"localize (resnet10t), {cfg['epochs']} epochs, input {cfg['size']}",
        "bootstrap": min(bootstrap, 200) if evaluate else bootstrap,  # evaluate caps it
        "split": "by photo (pair), train/val/test 3:1:1",
    }
    o = figures["overall"]
    say(
        f"localiser ({o['edited_images']} inpainted + {o.get('real_images', 0)} real test "
        f"images): pixel AUC {o['pixel_auc']}, F1 {o['f1']} (95% CI {o['f1_ci']}), "
        f"IoU {o['iou']} (95% CI {o['iou_ci']}) at map threshold {figures['map_threshold']}"
    )
    return Localization(
        dataset=data,
        detector=folder,
        figures=figures,
        generated=report.generated,
        summary=manifest.summary().to_json(),
    )


def _split_by_pair(manifest: Any) -> Any:
    """Train/val/test 3:1:1 over the photos in sorted pair order, each photo with its twins
    (a test twin's background is never trained on). Not by hash, as ``manifest split``
    does: with a few dozen photos a hash can leave a split empty on another machine."""
    from dataclasses import replace

    from deepaudit.manifest import Manifest

    pairs = sorted({str(i.extra["pair"]) for i in manifest.items})
    split = {p: ("train", "train", "train", "val", "test")[k % 5] for k, p in enumerate(pairs)}
    return Manifest(
        manifest.root, [replace(i, split=split[str(i.extra["pair"])]) for i in manifest.items]
    )


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 3)


def localization_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of a :func:`~deepaudit.detectors.localize.localization_report`,
    rounded for the demo's summary (the full report is in the evaluation folder)."""

    def brief(part: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "edited_images": part["edited_images"],
            "pixel_auc": _r(part["pixel_auc"]),
            "f1": _r(part["f1"]["mean"]),
            "f1_ci": [_r(v) for v in part["f1"]["ci"]],
            "iou": _r(part["iou"]["mean"]),
            "iou_ci": [_r(v) for v in part["iou"]["ci"]],
        }
        if "real_images" in part:
            out["real_images"] = part["real_images"]
            out["real_pixels_flagged"] = _r(part["real_pixels_flagged"]["mean"])
        return out

    return {
        "map_threshold": _r(report["map_threshold"]),
        "overall": brief(report["overall"]),
        "per_generator": {g: brief(p) for g, p in report["per_generator"].items()},
        "robustness": {
            k: {m: _r(v.get(m)) for m in ("pixel_auc", "f1", "iou")}
            for k, v in report["robustness"].items()
        },
    }
