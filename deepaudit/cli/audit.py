"""``deepaudit audit ...``: responsible-AI audits of detectors, generators and datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepaudit.cli.console import (
    AnchorsOpt,
    JsonOpt,
    errors_to_exit,
    print_json,
    progress_bar,
    stderr,
    stdout,
)
from deepaudit.cli.mitigate import mitigate

__all__ = ["app"]

app = typer.Typer(
    help="Responsible-AI audits: detector fairness, generative models, model/dataset cards, "
    "explanations.\n\n"
    "fairness reads the predictions.jsonl of `deepaudit detectors evaluate` (or a scan's "
    "results.jsonl) and reports metrics per group and intersection with their gaps; "
    "generator audits a generator through its outputs; model-card and dataset-card write "
    "the documentation; explain shows what a detector looked at.",
    no_args_is_help=True,
)
app.command("mitigate")(mitigate)


@app.command("fairness")
def audit_fairness(
    predictions: Annotated[
        Path,
        typer.Option(
            help="predictions.jsonl from `detectors evaluate`, or a scan's results.jsonl.",
            exists=True,
        ),
    ],
    attributes: Annotated[str, typer.Option(help="Comma-separated attributes, e.g. gender,race.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for fairness.json and report.html.")
    ],
    manifest: Annotated[
        Path | None,
        typer.Option(help="Manifest with labels and attributes (matched by id or path)."),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="Decision threshold (default: the detector's calibrated one, else 0.5)."),
    ] = None,
    detector: Annotated[
        str | None, typer.Option(help="Which detector's scores, when a scan has several.")
    ] = None,
    min_n: Annotated[int, typer.Option(help="Warn for groups smaller than this.")] = 30,
    as_json: JsonOpt = False,
) -> None:
    """Per-group and intersectional detector metrics (AUC, AP, EER, FPR, FNR, accuracy, with
    95% CIs) and gap metrics (equalized odds, demographic parity, F_FPR, F_EO, F_MEO, F_DP,
    F_OAE, worst-group AUC). Undefined metrics are shown as n/a with the reason."""
    from deepaudit.audit.fairness import calibrated_threshold, fairness_audit, load_predictions
    from deepaudit.audit.report import write_fairness_report

    with errors_to_exit():
        data = load_predictions(predictions, manifest, detector=detector)
        if threshold is None:
            threshold = calibrated_threshold(predictions, detector=detector)
        report = fairness_audit(
            data,
            [a.strip() for a in attributes.split(",") if a.strip()],
            threshold=threshold,
            min_n=min_n,
        )
        paths = write_fairness_report(report, out, data=data)
    if as_json:
        print_json(report.to_json())
        return
    o = stdout()
    for key, gap in report.gaps.items():
        o.print(
            f"{key}: FPR gap {gap['fpr_max_minus_min']}, FNR gap {gap['fnr_max_minus_min']}, "
            f"worst-group AUC {gap['worst_group_auc']} ({gap['worst_group']}), "
            f"F_FPR {gap['F_FPR']}, F_DP {gap['F_DP']}",
            markup=False,
        )
    for w in report.warnings[:10]:
        stderr().print(f"warning: {w}", markup=False)
    o.print(f"written: {paths['json']}, {paths['html']}", markup=False)


@app.command("generator")
def audit_generator_cmd(
    dataset: Annotated[
        Path, typer.Argument(help="Dataset folder (manifest) holding the outputs.", exists=True)
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for generator_audit.json.")],
    source: Annotated[
        str | None,
        typer.Option(help="Generator (manifest source) to audit; default all synthetic."),
    ] = None,
    real: Annotated[
        Path | None, typer.Option(help="Manifest with real images (default: the same one).")
    ] = None,
    detector: Annotated[
        list[Path] | None, typer.Option("--detector", "-d", help="Detector folder (repeatable).")
    ] = None,
    trust_anchors: AnchorsOpt = None,
    attribute: Annotated[
        str | None, typer.Option(help="Representation from this manifest attribute.")
    ] = None,
    clip: Annotated[
        Path | None, typer.Option(help="Local CLIP folder for a zero-shot attribute classifier.")
    ] = None,
    labels: Annotated[
        str | None, typer.Option(help="Comma-separated groups for --clip, e.g. 'man,woman'.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Audit a generator through its outputs: provenance coverage (C2PA, declarations,
    watermarks, metadata), detectability (AUC per detector), diversity, representation."""
    from deepaudit.audit.generative import (
        ManifestAttribute,
        ZeroShotCLIP,
        audit_generator,
        write_generator_audit,
    )

    with errors_to_exit():
        classifier = None
        if clip is not None:
            if not labels:
                raise typer.BadParameter("--clip needs --labels")
            classifier = ZeroShotCLIP(clip, [x.strip() for x in labels.split(",")])
        elif attribute:
            classifier = ManifestAttribute(attribute)
        with progress_bar("auditing generator") as update:
            result = audit_generator(
                dataset,
                source=source,
                real=real,
                detectors=detector or [],
                trust_anchors=trust_anchors,
                classifier=classifier,
                progress=update,
            )
    written = write_generator_audit(result, out)
    if as_json:
        print_json(result)
        return
    o = stdout()
    o.print(f"{result['source']}: {result['items']} items", markup=False)
    o.print(
        "provenance coverage: "
        + ", ".join(f"{k} {v:.0%}" for k, v in result["provenance_coverage"].items()),
        markup=False,
    )
    d = result["diversity"]
    o.print(
        f"diversity: mean pairwise distance {d['mean_pairwise_distance']}, "
        f"near-duplicates {d['near_duplicate_rate']}",
        markup=False,
    )
    for name, v in (result.get("detectability") or {}).items():
        o.print(f"detectability by {name}: AUC {v['auc']}", markup=False)
    if "representation" in result:
        r = result["representation"]["overall"]
        o.print(
            f"representation: {r['counts']} (MAD from uniform {r['mad_from_uniform']})",
            markup=False,
        )
    o.print(f"written: {written}", markup=False)


