"""Several detectors, one answer: fused calibrated log-odds read against an uncertain band."""

import math

import pytest

from deepaudit.audit.verdict import Fusion, decide, fuse


def _s(*ps, raw=False):
    return {
        f"d{i}": {"score": p, "threshold": 0.5, **({"raw": p} if raw else {})}
        for i, p in enumerate(ps)
    }


def test_mean_logit_and_max():
    assert fuse(_s(0.9, 0.5)) == pytest.approx(1 / (1 + math.exp(-math.log(9) / 2)))
    assert fuse(_s(0.9, 0.1)) == pytest.approx(0.5)
    assert fuse(_s(0.9, 0.1), "max") == 0.9
    assert fuse(_s(1.0, 1.0)) < 1.0  # clipped: finite log-odds
    assert fuse({}) is None and fuse({"d": {"score": None}}) is None


def test_band_turns_scores_into_verdicts_with_stated_reasons():
    f = Fusion(domains={"d0": "ProGAN (2019)", "d1": "SD 1.4"}, calibrated={"d0": True})
    verdict, reasons = decide(None, None, None, _s(0.95, 0.9), f)
    assert verdict == "likely-synthetic"
    assert "fused (mean log-odds of 2)" in reasons[0].text and "≥ 0.8" in reasons[0].text
    texts = [r.text for r in reasons[1:]]
    assert "d0: 0.950 calibrated, trained on ProGAN (2019)" in texts
    assert "d1: 0.900 uncalibrated, trained on SD 1.4" in texts

    verdict, reasons = decide(None, None, None, _s(0.95, 0.3), f)
    assert verdict == "no-evidence"
    assert (
        reasons[0].points_to == "neither" and "inside the uncertain band 0.2–0.8" in reasons[0].text
    )

    # the same scores over a narrower band, and with the max rule
    assert decide(None, None, None, _s(0.95, 0.3), Fusion(band=(0.4, 0.6)))[0] == "likely-synthetic"
    assert decide(None, None, None, _s(0.95, 0.3), Fusion(rule="max"))[0] == "likely-synthetic"


def test_a_trusted_capture_claim_against_a_fused_score_over_the_band_needs_review():
    prov = {"state": "trusted", "ai_declaration": "capture", "signer": {"common_name": "Cam"}}
    assert decide(prov, None, None, _s(0.9, 0.85))[0] == "needs-review"
    assert decide(prov, None, None, _s(0.9, 0.1))[0] == "likely-authentic"


def test_bad_fusion_settings_are_refused():
    with pytest.raises(ValueError, match="fusion rule"):
        Fusion(rule="vote")
    with pytest.raises(ValueError, match="band"):
        Fusion(band=(0.8, 0.2))


def test_a_detector_whose_score_is_no_probability_is_not_fused_until_calibrated():
    scores = _s(0.95, 0.49)  # d1: e.g. AEROBLADE's sigmoid(-distance), uncalibrated
    f = Fusion(excluded=frozenset({"d1"}))
    assert fuse(scores, excluded=f.excluded) == pytest.approx(0.95)
    verdict, reasons = decide(None, None, None, scores, f)
    assert verdict == "likely-synthetic"
    assert "of 2" not in reasons[0].text  # one detector fused
    assert any(r.text.startswith("d1: 0.490 not fused") for r in reasons)
    # the excluded one alone: nothing fused, its score still reported
    verdict, reasons = decide(None, None, None, {"d1": scores["d1"]}, f)
    assert verdict == "no-evidence" and reasons[0].points_to == "neither"
