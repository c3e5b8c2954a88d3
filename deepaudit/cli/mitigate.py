"""``deepaudit audit mitigate``: fairness mitigation methods against the baseline, measured.

The CLI is where the layers meet: the audit layer runs the methods, and this module hands it
the detector factory and, for ``synthetic-rebalance``, a class-conditional generator.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from deepaudit.cli.console import JsonOpt, errors_to_exit, print_json, stderr, stdout
from deepaudit.errors import DeepauditError

__all__ = ["detector_factory", "face_synthesizer", "mitigate"]


def detector_factory(config: Path, *, device: str) -> Callable[[], Any]:
    """A fresh-detector factory from a JSON config: ``{"detector": "timm", "epochs": 8,
    "input_size": 32}``, or a trained detector's ``config.json`` (or its folder), whose
    detector and parameters are reused (not its weights)."""
    from deepaudit.detectors import create_detector

    path = config / "config.json" if config.is_dir() else config
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeepauditError(f"{path}: cannot read detector config: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise DeepauditError(f"{path}: detector config is not JSON ({exc.msg})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("detector"), str):
        raise DeepauditError(f'{path}: detector config needs "detector": a registry name')
    name = cfg["detector"]
    if "params" in cfg:
        params = dict(cfg["params"])
    else:
        params = {k: v for k, v in cfg.items() if k != "detector"}
    params.pop("device", None)

    def make() -> Any:
        try:
            return create_detector(name, device=device, **params)
        except (TypeError, ValueError) as exc:
            raise DeepauditError(f"{path}: {str(exc).splitlines()[0]}") from None

    make()  # fail now, not after the baseline has trained
    return make


def face_synthesizer(
    model: Path, attributes: Sequence[str], *, device: str, steps: int = 25, guidance: float = 2.0
) -> Callable[[Mapping[str, str], Sequence[int]], list[np.ndarray]]:
    """Faces of one group per call from a class-conditional pixel/latent diffusion model.
    The group's class is its values joined by ``|`` in ``attributes`` order (the faces
    benchmark's ``gender|race`` cells), or the one value for one attribute."""
    from deepaudit.generators import GenerationRequest, create_generator

    meta_path = model / "deepaudit.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise DeepauditError(f"{model}: not a deepaudit diffusion model folder") from None
    classes = list(meta.get("classes") or [])
    if not classes:
        raise DeepauditError(f"{model}: the model is unconditional; rebalancing needs classes")
    family = meta.get("family", "pixel")
    gen = create_generator(
        f"{family}-ddim", model=model, steps=steps, guidance=guidance, device=device
    )

    def synthesize(group: Mapping[str, str], seeds: Sequence[int]) -> list[np.ndarray]:
        label = "|".join(str(group[a]) for a in attributes)
        if label not in classes:
            raise DeepauditError(
                f"{model}: no class {label!r} for group {dict(group)}; classes: "
                f"{', '.join(classes)}"
            )
        reqs = [GenerationRequest(seed=int(s), class_label=label) for s in seeds]
        return [item.pixels for item in gen.generate(reqs)]

    return synthesize


def mitigate(
    data: Annotated[
        Path,
        typer.Option(
            "--data", help="Manifest folder with splits, labels and attributes.", exists=True
        ),
    ],
    detector_config: Annotated[
        Path,
        typer.Option(
            "--detector-config",
            help='JSON {"detector": "timm", "epochs": 8, ...}, or a detector folder or its '
            "config.json (settings reused, weights not).",
            exists=True,
        ),
    ],
    attributes: Annotated[str, typer.Option(help="Comma-separated attributes, e.g. gender,race.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for everything (resumes).")],
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            help="reweight, synthetic-rebalance, threshold or equal-fpr (repeatable or "
            "comma-separated; default: all four).",
        ),
    ] = None,
    generator: Annotated[
        Path | None,
        typer.Option(help="Class-conditional diffusion model folder (synthetic-rebalance)."),
    ] = None,
    per_group: Annotated[int, typer.Option(help="Synthetic faces added per worst group.")] = 50,
    worst: Annotated[int, typer.Option(help="How many worst groups get synthetic faces.")] = 3,
    target_fpr: Annotated[
        float, typer.Option(help="Each detector's threshold is calibrated to this FPR on val.")
    ] = 0.05,
    bootstrap: Annotated[int, typer.Option(help="Paired bootstrap resamples for the CIs.")] = 1000,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Train the baseline and one detector per method on the same train split, then compare
    them on the same test split: AUC, FPR, FNR, intersectional FPR gap, F_FPR, F_EO, F_OAE
    with paired-bootstrap 95% CIs. Writes mitigation.json, the fairness report with the
    table (fairness/report.html) and the baseline's model card with it."""
    from deepaudit.audit.fairness import Scored, fairness_audit
    from deepaudit.audit.mitigation import METHODS, mitigation_markdown, run_mitigation
    from deepaudit.audit.report import write_fairness_report
    from deepaudit.audit.transparency import write_model_card
    from deepaudit.detectors.data import load_items

    attrs = [a.strip() for a in attributes.split(",") if a.strip()]
    chosen = [m.strip() for v in (method or list(METHODS)) for m in v.split(",") if m.strip()]
    with errors_to_exit():
        make = detector_factory(detector_config, device=device)
        synth = None
        if "synthetic-rebalance" in chosen:
            if generator is None:
                raise DeepauditError(
                    "synthetic-rebalance needs --generator (a class-conditional model folder)"
                )
            synth = face_synthesizer(generator, attrs, device=device)
        items = load_items(data)
        result = run_mitigation(
            items,
            attrs,
            make,
            out,
            methods=chosen,
            synthesize=synth,
            per_group=per_group,
            worst=worst,
            target_fpr=target_fpr,
            bootstrap=bootstrap,
            progress=lambda msg: stderr().print(msg, markup=False),
        )
        scored = Scored(
            result.test.labels,
            result.baseline_scores,
            [dict(i.attributes) for i in result.test],
            [i.id for i in result.test],
        )
        report = fairness_audit(
            scored, attrs, threshold=result.baseline_threshold, bootstrap=bootstrap
        )
        paths = write_fairness_report(
            report, out / "fairness", data=scored, mitigation=result.table
        )
        card = write_model_card(
            result.detectors["baseline"], fairness_json=paths["json"], tracker=None
        )
    js = result.table.to_json()
    if as_json:
        print_json(js)
        return
    o = stdout()
    for line in mitigation_markdown(js):
        o.print(line, markup=False)
    o.print(
        f"written: {out / 'mitigation.json'}, {paths['html']}, {card['markdown']}", markup=False
    )
