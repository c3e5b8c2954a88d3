"""``deepaudit detectors list|train|evaluate``: the models that score media."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from deepaudit.cli.console import (
    JsonOpt,
    PrecisionOpt,
    errors_to_exit,
    print_json,
    progress_bar,
    stderr,
    stdout,
)

__all__ = ["app"]

app = typer.Typer(
    help="Detectors: list them, import a published one, train one on a manifest, calibrate "
    "and evaluate it.\n\n"
    "A detector scores each file with the probability that it is synthetic. It is a folder "
    "(config.json + weights) that `deepaudit scan -d` and `deepaudit audit` take: made by "
    "`import` from the weights a paper's authors released (see docs/zoo.md), or by `train` "
    "on a manifest. `calibrate` fits its scores and threshold to your own labelled data.",
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
    """Registered detectors: what each is, its licence and paper (imported-* are the
    published detectors `detectors import` makes; non-commercial licences are flagged)."""
    from deepaudit.detectors import detector_entry, list_detectors

    rows = []
    for name in list_detectors():
        e = detector_entry(name)
        meta = dict(e.metadata or {})
        rows.append(
            {
                "name": name,
                "kind": e.kind,
                "description": e.description,
                "licence": meta.get("licence", "Apache-2.0 (deepaudit; you train the weights)"),
                "non_commercial": bool(meta.get("non_commercial", False)),
                "paper": meta.get("paper"),
                "source": meta.get("source"),
            }
        )
    if as_json:
        print_json(rows)
        return
    o = stdout()
    for r in rows:
        nc = "  [NON-COMMERCIAL]" if r["non_commercial"] else ""
        o.print(f"{r['name']:<22} {r['kind']:<6} {r['description']}", markup=False)
        o.print(f"{'':<29} licence: {r['licence']}{nc}", markup=False)
        if r["paper"]:
            o.print(f"{'':<29} paper: {r['paper']}  ({r['source']})", markup=False)


@app.command("import")
def detectors_import(
    kind: Annotated[str, typer.Argument(help="Published detector: see `detectors kinds`.")],
    weights: Annotated[
        list[Path], typer.Argument(help="The files the authors release (checkpoint(s)).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Detector folder to write.")],
    name: Annotated[str | None, typer.Option(help="Name recorded in the folder.")] = None,
    backbone: Annotated[
        list[Path] | None,
        typer.Option(
            "--backbone",
            help="A local backbone file the kind needs (e.g. CLIP, VGG-16, LPIPS); repeatable.",
        ),
    ] = None,
    sha256: Annotated[
        list[str] | None,
        typer.Option(
            "--sha256", help="Expected sha256 of the inputs (e.g. the authors'); repeatable."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing folder at --out.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Turn a paper's released checkpoint into a detector folder: its exact architecture and
    preprocessing, its licence, and the sha256 of every input. Checkpoints are read with
    torch.load(weights_only=True) only; nothing is downloaded; nothing is written on error."""
    from deepaudit.detectors import load_detector
    from deepaudit.detectors.zoo import import_detector

    with errors_to_exit():
        dest = import_detector(
            kind,
            weights,
            out,
            name=name,
            backbones=backbone or (),
            expect_sha256=sha256 or (),
            force=force,
        )
        ident = load_detector(dest, device="cpu").identity()
    if as_json:
        print_json({"detector": str(dest), **ident})
        return
    _print_identity(str(dest), ident)


@app.command("kinds")
def detectors_kinds(as_json: JsonOpt = False) -> None:
    """The published detectors `detectors import` knows: paper, licence, what to pass."""
    from deepaudit.detectors.zoo import KINDS

    rows = [k.describe() for k in KINDS.values()]
    if as_json:
        print_json(rows)
        return
    o = stdout()
    for r in rows:
        nc = "  [NON-COMMERCIAL]" if r["non_commercial"] else ""
        o.print(f"{r['kind']}: {r['paper']}", markup=False)
        o.print(f"  licence: {r['licence']}{nc}", markup=False)
        o.print(f"  files: {r['files']}", markup=False)
        o.print(f"  where the authors publish them: {r['weights_at']}", markup=False)
        o.print(f"  trained on: {r['training_domain']}", markup=False)


