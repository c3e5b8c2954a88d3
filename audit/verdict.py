"""From evidence to a verdict: provenance, metadata, watermark and detector scores, ranked.

Evidence is ranked by strength: a trusted C2PA declaration > an untrusted declaration > AI
metadata > an invisible watermark > the detectors' fused score over its band. The
verdict follows the strongest evidence, and conflicts are reported, not resolved away: a
camera-capture claim with a detector score over threshold is exactly what an analyst must
see, so it becomes ``needs-review``.

Detectors are fused, not counted (:class:`Fusion`): each detector's calibrated P(synthetic)
(``deepaudit detectors calibrate``; a detector without a calibration gives its own score,
and the reasons say "uncalibrated") is turned into log-odds, and the fused P(synthetic) is
the sigmoid of their mean (``mean-logit``, the default: detectors that agree reinforce each
other, one confident detector is tempered by others that are not) or the largest score
(``max``: any one detector suffices; more false positives). The fused score is read against
an **uncertain band** (0.2–0.8 by default) instead of a single cut: over the band is
evidence of synthesis, inside it is ``no-evidence`` with the band stated in the reasons, and
under it says nothing either (a low score is not proof of authenticity).

Verdicts:

- ``synthetic``: a trusted manifest declares AI generation or AI editing;
- ``likely-synthetic``: an untrusted declaration, AI metadata, a watermark, or the fused
  detector score over the uncertain band — and nothing stronger says otherwise;
- ``needs-review``: evidence disagrees (capture claim vs AI evidence), or a manifest is
  invalid or malformed (tampering or damage) — the file's own or any ingredient's in its
  provenance tree;
- ``likely-authentic``: a trusted capture claim and no fused detector score over the band;
- ``no-evidence``: nothing points either way (detector scores under or inside the band are
  not proof);
- ``error``: the file could not be read, and nothing else says anything about it.

All verdict policy lives here: the ranking (:func:`decide`), the record-level rules
(:func:`verdict_for`), which verdicts need a person's attention and in which order, and the
words the reports use for each verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ATTENTION",
    "DEFAULT_BAND",
    "FUSION_RULES",
    "GLOSSARY",
    "REVIEW_PRIORITY",
    "VERDICTS",
    "Fusion",
    "Reason",
    "decide",
    "fuse",
    "verdict_for",
]

Verdict = Literal[
    "synthetic", "likely-synthetic", "needs-review", "likely-authentic", "no-evidence", "error"
]
VERDICTS: tuple[str, ...] = (
    "synthetic",
    "likely-synthetic",
    "needs-review",
    "likely-authentic",
    "no-evidence",
    "error",
)

# verdicts that a person should look at, and the order of the report's review queue
ATTENTION = frozenset({"synthetic", "likely-synthetic", "needs-review", "error"})
REVIEW_PRIORITY = {"needs-review": 4, "likely-synthetic": 3, "error": 2, "synthetic": 1}
GLOSSARY = {
    "synthetic": "a trusted C2PA manifest declares AI generation/editing",
    "likely-synthetic": "an untrusted declaration, AI metadata, a watermark, or the detectors' "
    "fused score over the uncertain band",
    "needs-review": "the evidence disagrees, or a manifest (the file's or an ingredient's) is "
    "invalid",
    "likely-authentic": "a trusted capture claim and no fused detector score over the band",
    "no-evidence": "nothing points either way (a detector score under or inside the uncertain "
    "band is not proof)",
    "error": "the file could not be read",
}

# strength order: higher first in the reasons list
_STRENGTH = {
    "c2pa-trusted": 5,
    "c2pa-untrusted": 4,
    "c2pa-invalid": 4,
    "metadata": 3,
    "watermark": 2,
    "detector": 1,
}


@dataclass(frozen=True)
class Reason:
    source: str  # c2pa-trusted | c2pa-untrusted | c2pa-invalid | metadata | watermark | detector
    points_to: Literal["synthetic", "authentic", "tampered", "neither"]
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "points_to": self.points_to, "text": self.text}


FUSION_RULES = ("mean-logit", "max")
DEFAULT_BAND = (0.2, 0.8)


@dataclass(frozen=True)
class Fusion:
    """How detector scores become one: the rule, the uncertain band, and what the reasons say
    of each detector (its training domain, whether its score is calibrated)."""

    rule: str = "mean-logit"
    band: tuple[float, float] = DEFAULT_BAND
    domains: Mapping[str, str] = field(default_factory=dict)  # detector key -> domain
    calibrated: Mapping[str, bool] = field(default_factory=dict)
    # detectors whose uncalibrated scores are no probabilities (e.g. AEROBLADE's distance):
    # reported, but left out of the fused score until they are calibrated
    excluded: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.rule not in FUSION_RULES:
            raise ValueError(f"fusion rule must be one of {FUSION_RULES}, got {self.rule!r}")
        lo, hi = self.band
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"the uncertain band must be 0 <= low <= high <= 1, got {lo}, {hi}")

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "band": list(self.band), "not_fused": sorted(self.excluded)}


def fuse(
    scores: Mapping[str, Mapping[str, Any]],
    rule: str = "mean-logit",
    excluded: frozenset[str] | set[str] = frozenset(),
) -> float | None:
    """One P(synthetic) from the detectors' scores (None when no detector scored the file);
    ``excluded`` detectors are left out."""
    ps = [
        float(s["score"])
        for k, s in scores.items()
        if s.get("score") is not None and k not in excluded
    ]
    ps = [p for p in ps if math.isfinite(p)]
    if not ps:
        return None
    if rule == "max":
        return max(ps)
    eps = 1e-6
    logits = [math.log(min(max(p, eps), 1 - eps) / (1 - min(max(p, eps), 1 - eps))) for p in ps]
    return 1.0 / (1.0 + math.exp(-sum(logits) / len(logits)))


def _detector_reasons(
    scores: Mapping[str, Mapping[str, Any]], fusion: Fusion
) -> tuple[list[Reason], bool]:
    """The detectors' reasons and whether their fused score is over the band."""
    fused = fuse(scores, fusion.rule, fusion.excluded)
    left_out = [
        Reason(
            "detector",
            "neither",
            f"{k}: {s['score']:.3f} not fused: its score is no probability until calibrated "
            "(deepaudit detectors calibrate)",
        )
        for k, s in scores.items()
        if k in fusion.excluded and s.get("score") is not None
    ]
    if fused is None:
        return left_out, False
    lo, hi = fusion.band
    n = sum(1 for k, s in scores.items() if s.get("score") is not None and k not in fusion.excluded)
    how = "mean log-odds" if fusion.rule == "mean-logit" else "max"
    what = f"detectors fused ({how} of {n})" if n > 1 else "detector score"

    def each(name: str, s: Mapping[str, Any]) -> str:
        cal = "calibrated" if fusion.calibrated.get(name, "raw" in s) else "uncalibrated"
        domain = fusion.domains.get(name)
        on = f", trained on {domain}" if domain else ""
        return f"{name}: {s['score']:.3f} {cal}{on}"

    scored = [
        (k, s) for k, s in scores.items() if s.get("score") is not None and k not in fusion.excluded
    ]
    if fused >= hi:
        out = [Reason("detector", "synthetic", f"{what} {fused:.3f} ≥ {hi:g}, over the band")]
        out += [Reason("detector", "synthetic", each(k, s)) for k, s in scored if s["score"] >= 0.5]
        return out + left_out, True
    detail = "; ".join(each(k, s) for k, s in scored)
    if fused > lo:
        text = f"{what} {fused:.3f} inside the uncertain band {lo:g}–{hi:g}: no evidence ({detail})"
    else:
        text = f"{what} {fused:.3f} ≤ {lo:g}: nothing seen, which is not proof ({detail})"
    return [Reason("detector", "neither", text), *left_out], False


