"""AI-generation signals in a file's metadata, outside C2PA.

What generator front-ends write into the files they save (AUTOMATIC1111 ``parameters``,
ComfyUI ``prompt``/``workflow``, InvokeAI, NovelAI, Fooocus), the IPTC digital source type
in XMP, and EXIF fields (Software, Make/Model, ImageDescription). Videos and audio carry the
same kinds of claims in their container tags (:mod:`deepaudit.container_tags`: MP4/MOV
``udta``/``meta`` keys and XMP, Matroska/WebM tags, WAV INFO/bext, MP3 ID3), read with the
same rules. Each signal says what it found and how much it is worth: a declared source type
or a full generation record is strong; a Software string anyone can type is weak.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from deepaudit.container_tags import TAGGED_FORMATS, ContainerTag, read_container_tags
from deepaudit.errors import MediaError
from deepaudit.iptc import IPTC_DST, SOURCE_TYPES, Claim, claim_of

if TYPE_CHECKING:
    from deepaudit.media import LoadedFile

__all__ = [
    "MetadataReport",
    "MetadataSignal",
    "container_signals",
    "metadata_format",
    "parse_a1111_parameters",
    "parse_comfyui_prompt",
    "read_ai_metadata",
]

logger = logging.getLogger(__name__)

Strength = Literal["strong", "moderate", "weak"]


# Names that appear in Software/Description fields of generated images.
_GENERATOR_NAMES = re.compile(
    r"stable[ -]?diffusion|sdxl|midjourney|dall[·\-\s]?e|firefly|novelai|comfyui|"
    r"automatic1111|invokeai|fooocus|imagen|\bflux\b|leonardo\.?ai|ideogram|runway|"
    r"\bsora\b|dreamstudio|nightcafe|craiyon|playground\s?ai|bing image creator|"
    r"\bveo\b|\bkling\b|pika\s?labs|\bpika\b|luma\s?(?:ai|dream machine)|hailuo|"
    r"\bsuno\b|\budio\b|elevenlabs|stable\s?(?:video|audio)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class MetadataSignal:
    """One finding: where it was (``field``), what it claims, how strong, and its details."""

    kind: str  # "a1111-parameters", "comfyui-prompt", "iptc-digital-source-type", ...
    claim: Claim
    strength: Strength
    field: str  # the chunk, XMP property or EXIF tag it came from
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "claim": self.claim,
            "strength": self.strength,
            "field": self.field,
            "summary": self.summary,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class MetadataReport:
    """Every signal found in one file."""

    path: str
    signals: tuple[MetadataSignal, ...]

    @property
    def declares_ai(self) -> bool:
        """A strong or moderate signal that the content was generated or edited by AI."""
        return any(
            s.claim in ("ai-generated", "ai-edited") and s.strength != "weak" for s in self.signals
        )

    @property
    def claims_capture(self) -> bool:
        return any(s.claim == "capture" for s in self.signals)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "declares_ai": self.declares_ai,
            "claims_capture": self.claims_capture,
            "signals": [s.to_json() for s in self.signals],
        }


# --------------------------------------------------------------------------- parsers


def _split_params(line: str) -> dict[str, str]:
    """``Steps: 20, Sampler: Euler a, Lora hashes: "a: 1, b: 2"`` → a dict (quotes kept whole)."""
    out: dict[str, str] = {}
    for match in re.finditer(r'\s*([\w \-/]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)', line):
        key, value = match.group(1).strip(), match.group(2).strip()
        if value.startswith('"') and value.endswith('"'):
            value = value[1:-1]
        out[key] = value
    return out


def parse_a1111_parameters(text: str) -> dict[str, Any] | None:
    """AUTOMATIC1111's ``parameters`` text: prompt, negative prompt, then ``Key: value, …``."""
    lines = text.strip().splitlines()
    if not lines:
        return None
    last = lines[-1]
    if "Steps:" not in last:
        return None
    params = _split_params(last)
    body = "\n".join(lines[:-1])
    prompt, _, negative = body.partition("Negative prompt:")
    out: dict[str, Any] = {
        "prompt": prompt.strip() or None,
        "negative_prompt": negative.strip() or None,
    }
    for key, name in (
        ("Steps", "steps"),
        ("Sampler", "sampler"),
        ("Schedule type", "scheduler"),
        ("CFG scale", "guidance"),
        ("Seed", "seed"),
        ("Size", "size"),
        ("Model", "model"),
        ("Model hash", "model_hash"),
        ("Denoising strength", "denoising_strength"),
        ("Version", "version"),
    ):
        if key in params:
            out[name] = _number(params[key])
    return out