@app.command("info")
def detectors_info(
    detector: Annotated[Path, typer.Argument(help="Detector folder.", exists=True)],
    as_json: JsonOpt = False,
) -> None:
    """A detector folder's identity: licence, source, paper, training domain, the sha256 of
    the files it was made from, threshold and calibration. Loading checks the weights' hash."""
    from deepaudit.detectors import load_detector

    with errors_to_exit():
        ident = load_detector(detector, device="cpu").identity()
    if as_json:
        print_json({"detector": str(detector), **ident})
        return
    _print_identity(str(detector), ident)


def _print_identity(path: str, ident: dict[str, Any]) -> None:
    o = stdout()
    nc = (
        "  [NON-COMMERCIAL: weights may not be used commercially]"
        if ident["non_commercial"]
        else ""
    )
    o.print(f"{path}: {ident['detector']} ({ident['kind']})", markup=False)
    o.print(f"  licence: {ident['licence']}{nc}", markup=False)
    o.print(f"  source: {ident['source']}", markup=False)
    if ident.get("paper"):
        o.print(f"  paper: {ident['paper']}", markup=False)
    o.print(f"  trained on: {ident['training_domain']}", markup=False)
    for i in ident.get("inputs") or []:
        known = f" = {i['known_as']}" if i.get("known_as") else ""
        o.print(f"  made from: {i['file']} ({i['role']}) sha256 {i['sha256']}{known}", markup=False)
    for w in ident.get("warnings") or []:
        o.print(f"  warning: {w}", markup=False)
    if ident.get("weights_sha256"):
        o.print(f"  model.safetensors sha256 {ident['weights_sha256']} (verified)", markup=False)
    cal = ident.get("calibration")
    if cal:
        o.print(
            f"  calibrated ({cal['method']}) on {cal['fitted_on'].get('data', '?')}: "
            f"threshold {cal['threshold']:.4f} for FPR {cal['target_fpr']:g}; "
            f"ECE {cal['ece_before']} -> {cal['ece_after']}",
            markup=False,
        )
    else:
        o.print(f"  threshold {ident['threshold']:.4f} (not calibrated on your data)", markup=False)


