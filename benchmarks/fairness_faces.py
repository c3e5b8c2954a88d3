"""Fairness of a detector on faces: real UTKFace crops vs faces generated per group.

``python -m benchmarks.fairness_faces [--quick] [--faces ../shared/data/faces_dev]``
``[--generator-minutes M] [--per-cell N] [--methods reweight,threshold,...] [--folds K]``

Uses the development faces in ``../shared/data/faces_dev`` (500 crops, 50 per gender × race
cell; not shipped, not used by tests). Steps: the faces become the real set (32×32 PNG);
a class-conditional pixel DDPM is trained on them with the gender × race cell as class, and
generates the same number of faces per cell; a timm detector is trained on the train split;
the fairness audit runs on the held-out split; then each mitigation method
(:mod:`deepaudit.audit.mitigation`) is trained and compared with that detector on the same
test split. Prints per-group FPR/FNR with 95% CIs, the gap metrics and the mitigation table
as JSON, and writes the HTML report (with the table) and the baseline's model card.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GENDER = {"0": "male", "1": "female"}
RACE = {"0": "white", "1": "black", "2": "asian", "3": "indian", "4": "other"}


def run(
    *,
    quick: bool = False,
    faces: Path | None = None,
    out: Path | None = None,
    device: str = "auto",
    generator_minutes: float | None = None,
    per_cell: int | None = None,
    methods: tuple[str, ...] = ("reweight", "synthetic-rebalance", "threshold", "equal-fpr"),
    bootstrap: int = 1000,
    folds: int = 1,
) -> dict:
    from PIL import Image

    from deepaudit.audit.fairness import fairness_audit, load_predictions
    from deepaudit.audit.mitigation import mitigation_markdown, run_mitigation
    from deepaudit.audit.report import write_fairness_report
    from deepaudit.audit.transparency import write_model_card
    from deepaudit.detectors import create_detector, load_detector
    from deepaudit.detectors.data import load_items
    from deepaudit.detectors.evaluate import evaluate_detector
    from deepaudit.generators import GenerationRequest, create_generator
    from deepaudit.generators.training import TrainConfig, TrainingImages, train_diffusion
    from deepaudit.manifest import ManifestItem, ManifestWriter, read_manifest
    from deepaudit.media import file_sha256, write_image

    faces = faces or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces_dev"
    if not (faces / "labels.csv").is_file():
        return {"skipped": f"{faces}: faces_dev not found (this benchmark needs ../shared)"}
    started = time.perf_counter()
    work = Path(out) if out else Path(tempfile.mkdtemp(prefix="faces-"))
    data = work / "data"
    rows = list(csv.DictReader((faces / "labels.csv").open()))
    images, labels, cells = [], [], []
    with ManifestWriter(data) as w:
        for r in rows:
            img = np.asarray(
                Image.open(faces / r["file"])
                .convert("RGB")
                .resize((32, 32), Image.Resampling.LANCZOS)
            )
            g, race = GENDER[r["gender"]], RACE[r["race"]]
            cell = f"{g}|{race}"
            images.append(img)
            cells.append(cell)
            p = write_image(data / "real" / (Path(r["file"]).stem + ".png"), img)
            if f"real/{Path(r['file']).stem}" not in w:  # a rerun resumes
                w.write(
                    ManifestItem(
                        id=f"real/{Path(r['file']).stem}",
                        path=p.relative_to(data).as_posix(),
                        sha256=file_sha256(p),
                        kind="image",
                        label="real",
                        source="utkface",
                        attributes={"gender": g, "race": race},
                    )
                )
    classes = sorted(set(cells))
    labels = [classes.index(c) for c in cells]
    tdata = TrainingImages(images, labels, classes, str(faces))
    steps = 300 if quick else 2500
    cfg = TrainConfig(
        family="pixel",
        channels=(32, 64, 64),
        steps=steps,
        batch_size=32,
        class_attribute="cell",
        name="faces-ddpm",
    )
    model = work / "faces-ddpm"
    if not (model / "deepaudit.json").is_file():
        # minutes: a cap for a busy machine (the steps stay the reproducible budget)
        train_diffusion(cfg, model, data=tdata, device=device, minutes=generator_minutes)
    t_train = time.perf_counter() - started
    gen = create_generator("pixel-ddim", model=model, steps=25, guidance=2.0, device=device)
    per_cell = per_cell or (20 if quick else 50)
    with ManifestWriter(data) as w:
        for k, cell in enumerate(classes):
            todo = [i for i in range(per_cell) if f"ddpm/{cell}/{i}" not in w]
            reqs = [GenerationRequest(seed=1000 * k + i, class_label=cell) for i in todo]
            for i, item in zip(todo, gen.generate(reqs), strict=True):
                g, race = cell.split("|")
                p = write_image(data / "synthetic" / f"{g}_{race}_{i:03d}.png", item.pixels)
                w.write(
                    ManifestItem(
                        id=f"ddpm/{cell}/{i}",
                        path=p.relative_to(data).as_posix(),
                        sha256=file_sha256(p),
                        kind="image",
                        label="synthetic",
                        source="faces-ddpm",
                        generator=item.info,
                        attributes={"gender": g, "race": race},
                    )
                )
    m = read_manifest(data)
    if any(i.split is None for i in m.items):
        m = m.with_splits(ratios=(0.6, 0.1, 0.3), overwrite=True)
        m.write()
    items = load_items(data)
    epochs = 3 if quick else 8

    def synthesize(group, seeds):
        label = f"{group['gender']}|{group['race']}"
        reqs = [GenerationRequest(seed=int(s), class_label=label) for s in seeds]
        return [item.pixels for item in gen.generate(reqs)]

    t_mit = time.perf_counter()
    runs = []
    for k, fold_items in enumerate(_folds(items, folds) if folds > 1 else [items]):
        runs.append(
            run_mitigation(
                fold_items,
                ["gender", "race"],
                lambda: create_detector("timm", epochs=epochs, device=device, input_size=32),
                work / "mitigation" / (f"fold{k}" if folds > 1 else ""),
                methods=methods,
                synthesize=synthesize,
                per_group=per_cell,
                worst=3,
                target_fpr=0.05,
                bootstrap=bootstrap if folds == 1 else 0,
            )
        )
    mit = runs[0]
    mit_table = mit.table if folds == 1 else _pooled(runs, bootstrap)
    t_mit = time.perf_counter() - t_mit
    det = load_detector(mit.detectors["baseline"], device=device)
    # as-is: both classes are 32² PNGs here (no format shortcut to remove), and the threshold
    # and the mitigation table are on as-is scores; re-encoding to JPEG would move the real
    # faces' scores away from the calibration the threshold was set on
    ev = evaluate_detector(det, mit.test, work / "eval", robustness=(), bootstrap=300, encode=None)
    scored = load_predictions(work / "eval" / "predictions.jsonl", data)
    # the threshold on the scores evaluate wrote (the calibrated one when calibrated)
    rep = fairness_audit(
        scored, ["gender", "race"], threshold=mit.baseline_threshold, min_n=15, bootstrap=1000
    )
    paths = write_fairness_report(rep, work / "fairness", data=scored, mitigation=mit_table)
    card = write_model_card(mit.detectors["baseline"], fairness_json=paths["json"])
    table = {
        key: [
            {
                "group": g.name,
                "n_real": g.n_real,
                "n_synthetic": g.n_synthetic,
                "fpr": g.metrics["fpr"],
                "fpr_ci95": g.ci95.get("fpr"),
                "fnr": g.metrics["fnr"],
                "fnr_ci95": g.ci95.get("fnr"),
                "auc": g.metrics["auc"],
            }
            for g in groups
        ]
        for key, groups in rep.groups.items()
        if key in ("gender", "race")
    }
    return {
        "work_dir": str(work),
        "quick": quick,
        "generator_steps": steps,
        # fewer when --generator-minutes stopped the training first
        "generator_steps_done": json.loads((model / "deepaudit.json").read_text()).get(
            "steps_done"
        ),
        "train_generator_s": round(t_train, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "mitigation_s": round(t_mit, 1),
        "per_cell": per_cell,
        "generator_minutes_cap": generator_minutes,
        "test_auc": ev["overall"]["auc"],
        "threshold": mit.baseline_threshold,
        "groups": table,
        "gaps": {
            k: {
                m: rep.gaps[k][m]
                for m in (
                    "fpr_max_minus_min",
                    "fnr_max_minus_min",
                    "fpr_gap",  # worst vs best group with its CI: includes 0 → may be noise
                    "fnr_gap",
                    "worst_group_auc",
                    "worst_group",
                    "F_FPR",
                    "F_DP",
                    "F_OAE",
                    "equalized_odds_difference",
                )
            }
            for k in rep.gaps
        },
        "warnings": rep.warnings,
        "folds": folds,
        "mitigation": mit_table.to_json(),
        "mitigation_table": mitigation_markdown(mit_table.to_json()),
        "report": str(paths["html"]),
        "model_card": str(card["markdown"]),
    }


def _folds(items, k: int):
    """``k`` cross-fitting splits: every item is in one fold's test split, so the table pools
    all faces (not 30%) and the gaps' intervals narrow. Folds are stratified by gender × race
    × label; of the rest, a quarter is validation (calibration, threshold fitting)."""
    import dataclasses

    from deepaudit.detectors.data import ItemSet

    rng = np.random.default_rng(0)
    strata: dict[tuple, list[int]] = {}
    for i, it in enumerate(items):
        key = (it.attributes.get("gender"), it.attributes.get("race"), it.label)
        strata.setdefault(key, []).append(i)
    position = {}
    for idx in strata.values():
        for j, i in enumerate(rng.permutation(idx)):
            position[int(i)] = j
    for fold in range(k):
        out = []
        for i, it in enumerate(items):
            j = position[i]
            split = "test" if j % k == fold else ("val" if (j // k) % 4 == 0 else "train")
            out.append(dataclasses.replace(it, split=split))
        yield ItemSet(out, items.root)


def _pooled(runs, bootstrap: int):
    """One table over every fold's test items (out-of-fold scores and decisions)."""
    from deepaudit.audit.mitigation import Outcome, mitigation_table

    y = np.concatenate([r.test.labels for r in runs])
    g = np.concatenate([r.groups for r in runs])
    pooled = []
    for j, first in enumerate(runs[0].outcomes):
        parts = [r.outcomes[j] for r in runs]
        pooled.append(
            Outcome(
                first.method,
                np.concatenate([o.scores for o in parts]),
                np.concatenate([o.decisions for o in parts]),
                first.uses_group_at_decision,
                (*first.notes, f"pooled over {len(runs)} cross-fitting folds (out-of-fold)"),
                {f"fold{k}": o.details for k, o in enumerate(parts)},
            )
        )
    return mitigation_table(y, g, pooled, attributes=["gender", "race"], bootstrap=bootstrap)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="300 generator steps, 20 faces per cell."
    )
    parser.add_argument("--faces", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="Keep the work here (resumes).")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--generator-minutes", type=float, default=None, help="Cap generator training time."
    )
    parser.add_argument("--per-cell", type=int, default=None, help="Synthetic faces per cell.")
    parser.add_argument(
        "--methods",
        default="reweight,synthetic-rebalance,threshold,equal-fpr",
        help="Comma-separated mitigation methods.",
    )
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument(
        "--folds", type=int, default=1, help="Cross-fitting folds for the mitigation table."
    )
    a = parser.parse_args(argv)
    json.dump(
        run(
            quick=a.quick,
            faces=a.faces,
            out=a.out,
            device=a.device,
            generator_minutes=a.generator_minutes,
            per_cell=a.per_cell,
            methods=tuple(m for m in a.methods.split(",") if m),
            bootstrap=a.bootstrap,
            folds=a.folds,
        ),
        sys.stdout,
        indent=2,
        default=str,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
