"""``deepaudit scan``: the main job, a verdict with its reasons for every file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepaudit.cli.console import (
    EXIT_FINDINGS,
    AnchorsOpt,
    JsonOpt,
    LegacyAnchorsOpt,
    NoDefaultTrustOpt,
    PrecisionOpt,
    errors_to_exit,
    print_json,
    progress_bar,
    stderr,
    stdout,
)

__all__ = ["scan"]


def scan(
    paths: Annotated[list[str], typer.Argument(help="Files, folders (recursive) or globs.")],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder for results.jsonl, summary.json, report.html."),
    ] = Path("scan-output"),
    detector: Annotated[
        list[Path] | None,
        typer.Option("--detector", "-d", help="Trained detector folder (repeatable).", exists=True),
    ] = None,
    trust_anchors: AnchorsOpt = None,
    no_default_trust: NoDefaultTrustOpt = False,
    legacy_trust_anchors: LegacyAnchorsOpt = None,
    workers: Annotated[
        int | None, typer.Option(help="Decode/provenance worker processes (default: cores - 1).")
    ] = None,
    frames: Annotated[int, typer.Option(help="Frames sampled per video.")] = 8,
    csv: Annotated[bool, typer.Option("--csv", help="Also write results.csv.")] = False,
    device: Annotated[str, typer.Option(help="Detector device: auto, cpu, cuda.")] = "auto",
    batch_size: Annotated[
        int, typer.Option(help="Files per detector batch (and per flush without --ray).")
    ] = 32,
    precision: PrecisionOpt = "auto",
    restart: Annotated[
        bool, typer.Option("--restart", help="Forget earlier results in --out and scan everything.")
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            help="Network detectors' engine: auto (the faster exact one, timed once per "
            "detector), torch, or onnx (ONNX Runtime, CPU fp32; checked against torch)."
        ),
    ] = "auto",
    gpu_decode: Annotated[
        str,
        typer.Option(
            "--gpu-decode",
            help="Decode JPEGs in batches on the detectors' device (nvJPEG on CUDA) instead "
            "of in the workers: auto (on for a CUDA scan with --no-watermark), on, off.",
        ),
    ] = "auto",
    watermark: Annotated[
        bool,
        typer.Option(
            "--watermark/--no-watermark", help="Look for invisible watermarks (CPU, per image)."
        ),
    ] = True,
    fusion: Annotated[
        str,
        typer.Option(
            help="How several detectors' calibrated scores become one: mean-logit (the mean "
            "of their log-odds) or max."
        ),
    ] = "mean-logit",
    band: Annotated[
        str,
        typer.Option(
            help="Uncertain band LOW,HIGH of the fused score: over HIGH is evidence of "
            "synthesis, inside is reported as no-evidence."
        ),
    ] = "0.2,0.8",
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="auto|local|ADDRESS",
            help="Run on a Ray cluster (needs deepaudit[scale]): auto joins the one started "
            "with `ray start`, local starts a private one, or give the head's host:port. "
            "--workers is then the CPU tasks at a time.",
        ),
    ] = None,
    keep_actors: Annotated[
        float,
        typer.Option(
            "--keep-actors",
            metavar="MINUTES",
            help="With --ray: keep the detector actors loaded this many minutes after the "
            "scan, so the next scan with the same detectors on the cluster skips their start "
            "(4-8 s per job on CPU nodes); they hold their CPU or GPU meanwhile. 0: they end "
            "with the job.",
        ),
    ] = 0.0,
    as_json: JsonOpt = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Exit 1 if any file is synthetic, likely synthetic, needs review or unreadable.",
        ),
    ] = False,
) -> None:
    """Scan media for synthetic content: per file provenance (C2PA), AI metadata, invisible
    watermarks and detector scores, combined into a verdict with its reasons. Writes
    results.jsonl (one line per file, as it goes), summary.json and report.html. Rerun the
    same command to resume: unchanged files are skipped."""
    from deepaudit.audit.scan import run_scan

    try:
        lo, hi = (float(v) for v in band.split(","))
    except ValueError:
        raise typer.BadParameter(f"--band takes LOW,HIGH, e.g. 0.2,0.8 (got {band!r})") from None
    scan_fn = run_scan
    more: dict = {"gpu_decode": gpu_decode}
    if ray is not None:
        from deepaudit.audit.scan_ray import run_scan_ray as scan_fn

        if gpu_decode == "on":
            raise typer.BadParameter("--gpu-decode on is for the local scan, not --ray")
        if keep_actors < 0:
            raise typer.BadParameter(f"--keep-actors takes minutes >= 0 (got {keep_actors})")
        more = {"address": ray, "keep_actors": keep_actors}
    elif keep_actors:
        raise typer.BadParameter("--keep-actors is for --ray scans (their detector actors)")
    with errors_to_exit(), progress_bar("scanning") as update:
        summary = scan_fn(
            paths,
            out,
            **more,
            detectors=detector or [],
            trust_anchors=trust_anchors,
            default_trust=not no_default_trust,
            legacy_anchors=legacy_trust_anchors,
            workers=workers,
            frames=frames,
            csv=csv,
            device=device,
            batch_size=batch_size,
            restart=restart,
            precision=precision,
            fusion=fusion,
            band=(lo, hi),
            engine=engine,
            watermark=watermark,
            progress=lambda n, total: update(n, total or 0),
        )
    data = summary.to_json()
    if as_json:
        print_json(data)
    else:
        from rich.table import Table

        table = Table(
            title=f"{data['files']} files ({data['skipped_unchanged']} unchanged, "
            f"{data['scanned_now']} scanned at {data['files_per_s'] or '-'} files/s)"
        )
        table.add_column("verdict")
        table.add_column("files", justify="right")
        for v, n in data["by_verdict"].items():
            if n:
                table.add_row(v, str(n))
        o = stdout()
        o.print(table)
        o.print(
            "provenance: " + ", ".join(f"{k} {n}" for k, n in data["by_provenance_state"].items()),
            markup=False,
        )
        for name, d in data["detectors"].items():
            eng = d.get("engine") or {}
            ran = f"{eng['engine']} {eng['precision']} on {eng['device']}" if eng else "-"
            cal = "calibrated" if d.get("calibration") else "not calibrated"
            nc = ", NON-COMMERCIAL licence" if d.get("non_commercial") else ""
            o.print(f"detector {name}: {d.get('detector')}, {cal}, {ran}{nc}", markup=False)
        fusion = data.get("fusion")
        if fusion and len(data["detectors"]) > 1:
            lo, hi = fusion["band"]
            o.print(f"fused by {fusion['rule']}, uncertain band {lo:g}-{hi:g}", markup=False)
        for e in data["walk_errors"][:10]:
            stderr().print(f"warning: {e}", markup=False)
        o.print(f"results: {out / 'results.jsonl'}   report: {out / 'report.html'}", markup=False)
    if strict and summary.attention:
        raise typer.Exit(EXIT_FINDINGS)
