"""Transparency: model cards for detectors, dataset cards for generated sets, explanations.

- :func:`write_model_card`: ``MODEL_CARD.md`` + ``model_card.json`` next to a trained
  detector — intended use, out-of-scope uses, training data (from the detector's config),
  metrics with 95% intervals, per-generator and robustness results and per-group fairness
  when an evaluation / fairness folder is given, limitations. Logged to mlflow on request.
- :func:`write_dataset_card`: ``DATASET_CARD.md`` + ``dataset_card.json`` for a dataset
  folder (a datasheet: composition, generators, samplers, seeds, processing, provenance
  marks, intended use).
- :func:`explain`: why a detector scored an image — a Grad-CAM heatmap for the network
  detectors (timm, NPR), the log-spectrum and the detector's most weighted radial bands for
  the spectral detector; :func:`save_explanation` writes an overlay PNG.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.errors import DeepauditError

__all__ = ["Explanation", "explain", "save_explanation", "write_dataset_card", "write_model_card"]

INTENDED_USE = (
    "Flag images or videos that may be synthetic (diffusion-generated) for human review, and "
    "measure how detectors behave across generators, post-processing and groups of people."
)
OUT_OF_SCOPE = [
    "Sole evidence for decisions about a person (moderation, legal, employment) without review.",
    "Proof of authenticity: a score under the threshold is not evidence that media is real.",
    "Media unlike the training data (other generators, resolutions, heavy re-encoding) without "
    "re-evaluation: detectors of this kind generalise poorly across generators.",
]


def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _fmt(v: Any) -> str:
    from deepaudit.audit.report import fmt_value

    return fmt_value(v, ".3f")


def write_model_card(
    detector_dir: str | os.PathLike[str],
    *,
    evaluation_dir: str | os.PathLike[str] | None = None,
    fairness_json: str | os.PathLike[str] | None = None,
    tracker: Any = None,
) -> dict[str, Path]:
    """Write the model card of a trained detector folder (and log it to mlflow if asked)."""
    root = Path(detector_dir)
    cfg_path = root / "config.json"
    if not cfg_path.is_file():
        raise DeepauditError(f"{root}: not a detector folder (no config.json)")
    cfg = json.loads(cfg_path.read_text())
    training = cfg.get("training") or {}
    metrics = cfg.get("metrics") or {}
    evaluation = None
    if evaluation_dir is not None and (Path(evaluation_dir) / "metrics.json").is_file():
        evaluation = json.loads((Path(evaluation_dir) / "metrics.json").read_text())
    fairness = None
    if fairness_json is not None and Path(fairness_json).is_file():
        fairness = json.loads(Path(fairness_json).read_text())
    from deepaudit.detectors import load_detector

    identity = load_detector(root, device="cpu").identity()  # checks an import's weights hash
    cal = identity.get("calibration")
    if cfg.get("imported"):
        limitations = [
            f"Weights released by the authors of {identity.get('title') or cfg.get('detector')}, "
            f"trained on {identity.get('training_domain')}; scores on media unlike that "
            "domain (newer generators, other re-encoding) mean little until calibrated on "
            "your own labelled data.",
            f"Licence: {identity.get('licence')}."
            + (" The weights may not be used commercially." if identity["non_commercial"] else ""),
        ]
    else:
        limitations = [
            f"Trained on {(training.get('train') or {}).get('items', '?')} items from "
            f"{', '.join((training.get('train') or {}).get('sources', {}) or ['?'])}; performance "
            "on other generators is not guaranteed (see the cross-generator results).",
            f"Threshold {cfg.get('threshold'):.4f} was calibrated on "
            f"{training.get('threshold_from', '?')} data to a {training.get('target_fpr', '?')} "
            "false-positive rate; it drifts on other data.",
        ]
    limitations.extend(f"Import warning: {w}." for w in identity.get("warnings") or [])
    if cal:
        limitations.append(
            f"Scores are calibrated ({cal['method']}) on {cal['fitted_on'].get('data', '?')} "
            f"({cal['fitted_on'].get('items', '?')} items), threshold {cal['threshold']:.4f} for "
            f"FPR {cal['target_fpr']:g} there; remove calibration.json for the original scores."
        )
    if training.get("warning"):
        limitations.append(training["warning"])
    if evaluation:
        fs = evaluation.get("format_shortcut") or {}
        if fs.get("shortcut_suspected"):
            limitations.append(
                f"AUC drops by {fs['auc_drop']:.3f} when all files are re-encoded as JPEG: the "
                "detector may be relying on file format rather than content."
            )
        resize = (evaluation.get("shortcuts") or {}).get("resize_audit") or {}
        if resize.get("warning"):
            limitations.append(resize["warning"] + ".")
        weak = [
            k for k, v in (evaluation.get("robustness") or {}).items() if (v.get("auc") or 1) < 0.7
        ]
        if weak:
            limitations.append(f"AUC falls below 0.7 under: {', '.join(weak)}.")
    if fairness:
        for attr, gap in (fairness.get("gaps") or {}).items():
            d = gap.get("fpr_max_minus_min")
            if d is not None and d > 0.05:
                limitations.append(
                    f"False-positive rates differ by {d:.3f} across {attr} groups (worst-group "
                    f"AUC {_fmt(gap.get('worst_group_auc'))}): real media of some groups is "
                    "flagged more often."
                )
    card = {
        "model": {
            "name": root.name,
            "detector": cfg.get("detector"),
            "params": cfg.get("params"),
            "input_size": cfg.get("input_size"),
            "threshold": cfg.get("threshold"),
        },
        "identity": identity,
        "intended_use": INTENDED_USE,
        "out_of_scope": OUT_OF_SCOPE,
        "training_data": {k: training.get(k) for k in ("train", "val", "test")},
        "training": {
            k: training.get(k)
            for k in ("seconds", "target_fpr", "threshold_from", "skipped_broken")
        },
        "metrics": metrics,
        "evaluation": None
        if evaluation is None
        else {
            "overall": evaluation.get("overall"),
            "per_generator": {
                g: {"auc": m.get("auc"), "ci95_auc": m.get("ci95", {}).get("auc")}
                for g, m in (evaluation.get("per_generator") or {}).items()
            },
            "robustness": evaluation.get("robustness"),
            "format_shortcut": evaluation.get("format_shortcut"),
        },
        "fairness": None
        if fairness is None
        else {
            "gaps": fairness.get("gaps"),
            "warnings": fairness.get("warnings"),
            "mitigation": fairness.get("mitigation"),
        },
        "limitations": limitations,
    }
    md = [f"# Model card: {root.name}", "", f"`{cfg.get('detector')}` detector, deepaudit.", ""]
    md += ["## Intended use", "", INTENDED_USE, "", "## Out of scope", ""]
    md += [f"- {x}" for x in OUT_OF_SCOPE]
    md += [
        "",
        "## Model",
        "",
        f"- parameters: `{json.dumps(cfg.get('params'))}`",
        f"- input: {cfg.get('input_size')}² centre crop",
        f"- threshold: {cfg.get('threshold'):.4f}",
        "",
        "## Identity and licence",
        "",
        f"- licence: {identity['licence']}"
        + (" — **non-commercial**" if identity["non_commercial"] else ""),
        f"- source: {identity['source']}",
        *([f"- paper: {identity['paper']}"] if identity.get("paper") else []),
        f"- trained on: {identity['training_domain']}",
        *(
            f"- made from `{i['file']}` ({i['role']}), sha256 `{i['sha256']}`"
            for i in identity["inputs"]
        ),
        *(
            [f"- model.safetensors sha256 `{identity['weights_sha256']}` (checked at load)"]
            if identity.get("weights_sha256")
            else []
        ),
        "- calibration: "
        + (
            f"{cal['method']} on {cal['fitted_on'].get('data')}, ECE {cal['ece_before']} → "
            f"{cal['ece_after']}, threshold {cal['threshold']:.4f} at FPR {cal['target_fpr']:g}"
            if cal
            else "none"
        ),
        "",
    ]
    md += ["## Training data", ""]
    for split in ("train", "val", "test"):
        t = training.get(split)
        if t:
            md.append(
                f"- {split}: {t['items']} items ({t['real']} real, {t['synthetic']} synthetic); "
                f"sources: {', '.join(f'{k} {v}' for k, v in t['sources'].items())}"
            )
    md += [
        "",
        "## Metrics (95% bootstrap intervals)",
        "",
        "| split | AUC | AP | EER | accuracy | TPR@5%FPR |",
        "|---|---|---|---|---|---|",
    ]
    for split, m in metrics.items():
        if isinstance(m, dict) and "auc" in m:
            ci = m.get("ci95", {}).get("auc") or [None, None]
            auc_ci = f"{_fmt(m.get('auc'))} [{_fmt(ci[0])}, {_fmt(ci[1])}]"
            keys = ("ap", "eer", "accuracy", "tpr_at_fpr_5")
            md.append(_row(split, auc_ci, *(_fmt(m.get(k)) for k in keys)))
    if evaluation:
        md += ["", "## Per generator (test)", "", "| generator | AUC |", "|---|---|"]
        md += [
            f"| {g} | {_fmt(m.get('auc'))} |"
            for g, m in evaluation.get("per_generator", {}).items()
        ]
        md += ["", "## Robustness", "", "| perturbation | AUC |", "|---|---|"]
        md += [
            f"| {p} | {_fmt(m.get('auc'))} |" for p, m in evaluation.get("robustness", {}).items()
        ]
    if fairness:
        md += ["", "## Fairness", ""]
        for attr, gap in fairness.get("gaps", {}).items():
            md.append(
                f"- {attr}: FPR gap {_fmt(gap.get('fpr_max_minus_min'))}, FNR gap "
                f"{_fmt(gap.get('fnr_max_minus_min'))}, "
                f"worst-group AUC {_fmt(gap.get('worst_group_auc'))}, "
                f"F_FPR {_fmt(gap.get('F_FPR'))}, F_DP {_fmt(gap.get('F_DP'))}"
            )
        if fairness.get("mitigation"):
            from deepaudit.audit.mitigation import mitigation_markdown

            md += ["", "### Mitigation (same test split, 95% CIs)", ""]
            md += mitigation_markdown(fairness["mitigation"])
    md += ["", "## Limitations", ""] + [f"- {x}" for x in limitations] + [""]
    paths = {"markdown": root / "MODEL_CARD.md", "json": root / "model_card.json"}
    paths["markdown"].write_text("\n".join(md), encoding="utf-8")
    paths["json"].write_text(json.dumps(card, indent=2, default=str) + "\n", encoding="utf-8")
    if tracker is not None:
        with tracker.start_run(
            "model-cards", run_name=root.name, tags={"detector": cfg.get("detector")}
        ) as run:
            run.log_artifact(paths["markdown"])
            run.log_artifact(paths["json"])
    return paths


def write_dataset_card(dataset_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """A datasheet for a dataset folder written by the suite (or any manifest folder)."""
    from deepaudit.manifest import read_manifest

    root = Path(dataset_dir)
    m = read_manifest(root)
    summary = m.summary().to_json()
    gens: dict[str, dict[str, Any]] = {}
    for it in m.items:
        if it.generator is None:
            continue
        g = gens.setdefault(
            it.source,
            {
                "items": 0,
                "model": it.generator.model,
                "samplers": set(),
                "steps": set(),
                "seeds": [],
                "transforms": set(),
                "c2pa": 0,
                "watermark": 0,
                "prompts": set(),
            },
        )
        g["items"] += 1
        g["samplers"].add(it.generator.sampler)
        g["steps"].add(it.generator.steps)
        g["seeds"].append(it.generator.seed)
        g["transforms"].update(it.transforms)
        g["c2pa"] += bool(it.extra.get("c2pa"))
        g["watermark"] += bool(it.extra.get("watermark"))
        if it.generator.prompt:
            g["prompts"].add(it.generator.prompt)
    for g in gens.values():
        seeds = [s for s in g.pop("seeds") if s is not None]
        g["seed_range"] = [min(seeds), max(seeds)] if seeds else None
        g["prompts"] = sorted(g["prompts"])[:20]
        for k in ("samplers", "steps", "transforms"):
            g[k] = sorted(str(x) for x in g[k] if x is not None)
    attrs: dict[str, dict[str, int]] = {}
    for it in m.items:
        for k, v in it.attributes.items():
            attrs.setdefault(k, {})
            attrs[k][str(v)] = attrs[k].get(str(v), 0) + 1
    suite = None
    if (root / "suite.json").is_file():
        suite = json.loads((root / "suite.json").read_text())
    card = {
        "name": root.name,
        "composition": summary,
        "attributes": attrs,
        "generators": gens,
        "suite": suite,
        "intended_use": "Training and evaluating synthetic-media detectors; auditing generators.",
        "not_for": "Passing synthetic media off as real; any use that identifies real people.",
        "processing": "Outputs were generated, optionally watermarked, post-processed as "
        "listed per generator (transforms), encoded, and optionally C2PA-signed "
        "(trainedAlgorithmicMedia).",
    }
    md = [f"# Dataset card: {root.name}", "", "## Composition", ""]
    md += [
        f"- {summary['items']} items: "
        + ", ".join(f"{k} {v}" for k, v in summary["by_label"].items()),
        "- kinds: " + ", ".join(f"{k} {v}" for k, v in summary["by_kind"].items()),
        "- splits: " + ", ".join(f"{k} {v}" for k, v in summary["by_split"].items()),
        "",
    ]
    if attrs:
        md += (
            ["## Attributes", ""]
            + [f"- {k}: " + ", ".join(f"{a} {n}" for a, n in v.items()) for k, v in attrs.items()]
            + [""]
        )
    md += [
        "## Generators",
        "",
        "| source | items | model | samplers | steps | seeds | transforms | C2PA | watermark |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, g in gens.items():
        cells = (
            name,
            g["items"],
            g["model"],
            ", ".join(g["samplers"]),
            ", ".join(g["steps"]),
            g["seed_range"],
            ", ".join(g["transforms"]) or "-",
            g["c2pa"],
            g["watermark"],
        )
        md.append(_row(*cells))
    md += [
        "",
        "## Intended use",
        "",
        card["intended_use"],
        "",
        "## Not for",
        "",
        card["not_for"],
        "",
        "## Processing",
        "",
        card["processing"],
        "",
    ]
    paths = {"markdown": root / "DATASET_CARD.md", "json": root / "dataset_card.json"}
    paths["markdown"].write_text("\n".join(md), encoding="utf-8")
    paths["json"].write_text(json.dumps(card, indent=2, default=str) + "\n", encoding="utf-8")
    return paths


@dataclass
class Explanation:
    kind: str  # "grad-cam" | "spectrum"
    score: float
    heatmap: np.ndarray  # (H, W) in [0, 1], the crop's size
    crop: np.ndarray  # the (H, W, 3) crop the detector saw
    details: Mapping[str, Any]


def explain(detector: Any, image: np.ndarray) -> Explanation:
    """Explain one image's score: Grad-CAM (networks) or the spectrum (spectral)."""
    from deepaudit.detectors.data import crop

    c = crop(image, detector.input_size)
    name = getattr(detector, "name", "")
    if name in ("timm", "npr"):
        return _grad_cam(detector, c)
    if name == "spectral":
        return _spectrum(detector, c)
    raise DeepauditError(
        f"no explanation method for detector {name!r} (timm, npr, spectral have one)"
    )


