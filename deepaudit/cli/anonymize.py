"""``deepaudit anonymize``: replace faces with generated ones, and sign the edit with C2PA."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deepaudit.cli.console import EXIT_USAGE, JsonOpt, errors_to_exit, print_json, stderr, stdout

__all__ = ["anonymize"]


def anonymize(
    images: Annotated[list[Path], typer.Argument(help="Images to anonymise.", exists=True)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for <name>.anon.png files.")],
    cert: Annotated[
        Path, typer.Option("--cert", help="PEM certificate chain to sign the outputs with.")
    ],
    key: Annotated[Path, typer.Option("--key", help="PEM private key of that certificate.")],
    model: Annotated[
        Path | None,
        typer.Option(
            help="Face model folder trained by the suite (class-conditional or not).",
            exists=True,
        ),
    ] = None,
    inpaint: Annotated[
        Path | None,
        typer.Option(
            help="Local diffusers inpainting pipeline folder (instead of --model).", exists=True
        ),
    ] = None,
    face_class: Annotated[
        str | None,
        typer.Option(help="Class of a class-conditional --model (default: drawn per face)."),
    ] = None,
    yunet: Annotated[
        Path | None,
        typer.Option(help="Local YuNet .onnx face detector (default: OpenCV's Haar cascade)."),
    ] = None,
    min_face: Annotated[int, typer.Option(help="Smallest face side to replace, in pixels.")] = 24,
    feather: Annotated[
        float, typer.Option(help="Blended fraction of each face ellipse's radius (0-1].")
    ] = 0.25,
    steps: Annotated[int, typer.Option(help="Sampling steps of the face generator.")] = 25,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Detect faces (OpenCV), replace each by a generated face blended at its border, and
    sign the result with C2PA as an AI edit (c2pa.edited, compositeWithTrainedAlgorithmicMedia,
    the original as ingredient). Images without a detected face are reported, not written.
    Writes anonymize.jsonl in --out; exit code 1 when any file failed."""
    from deepaudit.c2pa_layer import load_signing_credentials
    from deepaudit.generators.anonymize import (
        FaceDetector,
        InpaintFaces,
        ModelFaces,
        anonymize_file,
    )

    if (model is None) == (inpaint is None):
        stderr().print("error: give one face generator: --model DIR or --inpaint DIR", markup=False)
        raise typer.Exit(EXIT_USAGE)
    results = []
    with errors_to_exit():
        creds = load_signing_credentials(cert, key)
        detector = FaceDetector(yunet=yunet, min_size=min_face)
        if model is not None:
            source = ModelFaces(model, face_class=face_class, steps=steps, device=device)
        else:
            source = InpaintFaces(inpaint, steps=steps, device=device)
        out.mkdir(parents=True, exist_ok=True)
        for p in images:
            r = anonymize_file(
                p,
                out,
                detector=detector,
                source=source,
                credentials=creds,
                source_name=source.name,
                feather=feather,
            )
            results.append(r)
    log = out / "anonymize.jsonl"
    with log.open("a", encoding="utf-8") as fh:
        for r in results:
            fh.write(json.dumps(r.to_json()) + "\n")
    if as_json:
        print_json({"files": [r.to_json() for r in results], "log": str(log)})
    else:
        o = stdout()
        for r in results:
            if r.status == "anonymized":
                o.print(
                    f"{r.source}: {len(r.faces)} face(s) replaced -> {r.output} "
                    "(signed: AI-edited)",
                    markup=False,
                )
            else:
                o.print(f"{r.source}: {r.status}: {r.reason}", markup=False)
    if any(r.status == "error" for r in results):
        raise typer.Exit(1)
