"""Fairness metrics against hand-computed values and fairlearn; n/a handling; bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepaudit.audit.fairness import (
    FairnessError,
    Scored,
    calibrated_threshold,
    fairness_audit,
    gap_metrics,
    load_predictions,
)
from deepaudit.manifest import ManifestItem, ManifestWriter


def _scored(y, s, groups, attr="g"):
    return Scored(
        np.asarray(y),
        np.asarray(s, float),
        [{attr: g} for g in groups],
        [str(i) for i in range(len(y))],
    )


def test_hand_computed_gaps():
    # a: 2 real (1 flagged), 2 synthetic (2 caught); b: 2 real (0 flagged), 2 synthetic (1 caught)
    y = [0, 0, 1, 1, 0, 0, 1, 1]
    s = [0.9, 0.1, 0.8, 0.7, 0.2, 0.3, 0.9, 0.4]
    g = ["a"] * 4 + ["b"] * 4
    gaps = gap_metrics(np.array(y), np.array(s), g, 0.5)
    # FPR a=0.5, b=0 (overall 0.25); TPR a=1, b=0.5 (overall 0.75); FNR a=0, b=0.5
    assert gaps["fpr_max_minus_min"] == pytest.approx(0.5)
    assert gaps["fnr_max_minus_min"] == pytest.approx(0.5)
    assert gaps["F_FPR"] == pytest.approx(0.25 + 0.25)
    assert gaps["F_EO"] == pytest.approx(0.5 + 0.5)
    assert gaps["F_MEO"] == pytest.approx(0.5)
    # selection rate a=3/4, b=1/4; accuracy a=3/4, b=3/4
    assert gaps["F_DP"] == pytest.approx(0.5) and gaps["F_OAE"] == pytest.approx(0.0)
    assert gaps["equalized_odds_difference"] == pytest.approx(0.5)
    assert gaps["demographic_parity_difference"] == pytest.approx(0.5)
    assert gaps["fpr_max_over_min"] is None  # b has FPR 0: the ratio is undefined, not inf


def test_groups_match_fairlearn_and_intersections(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    gender = rng.choice(["f", "m"], n)
    race = rng.choice(["x", "y", "z"], n)
    y = rng.integers(0, 2, n)
    s = np.clip(rng.normal(0.3 + 0.4 * y + 0.1 * (gender == "m"), 0.2), 0, 1)
    data = Scored(
        y,
        s,
        [{"gender": a, "race": b} for a, b in zip(gender, race, strict=True)],
        [str(i) for i in range(n)],
    )
    rep = fairness_audit(data, ["gender", "race"], threshold=0.5, min_n=10, bootstrap=100)
    assert rep.fairlearn_check["agrees"]
    assert set(rep.groups) == {"gender", "race", "gender × race"}
    assert len(rep.groups["gender × race"]) == 6
    for r in rep.groups["gender"]:
        lo, hi = r.ci95["fpr"]
        assert lo <= r.metrics["fpr"] <= hi
    # the intersection gaps cover the group gaps
    assert rep.gaps["gender × race"]["F_FPR"] >= rep.gaps["gender"]["F_FPR"] - 1e-9
    js = rep.to_json()
    assert js["gaps"]["gender"]["worst_group_auc"] <= max(g["auc"] for g in js["groups"]["gender"])


def test_undefined_metrics_are_na_with_a_reason():
    y = [0, 0, 0, 1, 1, 0, 1]
    s = [0.2, 0.6, 0.1, 0.9, 0.8, 0.3, 0.4]
    g = ["only-real"] * 3 + ["mixed"] * 4
    rep = fairness_audit(_scored(y, s, g), ["g"], min_n=5, bootstrap=50)
    only = next(r for r in rep.groups["g"] if r.group == {"g": "only-real"})
    assert (
        only.metrics["auc"] is None and only.metrics["fnr"] is None and only.metrics["tpr"] is None
    )
    assert only.metrics["fpr"] == pytest.approx(1 / 3)
    assert any("only real items" in n for n in only.notes)
    assert any("only-real" in w and "< 5" in w for w in rep.warnings)
    json.dumps(rep.to_json())  # no NaN sneaks into the JSON
    assert "NaN" not in json.dumps(rep.to_json())


def test_bad_input():
    data = _scored([0, 1], [0.1, 0.9], ["a", "b"])
    with pytest.raises(FairnessError, match="threshold must be in"):
        fairness_audit(data, ["g"], threshold=1.5)
    with pytest.raises(FairnessError, match="not in the manifest; present: g"):
        fairness_audit(data, ["race"])


def test_predictions_matched_to_a_manifest(tmp_path, photo):
    from deepaudit.media import file_sha256, write_image

    root = tmp_path / "m"
    with ManifestWriter(root) as w:
        for i in range(4):
            p = write_image(root / f"{i}.png", photo)
            w.write(
                ManifestItem(
                    id=f"item{i}",
                    path=p.name,
                    sha256=file_sha256(p),
                    kind="image",
                    label="synthetic" if i % 2 else "real",
                    source="t",
                    attributes={"gender": "fm"[i % 2 == 0]},
                )
            )
    pred = tmp_path / "predictions.jsonl"
    lines = [{"id": f"item{i}", "score": 0.1 * i} for i in range(4)] + [
        {"id": "ghost", "score": 0.5}
    ]
    pred.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    data = load_predictions(pred, root)
    assert len(data.labels) == 4 and data.unmatched == ["ghost"]
    rep = fairness_audit(data, ["gender"], bootstrap=0, min_n=1)
    assert "1 predictions did not match" in rep.warnings[0]
    # scan results: matched by path, scores per detector
    scan = tmp_path / "results.jsonl"
    scan.write_text(
        "".join(
            json.dumps({"path": str(root / f"{i}.png"), "scores": {"d": {"score": 0.2 * i}}}) + "\n"
            for i in range(4)
        )
    )
    assert len(load_predictions(scan, root).labels) == 4
    pred.write_text(json.dumps({"id": "nope", "score": 0.1}) + "\n")
    with pytest.raises(FairnessError, match="none of 1 predictions matched"):
        load_predictions(pred, root)


def test_calibrated_threshold_read_beside_the_predictions(tmp_path):
    ev = tmp_path / "eval"
    ev.mkdir()
    (ev / "metrics.json").write_text(json.dumps({"detector": "timm", "threshold": 0.37}))
    assert calibrated_threshold(ev / "predictions.jsonl") == 0.37
    scan = tmp_path / "scan"
    scan.mkdir()
    dets = {"spectral": {"threshold": 0.2}, "timm": {"threshold": 0.8}}
    (scan / "summary.json").write_text(json.dumps({"files": 3, "detectors": dets}))
    assert calibrated_threshold(scan / "results.jsonl") == 0.2  # a scan's first detector
    assert calibrated_threshold(scan / "results.jsonl", detector="timm") == 0.8
    assert calibrated_threshold(tmp_path / "p.jsonl") == 0.5  # nothing recorded
    (ev / "metrics.json").write_text("{not json")
    with pytest.raises(FairnessError, match=r"metrics\.json: not JSON"):
        calibrated_threshold(ev / "predictions.jsonl")


def test_gap_interval_says_when_a_small_sample_gap_may_be_noise(tmp_path):
    from deepaudit.audit.report import write_fairness_report

    rng = np.random.default_rng(1)

    def real_only(n_per_group, fpr_a, fpr_b):
        # real items only: auditing false alarms; group a is flagged more often than b
        s = np.r_[rng.random(n_per_group) < fpr_a, rng.random(n_per_group) < fpr_b] * 0.8 + 0.1
        return _scored(np.zeros(2 * n_per_group, int), s, ["a"] * n_per_group + ["b"] * n_per_group)

    small = fairness_audit(real_only(12, 0.25, 0.08), ["g"], min_n=5, bootstrap=500)
    gap = small.gaps["g"]["fpr_gap"]
    assert gap["worst"] == "a" and gap["best"] == "b"
    assert gap["difference"] == pytest.approx(small.gaps["g"]["fpr_max_minus_min"])
    assert gap["ci95"][0] <= gap["difference"] <= gap["ci95"][1]
    assert gap["ci_includes_0"] and small.gaps["g"]["fnr_gap"] is None  # no synthetic items
    large = fairness_audit(real_only(1500, 0.25, 0.08), ["g"], min_n=5, bootstrap=500)
    assert not large.gaps["g"]["fpr_gap"]["ci_includes_0"]
    html = write_fairness_report(small, tmp_path / "small", data=real_only(12, 0.25, 0.08))
    page = html["html"].read_text()
    assert "FPR a vs b" in page and "includes 0, so this gap may be sampling noise" in page
    # real-only data: no (empty) ROC figure, and the page says why
    assert "ROC by g" not in page and "a ROC curve needs both" in page
    page = write_fairness_report(large, tmp_path / "large")["html"].read_text()
    assert "the interval excludes 0" in page and large.gaps["g"]["fpr_gap"]["beyond_chance"]
    assert "the gap is beyond chance" in page
    assert not small.gaps["g"]["fpr_gap"]["beyond_chance"]


def test_a_gap_picked_from_many_small_groups_is_measured_against_chance(tmp_path):
    """Ten groups of 17 real faces, flagged 0..6 times: the extremes' interval excludes 0,
    but equal rates give a gap this large often, and the report says so."""
    from deepaudit.audit.fairness import gap_if_equal
    from deepaudit.audit.report import write_fairness_report

    flagged = [0, 1, 2, 2, 3, 3, 3, 4, 5, 6]
    groups, s = [], []
    for i, k in enumerate(flagged):
        groups += [f"g{i}"] * 17
        s += [0.9] * k + [0.1] * (17 - k)
    rep = fairness_audit(_scored(np.zeros(len(s), int), s, groups), ["g"], min_n=5)
    gap = rep.gaps["g"]["fpr_gap"]
    assert (gap["worst"], gap["best"]) == ("g9", "g0")
    assert gap["difference"] == pytest.approx(6 / 17)
    assert not gap["ci_includes_0"]  # taken alone, the interval says "real"
    chance = gap_if_equal(np.full(10, 17), sum(flagged) / len(s))
    assert gap["chance"] == chance and chance["mean"] < gap["difference"] < chance["p95"]
    assert not gap["beyond_chance"]
    page = write_fairness_report(rep, tmp_path / "r")["html"].read_text()
    assert "picked as the extremes" in page and "within what chance gives" in page