def _grad_cam(det: Any, c: np.ndarray) -> Explanation:
    """Grad-CAM on the deepest convolution that still has a spatial map (≥ 4×4)."""
    import torch

    module = det.module.float().to("cpu").eval().to(memory_format=torch.contiguous_format)
    convs = [m for m in module.net.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise DeepauditError(f"{det.model}: no convolution to explain with Grad-CAM")
    acts: dict[int, torch.Tensor] = {}

    def hook(i):
        def f(_m, _inp, out):
            out.retain_grad()
            acts[i] = out

        return f

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(convs)]
    try:
        x = torch.from_numpy(c).permute(2, 0, 1)[None]
        with torch.enable_grad():
            logit = module(x).squeeze()
            logit.backward()
        spatial = [i for i in sorted(acts) if min(acts[i].shape[2:]) >= 4]
        layer = (
            spatial[-1] if spatial else max(acts, key=lambda i: acts[i].shape[2] * acts[i].shape[3])
        )
        a = acts[layer]
        weighted = (a.grad.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True).detach()
        evidence = "synthetic"
        cam = torch.relu(weighted)
        if float(cam.max()) <= 0:  # nothing pushes towards "synthetic": show what pushes away
            cam, evidence = torch.relu(-weighted), "real"
        cam = torch.nn.functional.interpolate(
            cam, size=c.shape[:2], mode="bilinear", align_corners=False
        )
        cam = cam[0, 0].detach().numpy()
    finally:
        for h in handles:
            h.remove()
        det._policy = None  # the inference path re-applies its device and memory format
    if cam.max() > 0:
        cam = cam / cam.max()
    # the score the detector reports (calibrated when it is), through its own reduce
    score = det.reduce(np.array([float(torch.sigmoid(logit.detach()))]), video=False).score
    details = {
        "layer": f"conv #{layer} of {len(convs)}",
        "map": list(acts[layer].shape[2:]),
        "evidence_for": evidence,
    }
    return Explanation("grad-cam", score, cam.astype(np.float32), c, details)