def decide(
    provenance: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
    watermark: Mapping[str, Any] | None,
    scores: Mapping[str, Mapping[str, Any]],
    fusion: Fusion | None = None,
) -> tuple[str, list[Reason]]:
    """``scores``: detector name → ``{"score": p, "threshold": t}`` (calibrated scores carry
    ``raw``). Returns the verdict and its reasons, strongest first."""
    reasons: list[Reason] = []
    prov = provenance or {}
    state = prov.get("state")
    decl = prov.get("ai_declaration", "none")
    if state in ("trusted", "untrusted") and decl != "none":
        src = "c2pa-trusted" if state == "trusted" else "c2pa-untrusted"
        signer = (prov.get("signer") or {}).get("common_name") or "unknown signer"
        trust = "trusted" if state == "trusted" else "untrusted, unverified"
        by = prov.get("trusted_by") or {}
        if state == "trusted" and by.get("name"):
            issued = f" of {str(by['issued'])[:10]}" if by.get("issued") else ""
            legacy = " (legacy list)" if by.get("legacy") else ""
            trust = f"trusted{legacy} via {by['name']}{issued}"
        # the Asset Rubrics' report texts the declaration rests on, quoted
        basis = "; ".join(prov.get("ai_declaration_basis") or [])
        said = f": {basis}" if basis else ""
        head = f"C2PA manifest ({trust}, {signer})"
        if decl in ("ai-generated", "ai-edited"):
            what = "AI-generated" if decl == "ai-generated" else "AI-edited or containing AI"
            reasons.append(Reason(src, "synthetic", f"{head} declares {what}{said}"))
        elif decl == "may-contain-ai":
            reasons.append(Reason(src, "neither", f"{head}: the content may contain AI{said}"))
        elif decl == "capture":
            reasons.append(Reason(src, "authentic", f"{head} declares camera capture{said}"))
    if state in ("invalid", "malformed"):
        codes = ", ".join(prov.get("codes") or []) or prov.get("reason", "")
        reasons.append(Reason("c2pa-invalid", "tampered", f"C2PA manifest {state}: {codes}"))
    for chain, node in _broken_ingredients(prov.get("ingredients") or []):
        codes = ", ".join(node.get("codes") or []) or "no reason recorded"
        failed = [
            c.get("reportText") for c in node.get("integrity") or [] if c.get("value") is False
        ]
        rubric = f" (integrity rubric: {'; '.join(failed)})" if failed else ""
        reasons.append(
            Reason(
                "c2pa-invalid",
                "tampered",
                f"C2PA ingredient {chain} is {node.get('state')}: {codes}{rubric}",
            )
        )
    for sig in (metadata or {}).get("signals", []) or []:
        if sig.get("claim") == "ai-generated" or sig.get("claim") == "ai-edited":
            if sig.get("strength") in ("strong", "moderate"):
                reasons.append(Reason("metadata", "synthetic", f"metadata: {sig.get('summary')}"))
        elif sig.get("claim") == "capture" and sig.get("strength") == "strong":
            reasons.append(Reason("metadata", "authentic", f"metadata: {sig.get('summary')}"))
    if watermark and watermark.get("detected"):
        p = watermark.get("p_value")
        text = f"{watermark.get('scheme')} invisible watermark (p={p:.1e})"
        reasons.append(Reason("watermark", "synthetic", text))
    det_reasons, flagged = _detector_reasons(scores, fusion or Fusion())
    reasons.extend(det_reasons)
    reasons.sort(key=lambda r: -_STRENGTH[r.source])

    synth = [r for r in reasons if r.points_to == "synthetic"]
    auth = [r for r in reasons if r.points_to == "authentic"]
    tampered = [r for r in reasons if r.points_to == "tampered"]
    if synth and auth:
        return "needs-review", reasons
    if tampered:
        return "needs-review", reasons
    if synth:
        if synth[0].source == "c2pa-trusted":
            return "synthetic", reasons
        return "likely-synthetic", reasons
    if auth and auth[0].source == "c2pa-trusted" and not flagged:
        return "likely-authentic", reasons
    return "no-evidence", reasons


