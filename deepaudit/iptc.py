"""The IPTC digital source type vocabulary: one list for signing, metadata and provenance.

C2PA actions, XMP ``Iptc4xmpExt:DigitalSourceType`` and IPTC photo metadata all name how a
piece of media was made with a URI from IPTC's NewsCodes scheme
``http://cv.iptc.org/newscodes/digitalsourcetype/``. Every term of the scheme is here with
IPTC's label and the coarse claim deepaudit derives from it; retired terms stay readable
(old files carry them) and are marked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["IPTC_DST", "SOURCE_TYPES", "Claim", "SourceType", "claim_of", "short_name", "uri_of"]

IPTC_DST = "http://cv.iptc.org/newscodes/digitalsourcetype/"

Claim = Literal["ai-generated", "ai-edited", "capture", "other"]


@dataclass(frozen=True)
class SourceType:
    name: str
    label: str  # IPTC's own label
    claim: Claim
    retired: bool = False

    @property
    def uri(self) -> str:
        return IPTC_DST + self.name


_TERMS = (
    SourceType("digitalCapture", "Original digital capture sampled from real life", "capture"),
    SourceType("computationalCapture", "Computational capture", "capture"),
    SourceType("negativeFilm", "Digitised from a negative on film", "capture"),
    SourceType("positiveFilm", "Digitised from a positive on film", "capture"),
    SourceType("print", "Digitised from a print on non-transparent medium", "capture"),
    SourceType("minorHumanEdits", "Original media with minor human edits", "capture"),
    SourceType("humanEdits", "Human-edited media", "other"),
    SourceType("compositeCapture", "Composite of captured elements", "capture"),
    SourceType("algorithmicallyEnhanced", "Algorithmically-enhanced media", "ai-edited"),
    SourceType("dataDrivenMedia", "Data-driven media", "other"),
    SourceType("digitalArt", "Digital art", "other"),
    SourceType("virtualRecording", "Virtual recording", "other"),
    SourceType("compositeSynthetic", "Composite including synthetic elements", "ai-edited"),
    SourceType("trainedAlgorithmicMedia", "Trained algorithmic media", "ai-generated"),
    SourceType(
        "compositeWithTrainedAlgorithmicMedia",
        "Composite with trained algorithmic media",
        "ai-edited",
    ),
    # made by an algorithm without training data (fractals, procedural textures)
    SourceType("algorithmicMedia", "Pure algorithmic media", "other"),
    SourceType("screenCapture", "Screen capture", "other"),
    SourceType("composite", "Composite", "other"),
    # retired terms still found in files
    SourceType("digitalCreation", "Digital creation (retired; now digitalArt)", "other", True),
    SourceType(
        "trainedAlgorithmicData",
        "Trained algorithmic data (early C2PA spelling)",
        "ai-generated",
        True,
    ),
)

SOURCE_TYPES: dict[str, SourceType] = {t.name: t for t in _TERMS}


def short_name(value: object) -> str | None:
    """``trainedAlgorithmicMedia`` from a full IPTC URI (or any URI's last segment)."""
    if not isinstance(value, str) or not value:
        return None
    return value.removeprefix(IPTC_DST).rstrip("/").rsplit("/", 1)[-1]


def claim_of(value: object) -> Claim | None:
    """The claim a source type (short name or URI) makes; None when it is not IPTC's."""
    name = short_name(value)
    term = SOURCE_TYPES.get(name or "")
    return term.claim if term else None


def uri_of(value: str) -> str:
    """The IPTC URI for a short name (URIs pass through); ValueError names the valid ones."""
    if value.startswith(("http://", "https://")):
        return value
    if value in SOURCE_TYPES:
        return SOURCE_TYPES[value].uri
    valid = ", ".join(sorted(n for n, t in SOURCE_TYPES.items() if not t.retired))
    raise ValueError(f"unknown digital source type {value!r}; valid: {valid}")