def _spectrum(det: Any, c: np.ndarray) -> Explanation:
    x = c.astype(np.float32).mean(axis=2) / 255.0
    spec = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(x - x.mean()))))
    heat = (spec - spec.min()) / (np.ptp(spec) + 1e-12)
    coef = det.head.coef_
    n_bins = c.shape[0] // 2
    per_band = np.abs(coef[: 3 * n_bins]).reshape(3, n_bins).sum(axis=0)
    top = [int(i) for i in np.argsort(-per_band)[:5]]
    score = float(det.predict_proba([c])[0])
    return Explanation(
        "spectrum",
        score,
        heat.astype(np.float32),
        c,
        {"most_weighted_radial_bands": top, "bands": n_bins},
    )


def save_explanation(e: Explanation, path: str | os.PathLike[str], *, title: str = "") -> Path:
    """The crop, the heatmap and their overlay side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    axes[0].imshow(e.crop)
    axes[0].set_title("input crop")
    axes[1].imshow(e.heatmap, cmap="inferno")
    axes[1].set_title("Grad-CAM" if e.kind == "grad-cam" else "log spectrum")
    axes[2].imshow(e.crop)
    if e.kind == "grad-cam":
        axes[2].imshow(e.heatmap, cmap="jet", alpha=0.45)
    axes[2].set_title(f"P(synthetic) = {e.score:.3f}")
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p
