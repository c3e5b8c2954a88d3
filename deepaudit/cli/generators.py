"""``deepaudit generators list|train`` and ``deepaudit generate``: the synthetic class."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deepaudit.cli.console import (
    EXIT_FINDINGS,
    JsonOpt,
    errors_to_exit,
    print_json,
    progress_bar,
    stderr,
    stdout,
)

__all__ = ["app", "generate"]

app = typer.Typer(
    help="The generator suite: list the generators, train the diffusion models made here.\n\n"
    "Generators are the synthetic class detectors learn from: diffusion models trained here "
    "on real photos (pixel, latent and video families, one name per sampler) and pretrained "
    "diffusers pipelines loaded from local folders. `deepaudit generate` turns a suite spec "
    "into a dataset.",
    no_args_is_help=True,
)


@app.command("list")
def generators_list(
    pattern: Annotated[str, typer.Argument(help="Glob over names, e.g. 'pixel-*'.")] = "*",
    as_json: JsonOpt = False,
) -> None:
    """Registered generators: name, family, image or video, what it is."""
    from deepaudit.generators import generator_entry, list_generators

    rows = []
    for name in list_generators(pattern):
        e = generator_entry(name)
        rows.append(
            {"name": name, "family": e.family, "kind": e.kind, "description": e.description}
        )
    if as_json:
        print_json(rows)
        return
    out = stdout()
    for r in rows:
        out.print(f"{r['name']:<18} {r['kind']:<6} {r['description']}", markup=False)


@app.command("train")
def generators_train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write (resumes).")],
    family: Annotated[
        str, typer.Option(help="pixel (DDPM in pixel space), latent (autoencoder + UNet), video.")
    ] = "pixel",
    data: Annotated[
        Path | None,
        typer.Option(help="Real images: a manifest folder or a folder (default: built-in photos)."),
    ] = None,
    steps: Annotated[
        int, typer.Option(help="Optimisation steps (the reproducible budget).")
    ] = 1000,
    minutes: Annotated[
        float | None, typer.Option(help="Stop after this many minutes even if steps remain.")
    ] = None,
    size: Annotated[int, typer.Option(help="Image side in pixels (multiple of 8).")] = 32,
    channels: Annotated[
        str | None, typer.Option(help="UNet widths, e.g. 32,64,64 (default by family).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 32,
    class_attribute: Annotated[
        str | None, typer.Option(help="Train class-conditional on this manifest attribute.")
    ] = None,
    frames: Annotated[int, typer.Option(help="Video family: frames per clip.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed for weights and data order.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    track: Annotated[bool, typer.Option(help="Record the run in mlflow.")] = True,
) -> None:
    """Train a small diffusion model on real photos (nothing is downloaded). Interrupt it
    any time: rerunning the same command resumes from the last checkpoint."""
    from deepaudit.generators import train_generator
    from deepaudit.generators.training import META_NAME
    from deepaudit.tracking import Tracker

    widths = _parse_channels(channels)
    with errors_to_exit(), progress_bar(f"training {family} diffusion") as update:
        path = train_generator(
            family,  # type: ignore[arg-type]  # the library names the allowed ones
            out,
            data=data,
            steps=steps,
            size=size,
            channels=widths,
            batch_size=batch_size,
            seed=seed,
            class_attribute=class_attribute,
            frames=frames,
            device=device,
            minutes=minutes,
            tracker=Tracker() if track else None,
            progress=lambda step, total, loss: update(step, total),
        )
    meta = json.loads((path / META_NAME).read_text())
    stdout().print(
        f"model written to {path} ({meta['steps_done']} steps, {meta['seconds']} s on "
        f'{meta["device"]}); sample it with e.g. generator = "{family}-ddim", model = "{path}"',
        markup=False,
    )


@app.command("personalize")
def generators_personalize(
    base: Annotated[
        Path,
        typer.Option(
            help="Base model: a local diffusers text-to-image pipeline folder, or a pixel/"
            "latent model trained here."
        ),
    ],
    photos: Annotated[
        Path, typer.Option(help="The subject's photos: a folder (3-20 photos) or a manifest.")
    ],
    subject: Annotated[str, typer.Option(help="Subject id (the manifest attribute 'subject').")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Adapter folder to write (resumes).")],
    token: Annotated[str, typer.Option(help="Rare token that names the subject.")] = "sks",
    class_noun: Annotated[str, typer.Option(help="What the subject is (pipelines).")] = "person",
    subject_class: Annotated[
        str | None,
        typer.Option(help="Class-conditional model trained here: the class that becomes it."),
    ] = None,
    prior: Annotated[
        Path | None, typer.Option(help="Prior-preservation images of the plain class.")
    ] = None,
    prior_count: Annotated[
        int, typer.Option(help="Without --prior: draw this many from the base model.")
    ] = 0,
    rank: Annotated[int, typer.Option(help="LoRA rank.")] = 4,
    steps: Annotated[int, typer.Option(help="Training steps.")] = 200,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-4,
    seed: Annotated[int, typer.Option(help="Seed for noise and photo order.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[
        str,
        typer.Option(
            help="auto (CUDA: bf16/fp16 base under autocast; CPU: fp32), fp32, bf16, fp16; "
            "the adapter itself always trains in fp32."
        ),
    ] = "auto",
    track: Annotated[bool, typer.Option(help="Record the run in mlflow.")] = True,
) -> None:
    """Fine-tune a subject LoRA (DreamBooth recipe) on a few photos of one subject. Rerun
    the same command to resume; then generate with generator = "personalize", model = OUT."""
    from deepaudit.generators.lora import SubjectConfig, train_subject_lora
    from deepaudit.tracking import Tracker

    with errors_to_exit():
        config = SubjectConfig(
            subject=subject,
            token=token,
            class_noun=class_noun,
            subject_class=subject_class,
            rank=rank,
            steps=steps,
            lr=lr,
            prior_count=prior_count,
            seed=seed,
        )
        with progress_bar(f"training subject LoRA {subject!r}") as update:
            path = train_subject_lora(
                base,
                photos,
                out,
                config=config,
                prior_photos=prior,
                device=device,
                precision=precision,
                tracker=Tracker() if track else None,
                progress=lambda step, total, loss: update(step, total),
            )
    stdout().print(
        f'subject LoRA written to {path}; generate with generator = "personalize", '
        f'model = "{path}"',
        markup=False,
    )


def _parse_channels(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"channels must be integers like 32,64,64: {text}") from None


def generate(
    suite: Annotated[Path, typer.Option("--suite", help="Suite spec (TOML).", exists=True)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder (resumes).")],
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    track: Annotated[
        bool, typer.Option(help="Record training done for the suite (personalize) in mlflow.")
    ] = True,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="auto|local|ADDRESS",
            help="Generate the batches on a Ray cluster (needs deepaudit[scale]); the same "
            "files as a local run.",
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="With --ray: batches in flight (default: GPUs or CPUs).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate a synthetic dataset from a suite spec: media files + manifest.jsonl, each
    item with generator, sampler, seed, prompt and post-processing. Rerun to resume."""
    from deepaudit.generators.suite import load_suite, run_suite
    from deepaudit.tracking import Tracker

    with errors_to_exit():
        spec = load_suite(suite)
        with progress_bar("generating") as update:
            if ray is not None:
                from deepaudit.generators.suite_ray import run_suite_ray

                report = run_suite_ray(
                    spec, out, address=ray, device=device, workers=workers, progress=update
                )
            else:
                report = run_suite(
                    spec,
                    out,
                    device=device,
                    progress=update,
                    tracker=Tracker() if track else None,
                )
    data = report.to_json()
    if as_json:
        print_json(data)
    else:
        stdout().print(
            f"{data['generated']} generated, {data['skipped']} already there, "
            f"{len(data['failed'])} failed -> {out / 'manifest.jsonl'}",
            markup=False,
        )
        for f in data["failed"][:10]:
            stderr().print(f"failed: {f['id']}: {f['error']}", markup=False)
    if data["failed"]:
        raise typer.Exit(EXIT_FINDINGS)
