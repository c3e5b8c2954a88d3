"""From evidence to a verdict: provenance, metadata, watermark and detector scores, ranked.

Evidence is ranked by strength: a trusted C2PA declaration > an untrusted declaration > AI
metadata > an invisible watermark > a detector score at its calibrated threshold. The
verdict follows the strongest evidence, and conflicts are reported, not resolved away: a
camera-capture claim with a detector score over threshold is exactly what an analyst must
see, so it becomes ``needs-review``.

Verdicts:

- ``synthetic``: a trusted manifest declares AI generation or AI editing;
- ``likely-synthetic``: an untrusted declaration, AI metadata, a watermark, or a detector
  over its threshold — and nothing stronger says otherwise;
- ``needs-review``: evidence disagrees (capture claim vs AI evidence), or a manifest is
  invalid or malformed (tampering or damage);
- ``likely-authentic``: a trusted capture claim and no detector over threshold;
- ``no-evidence``: nothing points either way (detectors under threshold are not proof);
- ``error``: the file could not be read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["VERDICTS", "Reason", "decide"]

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
    points_to: Literal["synthetic", "authentic", "tampered"]
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "points_to": self.points_to, "text": self.text}


def decide(
    provenance: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
    watermark: Mapping[str, Any] | None,
    scores: Mapping[str, Mapping[str, Any]],
) -> tuple[str, list[Reason]]:
    """``scores``: detector name → ``{"score": p, "threshold": t}``. Returns verdict, reasons."""
    reasons: list[Reason] = []
    prov = provenance or {}
    state = prov.get("state")
    decl = prov.get("ai_declaration", "none")
    if state in ("trusted", "untrusted") and decl != "none":
        src = "c2pa-trusted" if state == "trusted" else "c2pa-untrusted"
        signer = (prov.get("signer") or {}).get("common_name") or "unknown signer"
        trust = "trusted" if state == "trusted" else "untrusted, unverified"
        if decl in ("ai-generated", "ai-edited"):
            what = "AI-generated" if decl == "ai-generated" else "AI-edited/composite"
            reasons.append(
                Reason(src, "synthetic", f"C2PA manifest ({trust}, {signer}) declares {what}")
            )
        elif decl == "capture":
            reasons.append(
                Reason(
                    src, "authentic", f"C2PA manifest ({trust}, {signer}) declares camera capture"
                )
            )
    if state in ("invalid", "malformed"):
        codes = ", ".join(prov.get("codes") or []) or prov.get("reason", "")
        reasons.append(Reason("c2pa-invalid", "tampered", f"C2PA manifest {state}: {codes}"))
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
    flagged = []
    for name, s in scores.items():
        score, thr = s.get("score"), s.get("threshold", 0.5)
        if score is None:
            continue
        if score >= thr:
            flagged.append(name)
            reasons.append(
                Reason("detector", "synthetic", f"{name}: {score:.3f} ≥ threshold {thr:.3f}")
            )
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