@app.command("model-card")
def audit_model_card(
    detector: Annotated[Path, typer.Argument(help="Trained detector folder.", exists=True)],
    evaluation: Annotated[
        Path | None, typer.Option(help="Folder written by `deepaudit detectors evaluate`.")
    ] = None,
    fairness: Annotated[
        Path | None, typer.Option(help="fairness.json from `audit fairness`.")
    ] = None,
    track: Annotated[bool, typer.Option(help="Log the card to mlflow.")] = True,
) -> None:
    """Write MODEL_CARD.md and model_card.json next to a detector."""
    from deepaudit.audit.transparency import write_model_card
    from deepaudit.tracking import Tracker

    with errors_to_exit():
        paths = write_model_card(
            detector,
            evaluation_dir=evaluation,
            fairness_json=fairness,
            tracker=Tracker() if track else None,
        )
    stdout().print(f"written: {paths['markdown']}, {paths['json']}", markup=False)


@app.command("dataset-card")
def audit_dataset_card(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (manifest).", exists=True)],
) -> None:
    """Write DATASET_CARD.md and dataset_card.json (a datasheet) into a dataset folder."""
    from deepaudit.audit.transparency import write_dataset_card

    with errors_to_exit():
        paths = write_dataset_card(dataset)
    stdout().print(f"written: {paths['markdown']}, {paths['json']}", markup=False)


@app.command("explain")
def audit_explain(
    detector: Annotated[
        Path, typer.Option("--detector", "-d", help="Detector folder.", exists=True)
    ],
    images: Annotated[list[Path], typer.Argument(help="Images to explain.", exists=True)],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the PNG explanations.")
    ] = Path("explanations"),
) -> None:
    """Why a detector scored images as it did: Grad-CAM heatmaps (timm, NPR) or the
    spectrum (spectral), saved as PNGs beside the crop the detector saw."""
    from deepaudit.audit.transparency import explain, save_explanation
    from deepaudit.detectors import load_detector
    from deepaudit.media import read_image

    with errors_to_exit():
        det = load_detector(detector)
        for img in images:
            e = explain(det, read_image(img))
            p = save_explanation(
                e, out / f"{img.stem}.explain.png", title=f"{img.name} · {det.name}"
            )
            stdout().print(f"{img}: P(synthetic) {e.score:.3f} -> {p}", markup=False)
