"""Fairness mitigation: the table's metrics, each method's mechanics, and the CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepaudit.audit.fairness import gap_metrics
from deepaudit.audit.mitigation import (
    MitigationError,
    Outcome,
    equal_fpr_thresholds,
    fpr_gap_if_fair,
    mitigation_markdown,
    mitigation_table,
    outcome_metrics,
    rebalance_weights,
    threshold_optimizer,
    worst_groups,
)
from deepaudit.detectors.data import EpochSampler


def _biased(n=800, seed=0):
    """Scores where real items of group a|x score higher: a detector unfair to a|x."""
    rng = np.random.default_rng(seed)
    g = rng.choice(["a|x", "a|y", "b|x", "b|y"], n)
    y = rng.integers(0, 2, n)
    s = np.clip(0.3 + 0.45 * y + 0.25 * ((g == "a|x") & (y == 0)) + rng.normal(0, 0.1, n), 0, 1)
    return y, s, g


def test_outcome_metrics_agree_with_the_fairness_audit():
    y, s, g = _biased()
    ours = outcome_metrics(y, s, (s >= 0.5).astype(int), g)
    theirs = gap_metrics(y, s, list(g), 0.5)
    assert ours["fpr_gap"] == pytest.approx(theirs["fpr_max_minus_min"])
    for k in ("F_FPR", "F_EO", "F_OAE"):
        assert ours[k] == pytest.approx(theirs[k])
    assert ours["fpr_gap"] > 0.3  # the bias is visible


def test_threshold_optimizer_narrows_the_gap_and_says_it_needs_groups():
    from deepaudit.audit.mitigation import _threshold_outcome

    y, s, g = _biased()
    val = np.arange(y.size) < 400
    to = threshold_optimizer(y[val], s[val], g[val])
    test = ~val
    o = _threshold_outcome(to, s[test], g[test], g[val], seed=0)
    base = Outcome("baseline", s[test], (s[test] >= 0.5).astype(int))
    table = mitigation_table(y[test], g[test], [base, o], attributes=["k"], bootstrap=200)
    row = table.row("threshold")
    assert row["uses_group_at_decision"] is True
    assert any("group membership at decision time" in n for n in row["notes"])
    v = row["vs_baseline"]
    assert v["fpr_gap_ratio"] < 0.5 and v["fpr_gap_ratio_ci95"][1] < 1.0
    assert v["gap_reduction_shown"] and v["halves_fpr_gap"]
    lo, hi = row["ci95"]["fpr_gap"]
    assert lo <= row["fpr_gap"] <= hi
    text = "\n".join(mitigation_markdown(table.to_json()))
    assert "| threshold |" in text and "decision time" in text


def test_group_blind_control_threshold_maximises_balanced_accuracy():
    from deepaudit.audit.mitigation import balanced_accuracy_threshold

    y = np.array([0, 0, 0, 1, 1])
    assert balanced_accuracy_threshold(y, np.array([0.1, 0.2, 0.3, 0.7, 0.9])) == 0.5
    # overlapping classes: one real flagged (BA 5/6) beats one synthetic missed (BA 3/4)
    t = balanced_accuracy_threshold(y, np.array([0.1, 0.2, 0.8, 0.7, 0.9]))
    assert t == pytest.approx(0.45)
    pred = np.array([0.1, 0.2, 0.8, 0.7, 0.9]) >= t
    assert ((pred[y == 1].mean() + (~pred[y == 0]).mean()) / 2) == pytest.approx(5 / 6)


def test_threshold_refuses_a_test_group_it_never_saw():
    from deepaudit.audit.mitigation import _threshold_outcome

    y, s, g = _biased()
    keep = g != "b|y"
    to = threshold_optimizer(y[keep], s[keep], g[keep])
    with pytest.raises(MitigationError, match=r"b\|y .*not in the validation split"):
        _threshold_outcome(to, s, g, g[keep], seed=0)


def test_equal_fpr_gives_every_group_the_target_fpr_and_keeps_the_operating_point():
    from deepaudit.audit.mitigation import _equal_fpr_outcome
    from deepaudit.detectors.metrics import calibrate_threshold

    y, s, g = _biased(4000)
    val, test = np.arange(y.size) < 2000, np.arange(y.size) >= 2000
    blind = calibrate_threshold(y[val], s[val], target_fpr=0.05)  # the baseline's threshold
    fitted = equal_fpr_thresholds(y[val], s[val], g[val], target_fpr=0.05)
    assert fitted["thresholds"]["a|x"] > fitted["thresholds"]["b|y"]  # a|x's reals score high
    o = _equal_fpr_outcome(fitted, s[test], g[test], "val")
    base = Outcome("baseline", s[test], (s[test] >= blind).astype(int))
    table = mitigation_table(y[test], g[test], [base, o], attributes=["k"], bootstrap=200)
    row, b = table.row("equal-fpr"), table.row("baseline")
    assert b["fpr_gap"] > 0.15  # the blind threshold flags a|x's real items far more often
    assert row["fpr"] == pytest.approx(0.05, abs=0.02)  # the same operating point
    assert row["fpr_gap"] < 0.06 and row["vs_baseline"]["fpr_gap_ratio_ci95"][1] < 0.5
    assert row["uses_group_at_decision"] is True
    with pytest.raises(MitigationError, match=r"c\|z .*no real items in the validation"):
        _equal_fpr_outcome(fitted, s, np.where(g == "b|y", "c|z", g), "val")


def test_fpr_gap_if_fair_is_the_gap_sampling_alone_gives():
    y = np.zeros(500, int)
    g = np.repeat([f"g{i}" for i in range(10)], 50)
    chance = fpr_gap_if_fair(y, g, 0.05)
    # ten groups of 50 real items at FPR 5%: the max − min of ten Binomial(50, 0.05)/50
    assert chance["mean"] == pytest.approx(0.092, abs=0.01) and chance["p95"] >= 0.14
    assert fpr_gap_if_fair(y, g, 0.0)["p95"] == 0.0
    assert fpr_gap_if_fair(y, g, None) is None


def test_rebalance_weights_balance_cells_and_lean_to_errors():
    groups = np.array(["a"] * 30 + ["b"] * 10)
    labels = np.array([0, 1] * 20)
    w = rebalance_weights(groups, labels)
    for gg in ("a", "b"):
        for c in (0, 1):
            assert w[(groups == gg) & (labels == c)].sum() == pytest.approx(w.sum() / 4)
    # the baseline errs on real b: those items are drawn more often
    vg = np.array(["a", "a", "b", "b"])
    vy = np.array([0, 1, 0, 1])
    vs = np.array([0.1, 0.9, 0.8, 0.9])
    tilted = rebalance_weights(groups, labels, vg, vy, vs)
    real_b = (groups == "b") & (labels == 0)
    assert tilted[real_b].sum() > tilted[(groups == "a") & (labels == 0)].sum()
    assert worst_groups(vy, vs, vg, 0.5, 1)[0]["group"] == "b"


def test_weighted_sampler_follows_weights_and_is_seeded():
    w = np.array([1.0] * 50 + [3.0] * 50)
    s = EpochSampler(100, seed=1, weights=w)
    s.set_epoch(0)
    draws = [i % 100 for _ in range(40) for i in s]
    heavy = np.mean(np.asarray(draws) >= 50)
    assert 0.70 < heavy < 0.80  # 3:1 → 75%
    s.set_epoch(3)
    first = list(s)
    s.set_epoch(3, start=10)
    assert list(s) == first[10:]  # a resumed epoch continues the same draws
    with pytest.raises(Exception, match="non-negative"):
        EpochSampler(3, seed=0, weights=[1, -1, 1])


@pytest.fixture(scope="module")
def faces_like(tmp_path_factory):
    """A split manifest with gender × race attributes on real and synthetic items, and a
    tiny class-conditional pixel model whose classes are the cells."""
    import skimage.data

    from deepaudit.generators import GenerationRequest, create_generator
    from deepaudit.generators.training import TrainConfig, TrainingImages, train_diffusion
    from deepaudit.manifest import ManifestItem, ManifestWriter, read_manifest
    from deepaudit.media import file_sha256, write_image

    root = tmp_path_factory.mktemp("faces")
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
    cells = ["f|x", "f|y", "m|x", "m|y"]
    rng = np.random.default_rng(0)
    crops, labels = [], []
    for i in range(48):
        p = photos[i % 3]
        y0, x0 = rng.integers(0, p.shape[0] - 64), rng.integers(0, p.shape[1] - 64)
        crops.append(np.ascontiguousarray(p[y0 : y0 + 64 : 2, x0 : x0 + 64 : 2, :3]))
        labels.append(i % 4)
    model = train_diffusion(
        TrainConfig(
            family="pixel", channels=(16, 32), steps=4, batch_size=8, class_attribute="cell"
        ),
        root / "model",
        data=TrainingImages(crops, labels, cells, "test crops"),
        device="cpu",
    )
    gen = create_generator("pixel-ddim", model=model, steps=3, device="cpu")
    fakes = gen.generate([GenerationRequest(seed=i, class_label=cells[i % 4]) for i in range(48)])
    data = root / "data"
    with ManifestWriter(data) as w:
        for i, (img, k) in enumerate(zip(crops, labels, strict=True)):
            for label, px in (("real", img), ("synthetic", fakes[i].pixels)):
                p = write_image(data / label / f"{i:03d}.png", px)
                gender, race = cells[k].split("|")
                w.write(
                    ManifestItem(
                        id=f"{label}/{i}",
                        path=p.relative_to(data).as_posix(),
                        sha256=file_sha256(p),
                        kind="image",
                        label=label,
                        source="photos" if label == "real" else "tiny",
                        attributes={"gender": gender, "race": race},
                    )
                )
    m = read_manifest(data).with_splits(ratios=(0.5, 0.25, 0.25), overwrite=True)
    m.write()
    return {"data": data, "model": model}


@pytest.mark.slow
def test_mitigate_cli_writes_the_table_into_report_and_model_card(faces_like, tmp_path):
    from typer.testing import CliRunner

    from deepaudit.cli.app import app

    cfg = tmp_path / "det.json"
    cfg.write_text(json.dumps({"detector": "timm", "epochs": 1, "input_size": 32}))
    out = tmp_path / "mit"
    args = [
        "audit",
        "mitigate",
        "--data",
        str(faces_like["data"]),
        "--detector-config",
        str(cfg),
        "--attributes",
        "gender,race",
        "--generator",
        str(faces_like["model"]),
        "--per-group",
        "4",
        "--worst",
        "2",
        "--bootstrap",
        "50",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    table = json.loads((out / "mitigation.json").read_text())
    methods = [row["method"] for row in table["rows"]]
    assert methods == [
        "baseline",
        "reweight",
        "synthetic-rebalance",
        "threshold",
        "global-threshold (control)",
        "equal-fpr",
    ]
    for row in table["rows"]:
        for k in ("auc", "fpr", "fnr", "fpr_gap", "F_FPR", "F_EO", "F_OAE"):
            assert k in row and k in row["ci95"]
    # the rebalance added faces of the two worst validation groups, as files
    assert len(list((out / "synthetic-rebalance" / "faces").glob("*.png"))) == 8
    fair = json.loads((out / "fairness" / "fairness.json").read_text())
    assert fair["mitigation"]["rows"][0]["method"] == "baseline"
    page = (out / "fairness" / "report.html").read_text()
    assert "Mitigation: each method against the baseline" in page and "threshold" in page
    card = (out / "baseline" / "MODEL_CARD.md").read_text()
    assert "### Mitigation" in card and "| synthetic-rebalance |" in card
    # a rerun reuses every trained detector and generated face
    r2 = CliRunner().invoke(app, [*args[:-2], "--method", "reweight", "--out", str(out)])
    assert r2.exit_code == 0, r2.output
    assert "reweight: reusing" in r2.output


def test_mitigate_cli_refuses_rebalance_without_generator(tmp_path):
    from typer.testing import CliRunner

    from deepaudit.cli.app import app

    cfg = tmp_path / "det.json"
    cfg.write_text('{"detector": "timm", "epochs": 1}')
    r = CliRunner().invoke(
        app,
        [
            "audit",
            "mitigate",
            "--data",
            str(tmp_path),
            "--detector-config",
            str(cfg),
            "--attributes",
            "gender,race",
            "--method",
            "synthetic-rebalance",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert r.exit_code != 0 and "needs --generator" in r.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"detector": "nope"}')
    r = CliRunner().invoke(
        app,
        [
            "audit",
            "mitigate",
            "--data",
            str(tmp_path),
            "--detector-config",
            str(bad),
            "--attributes",
            "gender",
            "--method",
            "threshold",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert r.exit_code != 0 and "bad.json" in r.output
