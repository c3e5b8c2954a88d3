"""``deepaudit detectors list|train|evaluate``: the models that score media."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from deepaudit.cli.console import JsonOpt, errors_to_exit, print_json, progress_bar, stderr, stdout

__all__ = ["app"]

app = typer.Typer(
    help="Detectors: list them, train one on a manifest, evaluate it.\n\n"
    "A detector scores each file with the probability that it is synthetic. Training uses "
    "the manifest's train split, calibrates the threshold on val and reports test metrics; "
    "the result is a folder (config.json + weights) that `deepaudit scan -d` and "
    "`deepaudit audit` take.",
    no_args_is_help=True,
)


def _parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``key=value`` pairs; values parsed as JSON when they can be (numbers, true, null)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not key=value")
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out


@app.command("list")
def detectors_list(as_json: JsonOpt = False) -> None:
    """Registered detectors and what each one is."""
    from deepaudit.detectors import detector_entry, list_detectors

    rows = []
    for name in list_detectors():
        e = detector_entry(name)
        rows.append({"name": name, "kind": e.kind, "description": e.description})
    if as_json:
        print_json(rows)
        return
    for r in rows:
        stdout().print(f"{r['name']:<15} {r['kind']:<6} {r['description']}", markup=False)


@app.command("train")
def detectors_train(
    data: Annotated[
        Path, typer.Option("--data", help="Manifest folder with real + synthetic.", exists=True)
    ],
    detector: Annotated[
        str, typer.Option("--detector", help="Registry name: see `deepaudit detectors list`.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Detector folder to write (resumes).")],
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Detector option key=value, e.g. --set model=resnet50 --set epochs=20."
        ),
    ] = None,
    input_size: Annotated[int, typer.Option(help="Crop side the detector sees.")] = 32,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    target_fpr: Annotated[
        float, typer.Option(help="Calibrate the threshold to this FPR on val.")
    ] = 0.05,
    register: Annotated[
        str | None, typer.Option(help="Register the detector in mlflow under this model name.")
    ] = None,
    track: Annotated[bool, typer.Option(help="Record the run in mlflow.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Train a detector on a manifest (train split; threshold calibrated on val; metrics on
    test) and save it as a folder (config.json + weights). Rerun to resume after a kill."""
    from deepaudit.detectors import create_detector
    from deepaudit.detectors.data import load_items
    from deepaudit.detectors.train import train_detector
    from deepaudit.tracking import Tracker

    opts = _parse_options(option)
    with errors_to_exit():
        items = load_items(data)
        if not {i.split for i in items} - {"train"}:
            stderr().print(
                "note: no val/test split in the manifest; run `deepaudit manifest split` "
                "for calibrated thresholds and test metrics",
                markup=False,
            )
        cfg = {"input_size": input_size, "device": device, **opts}
        det = create_detector(detector, **cfg)
        with progress_bar(f"training {detector}") as update:
            metrics = train_detector(
                det,
                items,
                out,
                target_fpr=target_fpr,
                tracker=Tracker() if track else None,
                register_as=register,
                progress=update,
            )
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun, rank 0 reports
    if as_json:
        print_json({"detector": str(out), "threshold": det.threshold, "metrics": metrics})
        return
    o = stdout()
    o.print(
        f"detector written to {out} (threshold {det.threshold:.4f} for FPR {target_fpr:g})",
        markup=False,
    )
    for split, m in metrics.items():
        if isinstance(m, dict):
            lo, hi = m["ci95"].get("auc", [None, None])
            o.print(
                f"  {split}: AUC {m['auc']} [{lo}, {hi}]  AP {m['ap']}  EER {m['eer']}  "
                f"acc {m['accuracy']}  TPR@5%FPR {m['tpr_at_fpr_5']}",
                markup=False,
            )


@app.command("evaluate")
def detectors_evaluate(
    detector: Annotated[
        Path, typer.Option("--detector", help="Trained detector folder.", exists=True)
    ],
    data: Annotated[Path, typer.Option("--data", help="Manifest folder.", exists=True)],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for metrics.json, predictions.jsonl, plots.")
    ],
    split: Annotated[
        str, typer.Option(help="Which split to score: test, val, train or all.")
    ] = "test",
    robustness: Annotated[
        bool, typer.Option(help="Robustness sweep (JPEG, resize, blur, noise).")
    ] = True,
    cross_generator: Annotated[
        bool, typer.Option(help="Also train one detector per generator and test on each.")
    ] = False,
    track: Annotated[bool, typer.Option(help="Record the evaluation in mlflow.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a detector: overall and per-generator metrics with 95% CIs, robustness,
    a format-shortcut check, predictions.jsonl (for the fairness audit) and plots."""
    from deepaudit.detectors import load_detector
    from deepaudit.detectors.data import load_items
    from deepaudit.detectors.evaluate import DEFAULT_ROBUSTNESS, evaluate_detector
    from deepaudit.tracking import Tracker

    with errors_to_exit():
        det = load_detector(detector)
        items = load_items(data, kinds=det.media_kinds)
        chosen = items if split == "all" else items.split(split)
        if not len(chosen):
            raise typer.BadParameter(f"no items in split {split!r} of {data}")
        with progress_bar("evaluating") as update:
            result = evaluate_detector(
                det,
                chosen,
                out,
                robustness=DEFAULT_ROBUSTNESS if robustness else (),
                tracker=Tracker() if track else None,
                progress=update,
            )
            if cross_generator:
                from deepaudit.detectors.evaluate import cross_generator as cross

                result["cross_generator"] = cross(det.name, dict(det.params()), items, out)
    if as_json:
        print_json(result)
        return
    o = stdout()
    ov = result["overall"]
    o.print(
        f"{len(chosen)} items: AUC {ov['auc']} AP {ov['ap']} EER {ov['eer']} "
        f"acc {ov['accuracy']} (threshold {result['threshold']:.4f})",
        markup=False,
    )
    for g, m in result["per_generator"].items():
        o.print(f"  {g}: AUC {m['auc']} TPR@5%FPR {m['tpr_at_fpr_5']}", markup=False)
    for p, m in result.get("robustness", {}).items():
        o.print(f"  {p}: AUC {m['auc']}", markup=False)
    fs = result.get("format_shortcut")
    if fs and fs["shortcut_suspected"]:
        o.print(
            f"  warning: AUC drops by {fs['auc_drop']:.3f} when every file is re-encoded "
            "as JPEG: the detector may be reading the file format",
            markup=False,
        )
    o.print(f"written: {out / 'metrics.json'}, {out / 'predictions.jsonl'}, plots", markup=False)