@app.command("calibrate")
def detectors_calibrate(
    detector: Annotated[Path, typer.Argument(help="Detector folder.", exists=True)],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="Manifest folder of labelled media from your domain.", exists=True
        ),
    ] = None,
    method: Annotated[
        str, typer.Option(help="platt (logistic on the score's logit) or isotonic.")
    ] = "platt",
    target_fpr: Annotated[
        float, typer.Option(help="The threshold keeps this false-positive rate.")
    ] = 0.01,
    split: Annotated[
        str, typer.Option(help="Manifest split to fit on: all, train, val or test.")
    ] = "all",
    reset: Annotated[
        bool, typer.Option(help="Remove the calibration: back to the original scores.")
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: PrecisionOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Fit a calibration map and a threshold on your labelled data and store them in the
    folder (calibration.json; config.json and the weights are untouched, so --reset restores
    the original). Reports ECE and the threshold's FPR/TPR before and after, with 95% CIs
    (after: cross-fitted over 5 folds)."""
    from deepaudit.detectors import load_detector
    from deepaudit.detectors.calibration import (
        fit_calibration,
        remove_calibration,
        write_calibration,
    )
    from deepaudit.detectors.data import load_items
    from deepaudit.detectors.inference import score_items

    if reset:
        removed = remove_calibration(detector)
        if as_json:
            print_json({"detector": str(detector), "removed": removed})
        else:
            stdout().print(
                f"{detector}: " + ("calibration removed" if removed else "had no calibration"),
                markup=False,
            )
        return
    if data is None:
        raise typer.BadParameter("--data is required (or --reset)")
    from deepaudit.devices import resolve_precision

    with errors_to_exit():
        prec = resolve_precision(precision, device)
        det = load_detector(detector, device=device, precision=prec, calibrated=False)
        items = load_items(data, kinds=det.media_kinds)
        chosen = items if split == "all" else items.split(split)
        chosen.require_both_classes("calibration")
        with progress_bar(f"scoring {len(chosen)} items") as update:
            scores = score_items(det, chosen, progress=update)
        cal = fit_calibration(
            scores,
            chosen.labels,
            method=method,  # type: ignore[arg-type]
            target_fpr=target_fpr,
            threshold_before=det.threshold,
            fitted_on={
                "data": str(data),
                "split": split,
                "items": len(chosen),
                "precision": prec,
            },
        )
        path = write_calibration(detector, cal)
    if as_json:
        print_json({"detector": str(detector), "calibration": str(path), **cal.to_json()})
        return
    b, a = cal.report["before"], cal.report["after"]
    o = stdout()
    o.print(f"calibration written to {path} ({method}, {len(chosen)} items)", markup=False)
    o.print(
        f"  before: ECE {b['ece']:.4f} {b['ece_ci95']}  threshold {b['threshold']:.4f}: "
        f"FPR {b['fpr']:.4f} {b['fpr_ci95']}  TPR {b['tpr']:.4f} {b['tpr_ci95']}",
        markup=False,
    )
    o.print(
        f"  after:  ECE {a['ece']:.4f} {a['ece_ci95']}  threshold {a['threshold']:.4f} "
        f"{a['threshold_ci95']} for FPR {target_fpr:g}: FPR {a['fpr']:.4f}  "
        f"TPR {a['tpr']:.4f} {a['tpr_ci95']}  (cross-fitted)",
        markup=False,
    )


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
        print_json(
            {
                "detector": str(out),
                "threshold": det.threshold,
                "operating_threshold": det.operating_threshold,
                "metrics": metrics,
            }
        )
        return
    o = stdout()
    # the metrics are on the raw scores at the raw threshold; a loaded folder's scores are
    # calibrated (calibration.json) and judged at the calibrated threshold: same decisions
    calibrated = (
        f"; {det.operating_threshold:.4f} on the calibrated scores"
        if det.calibration is not None
        else ""
    )
    o.print(
        f"detector written to {out} (threshold {det.threshold:.4f} for FPR {target_fpr:g}"
        f"{calibrated})",
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
    as_is: Annotated[
        bool,
        typer.Option(
            "--as-is",
            help="Score the files as they are (no identical re-encoding of both classes).",
        ),
    ] = False,
    encode: Annotated[
        str, typer.Option(help="How both classes are re-encoded: jpeg:Q, webp:Q or png.")
    ] = "jpeg:95",
    chroma: Annotated[
        str, typer.Option(help="JPEG chroma subsampling: 4:2:0, 4:2:2 or 4:4:4.")
    ] = "4:2:0",
    max_side: Annotated[
        int | None, typer.Option(help="Size policy: scale larger images to this longer side.")
    ] = None,
    resize_audit: Annotated[
        bool, typer.Option(help="Score at native size, centre crop, 256 and 512 too.")
    ] = True,
    protocol: Annotated[
        list[str] | None,
        typer.Option(
            help="Train one detector per fold and report the matrix: leave-one-out, or "
            "newer-than:DATE (repeat for several cut-offs)."
        ),
    ] = None,
    release_dates: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="JSON/CSV generator -> release date."),
    ] = None,
    track: Annotated[bool, typer.Option(help="Record the evaluation in mlflow.")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: PrecisionOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a detector: overall and per-generator metrics with 95% CIs, robustness,
    predictions.jsonl (for the fairness audit) and plots, under a protocol with no
    shortcuts: both classes re-encoded identically (--as-is opts out), a resize audit and
    a format-shortcut check; seen vs held-out generators when the detector's training
    generators are known; --protocol trains one detector per fold for the full matrix."""
    from deepaudit.detectors import load_detector
    from deepaudit.detectors.data import load_items
    from deepaudit.detectors.evaluate import DEFAULT_ROBUSTNESS, evaluate_detector
    from deepaudit.detectors.protocol import parse_encode
    from deepaudit.devices import resolve_precision
    from deepaudit.tracking import Tracker

    with errors_to_exit():
        policy = None if as_is else parse_encode(encode, subsampling=chroma, max_side=max_side)
        det = load_detector(detector, device=device, precision=resolve_precision(precision, device))
        items = load_items(data, kinds=det.media_kinds)
        chosen = items if split == "all" else items.split(split)
        if not len(chosen):
            raise typer.BadParameter(f"no items in split {split!r} of {data}")
        summary = det.training_summary if isinstance(det.training_summary, dict) else {}
        sources = (summary.get("train") or {}).get("sources") or {}
        with progress_bar("evaluating") as update:
            result = evaluate_detector(
                det,
                chosen,
                out,
                robustness=DEFAULT_ROBUSTNESS if robustness else (),
                encode=policy,
                resize_audit=resize_audit,
                trained_on=[g for g in sources if g != "real"] or None,
                tracker=Tracker() if track else None,
                progress=update,
            )
            if cross_generator:
                from deepaudit.detectors.evaluate import cross_generator as cross

                result["cross_generator"] = cross(det.name, dict(det.params()), items, out)
            if protocol:
                result["fold_matrix"] = _fold_matrix(
                    det, data, protocol, release_dates, policy, out, update
                )
    if as_json:
        print_json(result)
        return
    o = stdout()
    ov = result["overall"]
    o.print(
        f"{len(chosen)} items: AUC {ov['auc']} AP {ov['ap']} EER {ov['eer']} "
        f"acc {ov['accuracy']} FPR {ov['fpr']} FNR {ov['fnr']} "
        f"(threshold {result['threshold']:.4f})",
        markup=False,
    )
    if result.get("note"):
        o.print(f"  note: {result['note']}", markup=False)
    for g, m in result["per_generator"].items():
        o.print(f"  {g}: AUC {m['auc']} TPR@5%FPR {m['tpr_at_fpr_5']}", markup=False)
    for p, m in result.get("robustness", {}).items():
        o.print(f"  {p}: AUC {m['auc']}", markup=False)
    _print_shortcuts(result)
    o.print(f"written: {out / 'metrics.json'}, {out / 'predictions.jsonl'}, plots", markup=False)


def _fold_matrix(
    det: Any,
    data: Path,
    protocols: list[str],
    release_dates: Path | None,
    policy: Any,
    out: Path,
    update: Any,
) -> dict[str, Any]:
    """Folds from --protocol values, one detector trained per fold (same settings)."""
    from deepaudit import generator_folds as gf
    from deepaudit.detectors.generalisation import fold_matrix
    from deepaudit.manifest import read_manifest

    m = read_manifest(data)
    dates = gf.read_release_dates(release_dates) if release_dates else None
    folds = {}
    for spec in protocols:
        kind, _, value = spec.partition(":")
        if kind == "leave-one-out":
            folds.update({f"without {g}": f for g, f in gf.leave_one_out(m).items()})
        elif kind == "newer-than" and value:
            folds[f"before {value}"] = gf.newer_than(m, value, dates=dates)
        else:
            raise typer.BadParameter(
                f"--protocol takes leave-one-out or newer-than:DATE, got {spec!r}"
            )
    return fold_matrix(
        det.name,
        dict(det.params()),
        folds,
        out,
        encode=policy,
        kinds=det.media_kinds,
        progress=update,
    )


def _print_shortcuts(result: dict[str, Any]) -> None:
    o = stdout()
    sc = result.get("shortcuts") or {}
    enc = sc.get("reencoded")
    o.print(
        "  protocol: both classes re-encoded as " + enc["description"]
        if enc
        else "  protocol: files scored as they are (--as-is)",
        markup=False,
    )
    if sc.get("input"):
        o.print(f"  input: {sc['input']['note']}", markup=False)
    ra = sc.get("resize_audit")
    if ra:
        parts = ", ".join(f"{n} {v['auc']}" for n, v in ra["variants"].items())
        o.print(f"  resize audit: AUC {parts}; spread {ra['spread']}", markup=False)
    fs = sc.get("format_shortcut")
    if fs:
        o.print(
            f"  format shortcut: AUC as-is {fs['auc_original']}, re-encoded "
            f"{fs['auc_reencoded']} (drop {fs['auc_drop']})",
            markup=False,
        )
    for w in sc.get("warnings") or []:
        o.print(f"  warning: {w}", markup=False)
    gen = result.get("generalisation")
    if gen:
        o.print(
            f"  generalisation: mean AUC on generators seen in training {gen['mean_auc_seen']}, "
            f"held out {gen['mean_auc_held_out']}",
            markup=False,
        )
        for r in gen["generators"]:
            tag = "seen" if r["seen_in_training"] else "held out"
            date = f" ({r['release_date']})" if r["release_date"] else ""
            o.print(f"    {r['generator']}{date}: AUC {r['auc']} [{tag}]", markup=False)
    fm = result.get("fold_matrix")
    if fm:
        o.print(
            f"  fold matrix (AUC; rows: folds): mean held-out {fm['mean_auc_held_out']}, "
            f"mean seen {fm['mean_auc_seen']}",
            markup=False,
        )
        for fold, row in fm["matrix"].items():
            cells = ", ".join(
                f"{g} {v}{'*' if g in fm['held_out'][fold] else ''}" for g, v in row.items()
            )
            o.print(f"    {fold}: {cells}", markup=False)
        o.print("    (* held out of that fold's training)", markup=False)