def _number(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


_SAMPLER_NODES = {"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"}
_MODEL_KEYS = ("ckpt_name", "unet_name", "model_name", "lora_name", "vae_name", "clip_name")


def parse_comfyui_prompt(text: str) -> dict[str, Any] | None:
    """ComfyUI's ``prompt`` chunk (the API graph): models, samplers, seeds, prompt texts."""
    try:
        graph = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None
    if not isinstance(graph, dict):
        return None
    nodes = [n for n in graph.values() if isinstance(n, dict) and "class_type" in n]
    if not nodes:
        return None
    models: list[str] = []
    samplers: list[dict[str, Any]] = []
    prompts: list[str] = []
    for node in nodes:
        inputs = node.get("inputs") or {}
        if not isinstance(inputs, dict):
            continue
        for key in _MODEL_KEYS:
            if isinstance(inputs.get(key), str):
                models.append(inputs[key])
        cls = node.get("class_type")
        if cls in _SAMPLER_NODES or "sampler_name" in inputs:
            s = {
                k: inputs[k]
                for k in ("seed", "noise_seed", "steps", "cfg", "sampler_name", "scheduler")
                if k in inputs and not isinstance(inputs[k], list)
            }
            if s:
                samplers.append(s)
        if cls and "TextEncode" in cls:
            text_in = inputs.get("text") or inputs.get("text_g") or inputs.get("clip_l")
            if isinstance(text_in, str) and text_in.strip():
                prompts.append(text_in.strip())
    return {
        "nodes": len(nodes),
        "node_types": sorted({str(n["class_type"]) for n in nodes}),
        "models": sorted(set(models)),
        "samplers": samplers,
        "prompts": prompts,
    }


_XMP_DST = re.compile(
    r"DigitalSourceType(?:\s*=\s*[\"']([^\"']+)[\"']|[^>]*>\s*([^<\s]+)\s*<)", re.IGNORECASE
)


def _xmp_source_types(xmp: str) -> list[str]:
    found = []
    for match in _XMP_DST.finditer(xmp):
        value = (match.group(1) or match.group(2) or "").strip()
        if value:
            found.append(value.rstrip("/").rsplit("/", 1)[-1])
    return found


# --------------------------------------------------------------------------- reading


def read_ai_metadata(
    path: str | os.PathLike[str], *, source: LoadedFile | None = None
) -> MetadataReport:
    """All AI-generation and capture signals in an image's metadata, or in the tags of a
    video or audio container (audio is read although deepaudit decodes none).

    ``source``: the file already read by ``deepaudit.media.load_file`` (not read again).
    """
    from PIL import Image

    from deepaudit.media import image_exif

    p = Path(path)
    fmt, kind = metadata_format(p, source)
    if kind != "image":
        if fmt not in TAGGED_FORMATS:
            return MetadataReport(str(p), ())
        data = source.data if source is not None else None
        return MetadataReport(
            str(p), tuple(container_signals(read_container_tags(p, fmt, data=data)))
        )
    try:
        with Image.open(source.stream() if source is not None else p) as im:
            info = dict(im.info)
            exif = image_exif(im)
            exif_items = dict(exif.items()) if exif else {}
            if exif is not None:
                with contextlib.suppress(Exception):  # Exif IFD: UserComment lives here
                    exif_items.update(exif.get_ifd(0x8769))
    except Exception as exc:
        raise MediaError(p, f"cannot read metadata ({exc})") from exc
    signals: list[MetadataSignal] = []
    signals += _png_chunk_signals(info)
    signals += _xmp_signals(info.get("xmp"))
    signals += _exif_signals(exif_items)
    return MetadataReport(str(p), tuple(signals))


def metadata_format(
    path: str | os.PathLike[str], source: LoadedFile | None = None
) -> tuple[str, str]:
    """(format, kind) of a file by content, kind being image, video or audio: audio, which the
    media layer refuses to decode, has tags all the same. MediaError for anything else."""
    from deepaudit.media import sniff_format
    from deepaudit.media_formats import sniff_bytes

    p = Path(path)
    try:
        guess = source.guess if source is not None else sniff_format(p)
        return guess.format, guess.kind
    except MediaError as exc:
        try:
            head = source.head if source is not None else _head(p)
        except OSError:
            raise exc from None
        guess = sniff_bytes(head)
        if guess.format in TAGGED_FORMATS:
            return guess.format, "audio"
        raise


def _head(p: Path) -> bytes:
    with p.open("rb") as fh:
        return fh.read(4096)


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _png_chunk_signals(info: Mapping[str, Any]) -> list[MetadataSignal]:
    out: list[MetadataSignal] = []
    params = _text(info.get("parameters"))
    if params:
        if params.lstrip().startswith("{") and "fooocus" in params.lower():
            out.append(
                MetadataSignal(
                    "fooocus-parameters",
                    "ai-generated",
                    "strong",
                    "png:parameters",
                    "Fooocus generation parameters",
                    _json_or_text(params),
                )
            )
        else:
            parsed = parse_a1111_parameters(params)
            if parsed is not None:
                out.append(_a1111_signal(parsed, "png:parameters"))
    prompt = _text(info.get("prompt"))
    if prompt:
        parsed = parse_comfyui_prompt(prompt)
        if parsed is not None:
            models = ", ".join(parsed["models"]) or "?"
            out.append(
                MetadataSignal(
                    "comfyui-prompt",
                    "ai-generated",
                    "strong",
                    "png:prompt",
                    f"ComfyUI generation graph ({parsed['nodes']} nodes; models: {models})",
                    parsed,
                )
            )
    workflow = _text(info.get("workflow"))
    if workflow and '"nodes"' in workflow:
        out.append(
            MetadataSignal(
                "comfyui-workflow",
                "ai-generated",
                "strong",
                "png:workflow",
                "ComfyUI workflow embedded",
                {"bytes": len(workflow)},
            )
        )
    for key in ("invokeai_metadata", "invokeai_graph", "sd-metadata", "Dream"):
        value = _text(info.get(key))
        if value:
            out.append(
                MetadataSignal(
                    "invokeai-metadata",
                    "ai-generated",
                    "strong",
                    f"png:{key}",
                    "InvokeAI generation metadata",
                    _json_or_text(value),
                )
            )
            break
    software = _text(info.get("Software")) or ""
    comment = _text(info.get("Comment"))
    if "novelai" in software.lower() or (comment and '"n_samples"' in comment):
        out.append(
            MetadataSignal(
                "novelai-metadata",
                "ai-generated",
                "strong",
                "png:Comment",
                "NovelAI generation metadata",
                _json_or_text(comment or software),
            )
        )
    return out


def _a1111_signal(parsed: dict[str, Any], where: str) -> MetadataSignal:
    model = parsed.get("model") or parsed.get("model_hash") or "?"
    seed = parsed.get("seed", "?")
    return MetadataSignal(
        "a1111-parameters",
        "ai-generated",
        "strong",
        where,
        f"AUTOMATIC1111-style generation parameters (model {model}, seed {seed})",
        parsed,
    )


def _json_or_text(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
        return data if isinstance(data, dict) else {"value": data}
    except (json.JSONDecodeError, TypeError):
        return {"text": text[:2000]}


def _xmp_signals(xmp: Any, where: str = "xmp") -> list[MetadataSignal]:
    text = _text(xmp)
    if not text:
        return []
    return [
        _source_type_signal(v, f"{where}:Iptc4xmpExt:DigitalSourceType")
        for v in _xmp_source_types(text)
    ]


def _source_type_signal(value: str, where: str) -> MetadataSignal:
    claim = claim_of(value) or "other"
    return MetadataSignal(
        "iptc-digital-source-type",
        claim,
        "strong" if claim != "other" else "moderate",
        where,
        f"IPTC digital source type {value}",
        {"value": value},
    )


# container tag keys that name a camera (QuickTime mdta, iTunes-style atoms, Android)
_CAMERA_KEYS = {
    "com.apple.quicktime.make": "make",
    "com.apple.quicktime.model": "model",
    "com.android.manufacturer": "make",
    "com.android.model": "model",
    "\xa9mak": "make",
    "\xa9mod": "model",
    "make": "make",
    "model": "model",
}


def container_signals(tags: list[ContainerTag]) -> list[MetadataSignal]:
    """The signals in a video's or audio file's container tags, by the rules the image
    fields follow: an IPTC digital source type (in a tag or in XMP) and a generator's full
    parameter record are strong, a generator named in free text is weak, a camera make/model
    is weak evidence of capture."""
    out: list[MetadataSignal] = []
    camera: dict[str, str] = {}
    seen: set[str] = set()
    for tag in tags:
        value = tag.value.strip()
        if not value or value in seen:  # one text in two fields (©des and ©cmt) is one claim
            continue
        seen.add(value)
        if tag.key == "XMP":
            out += _xmp_signals(value, tag.field)
            continue
        if (dst := _tag_source_type(tag.key, value)) is not None:
            out.append(_source_type_signal(dst, tag.field))
            continue
        if (parsed := parse_a1111_parameters(value)) is not None:
            out.append(_a1111_signal(parsed, tag.field))
            continue
        if value.startswith("{") and (graph := parse_comfyui_prompt(value)) is not None:
            models = ", ".join(graph["models"]) or "?"
            summary = f"ComfyUI generation graph ({graph['nodes']} nodes; models: {models})"
            out.append(
                MetadataSignal(
                    "comfyui-prompt", "ai-generated", "strong", tag.field, summary, graph
                )
            )
            continue
        if (part := _CAMERA_KEYS.get(tag.key.lower())) is not None:
            camera.setdefault(part, value)
            continue
        if match := _GENERATOR_NAMES.search(value):
            out.append(
                MetadataSignal(
                    "container-generator-name",
                    "ai-generated",
                    "weak",
                    tag.field,
                    f"{tag.field} names a generator: {value[:80]!r}",
                    {"key": tag.key, "value": value[:500], "match": match.group(0)},
                )
            )
    if camera:
        make, model = camera.get("make"), camera.get("model")
        out.append(
            MetadataSignal(
                "container-camera",
                "capture",
                "weak",
                "container:make/model",
                f"container tags name a camera: {' '.join(x for x in (make, model) if x)}",
                {"make": make, "model": model},
            )
        )
    return out


def _tag_source_type(key: str, value: str) -> str | None:
    """The IPTC digital source type a tag declares: an IPTC URI anywhere in its value, or a
    term of the vocabulary under a key that says it is one."""
    if IPTC_DST in value or IPTC_DST.replace("http://", "https://") in value:
        tail = value.split("digitalsourcetype/", 1)[1]
        return re.split(r"[\s\"'<>,;]", tail, maxsplit=1)[0].rstrip("/") or None
    normalized = re.sub(r"[^a-z]", "", key.lower())
    if "digitalsourcetype" in normalized and value in SOURCE_TYPES:
        return value
    return None


_EXIF_TAGS = {
    0x0131: "Software",
    0x010E: "ImageDescription",
    0x013B: "Artist",
    0x9286: "UserComment",
}


def _exif_signals(exif: Mapping[int, Any]) -> list[MetadataSignal]:
    out: list[MetadataSignal] = []
    for tag, name in _EXIF_TAGS.items():
        value = exif.get(tag)
        text = _exif_text(value)
        if not text:
            continue
        if name == "UserComment":
            parsed = parse_a1111_parameters(text)
            if parsed is not None:
                out.append(_a1111_signal(parsed, "exif:UserComment"))
                continue
        match = _GENERATOR_NAMES.search(text)
        if match:
            out.append(
                MetadataSignal(
                    "exif-generator-name",
                    "ai-generated",
                    "weak",
                    f"exif:{name}",
                    f"EXIF {name} names a generator: {text[:80]!r}",
                    {"value": text[:500], "match": match.group(0)},
                )
            )
    make, model = _exif_text(exif.get(0x010F)), _exif_text(exif.get(0x0110))
    if make or model:
        out.append(
            MetadataSignal(
                "exif-camera",
                "capture",
                "weak",
                "exif:Make/Model",
                f"EXIF names a camera: {' '.join(x for x in (make, model) if x)}",
                {"make": make, "model": model},
            )
        )
    return out


def _exif_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        # UserComment starts with an 8-byte character-code prefix
        prefix, body = value[:8], value[8:]
        if prefix.startswith(b"UNICODE"):
            for enc in ("utf-16-be", "utf-16-le"):
                try:
                    return body.decode(enc).strip("\x00 ").strip() or None
                except UnicodeDecodeError:
                    continue
        if prefix.startswith((b"ASCII", b"\x00\x00\x00\x00")):
            value = body
        return value.decode("utf-8", "replace").strip("\x00 ").strip() or None
    text = str(value).strip("\x00 ").strip()
    return text or None