def _broken_ingredients(
    nodes: Any, chain: str = "", depth: int = 0
) -> list[tuple[str, Mapping[str, Any]]]:
    """Ingredients anywhere in the provenance tree whose manifest failed validation, each
    with its chain of titles (``edit.png > gen.png``)."""
    out: list[tuple[str, Mapping[str, Any]]] = []
    if depth > 32 or not isinstance(nodes, list):
        return out
    for node in nodes:
        if not isinstance(node, Mapping):
            continue
        name = f"{chain} > {node.get('title') or node.get('label') or '?'}".lstrip(" >")
        if node.get("state") in ("invalid", "malformed"):
            out.append((repr(name), node))
        out.extend(_broken_ingredients(node.get("ingredients"), name, depth + 1))
    return out


def verdict_for(
    record: Mapping[str, Any], fusion: Fusion | None = None
) -> tuple[str, list[Reason]]:
    """The verdict of one scan record: its evidence ranked by :func:`decide`, and ``error``
    when the file could not be read and nothing else says anything about it."""
    if "error" in record and not record.get("provenance"):
        return "error", []
    verdict, reasons = decide(
        record.get("provenance"),
        record.get("metadata"),
        record.get("watermark"),
        record.get("scores") or {},
        fusion,
    )
    if "error" in record and verdict in ("no-evidence", "likely-authentic"):
        return "error", reasons  # unreadable, and nothing else says anything
    return verdict, reasons
