"""What a file's C2PA manifest says about its origin, and whether that claim holds.

:func:`inspect_provenance` reads a file through `deepaudit.c2pa_layer` (offline) and
returns a :class:`ProvenanceRecord`:

- ``state``: ``trusted`` (signature and hashes valid, signer chains to a configured trust
  anchor), ``untrusted`` (valid, but the signer is unknown — never present this as
  verified), ``invalid`` (hash, signature or claim failures; ``codes`` lists them),
  ``absent`` (no manifest, or a format C2PA cannot carry), ``remote`` (the file points to
  a manifest at a URL that was not fetched), ``malformed`` (a manifest store is there but
  cannot be parsed), or ``unreadable`` (the file itself could not be opened);
- who signed (certificate subject, issuer, validity), when, with what claim generator;
- the actions and their IPTC digital source types, the ingredient chain recursively (each
  ingredient with its own validation), and a plain ``conclusion``;
- ``signals``: the C2PA Asset Rubrics' inception and transformation traits of every manifest
  in the provenance graph, with the rubric's report text, and ``integrity``: the integrity
  rubric's results for the active manifest and each ingredient (:mod:`.rubrics`).
  ``ai_declaration`` is the summary the verdict uses, derived from the signals:
  ``fullyGenAIMedia`` on the active manifest → ``ai-generated``; ``partlyGenAICreation``,
  ``perceptibleGenAI`` or ``compositionMayContainGenAI`` (or GenAI anywhere among the
  ingredients) → ``ai-edited``; ``perceptiblePossiblyGenAI`` or
  ``screenCaptureMayContainGenAI`` → ``may-contain-ai``; a pure capture chain → ``capture``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from deepaudit.audit.rubrics import (
    Check,
    SignalNode,
    Trait,
    integrity_checks,
    load_rubric,
    signal_graph,
    signals_output,
)
from deepaudit.c2pa_credentials import (
    IdentityAssertion,
    TimeStamp,
    expiry_note,
    identities_of,
    is_identity_code,
    time_stamp_of,
)
from deepaudit.c2pa_layer import C2paRead, make_context, read_file, read_trust_anchors
from deepaudit.errors import DeepauditError, error_record
from deepaudit.iptc import claim_of, short_name
from deepaudit.trust_lists import TrustSource, trust_source

if TYPE_CHECKING:
    from deepaudit.media import LoadedFile

__all__ = [
    "Action",
    "C2paManifestNode",
    "ProvenanceRecord",
    "SignerInfo",
    "audit_file",
    "image_signals",
    "inspect_provenance",
    "interpret",
]

State = Literal["trusted", "untrusted", "invalid", "absent", "remote", "malformed", "unreadable"]
Declaration = Literal["ai-generated", "ai-edited", "may-contain-ai", "capture", "none"]

UNTRUSTED = "signingCredential.untrusted"
_MAX_DEPTH = 32  # ingredient nesting followed before giving up (hostile stores)

_DECLARATION_TEXT: dict[str, str] = {
    "ai-generated": "declares AI-generated",
    "ai-edited": "declares AI-edited/composite",
    "may-contain-ai": "declares content that may contain AI",
    "capture": "declares camera capture",
    "none": "no AI declaration",
}
_RANK = {"ai-generated": 3, "ai-edited": 2, "capture": 1, "none": 0}

# how the Asset Rubrics' traits (names without category) sum up to a declaration
_GENAI_MEDIA = frozenset({"fullyGenAIMedia"})
_CONTAINS_AI = frozenset({"partlyGenAICreation", "perceptibleGenAI", "compositionMayContainGenAI"})
_MAY_CONTAIN_AI = frozenset({"perceptiblePossiblyGenAI", "screenCaptureMayContainGenAI"})
_CAPTURE = frozenset({"capturedMedia", "capturedMediaStitched"})


@dataclass(frozen=True)
class SignerInfo:
    common_name: str | None = None
    organization: str | None = None
    issuer: str | None = None  # issuer CN (or organisation when c2pa gives only that)
    issuer_organization: str | None = None
    serial_number: str | None = None
    not_before: str | None = None
    not_after: str | None = None
    algorithm: str | None = None

    def label(self) -> str:
        who = self.common_name or self.organization or "unknown signer"
        if self.organization and self.organization != who:
            who = f"{who} ({self.organization})"
        if self.issuer:
            who += f", issued by {self.issuer}"
        return who

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Action:
    action: str
    digital_source_type: str | None = None  # short IPTC name, e.g. "trainedAlgorithmicMedia"
    software_agent: str | None = None
    when: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class C2paManifestNode:
    """One manifest of the chain: the active one, or an ingredient's."""

    label: str | None
    state: State
    codes: list[str] = field(default_factory=list)
    title: str | None = None
    format: str | None = None
    relationship: str | None = None  # for ingredients: parentOf, componentOf, inputTo
    claim_generator: str | None = None
    signer: SignerInfo | None = None
    signing_time: str | None = None
    actions: list[Action] = field(default_factory=list)
    ingredients: list[C2paManifestNode] = field(default_factory=list)
    signals: list[Trait] = field(default_factory=list)  # the Asset Rubrics' local signals
    integrity: list[Check] = field(default_factory=list)  # the integrity rubric's results
    time_stamp: TimeStamp | None = None  # the signature's RFC 3161 time-stamp
    identities: list[IdentityAssertion] = field(default_factory=list)  # CAWG named actors

    @property
    def digital_source_types(self) -> list[str]:
        seen: list[str] = []
        for a in self.actions:
            if a.digital_source_type and a.digital_source_type not in seen:
                seen.append(a.digital_source_type)
        return seen

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "state": self.state,
            "codes": self.codes,
            "title": self.title,
            "format": self.format,
            "relationship": self.relationship,
            "claim_generator": self.claim_generator,
            "signer": self.signer.to_json() if self.signer else None,
            "signing_time": self.signing_time,
            "actions": [a.to_json() for a in self.actions],
            "digital_source_types": self.digital_source_types,
            "signals": [t.to_json() for t in self.signals],
            "integrity": [c.to_json() for c in self.integrity],
            "ingredients": [i.to_json() for i in self.ingredients],
            "time_stamp": self.time_stamp.to_json() if self.time_stamp else None,
            "identities": [i.to_json() for i in self.identities],
        }


@dataclass
class ProvenanceRecord:
    """The interpretation of one file's provenance; ``to_json()`` is the scan contract."""

    path: str
    state: State
    reason: str
    ai_declaration: Declaration = "none"
    conclusion: str = ""
    manifest: C2paManifestNode | None = None
    remote_url: str | None = None
    embedded: bool | None = None
    sidecar: str | None = None
    # a sidecar beside a file that holds its own manifest store: not read (as in c2pa-rs)
    sidecar_ignored: str | None = None
    trusted_by: TrustSource | None = None  # the list or anchors a trusted signer chains to
    # the rubric traits the declaration rests on, each "report text (manifest title)"
    declaration_basis: list[str] = field(default_factory=list)
    graph: list[SignalNode] | None = None  # the signals graph (for --rubric-json), not in JSON

    @property
    def codes(self) -> list[str]:
        return self.manifest.codes if self.manifest else []

    @property
    def signer(self) -> SignerInfo | None:
        return self.manifest.signer if self.manifest else None

    @property
    def digital_source_types(self) -> list[str]:
        return self.manifest.digital_source_types if self.manifest else []

    @property
    def ingredients(self) -> list[C2paManifestNode]:
        return self.manifest.ingredients if self.manifest else []

    def rubric_json(self) -> dict[str, Any]:
        """The signals and integrity results in the conformance program's output shapes
        (``asset-rubric-signals-local-output``; integrity per manifest)."""
        out: dict[str, Any] = {"path": self.path, "state": self.state}
        out["signals"] = signals_output(self.graph) if self.graph is not None else None
        integrity = load_rubric("integrity")
        nodes = _walk(self.manifest) if self.manifest else []
        out["integrity"] = {
            "rubricName": integrity.name,
            "rubricVersion": integrity.version,
            "manifests": [
                {
                    "label": n.label,
                    "title": n.title,
                    "active": n is self.manifest,
                    "results": [c.to_json() for c in n.integrity],
                }
                for n in nodes
                if n.integrity
            ],
        }
        return out

    def to_json(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "path": self.path,
            "state": self.state,
            "reason": self.reason,
            "codes": self.codes,
            "signer": self.signer.to_json() if self.signer else None,
            "issuer": self.signer.issuer if self.signer else None,
            "signing_time": m.signing_time if m else None,
            "claim_generator": m.claim_generator if m else None,
            "title": m.title if m else None,
            "actions": [a.to_json() for a in m.actions] if m else [],
            "digital_source_types": self.digital_source_types,
            "ai_declaration": self.ai_declaration,
            "ai_declaration_basis": self.declaration_basis,
            "conclusion": self.conclusion,
            "signals": _flat_signals(self.graph) if self.graph is not None else None,
            "integrity": [c.to_json() for c in m.integrity] if m else None,
            "rubrics": _rubric_versions() if self.graph is not None else None,
            "ingredients": [i.to_json() for i in self.ingredients],
            "remote_url": self.remote_url,
            "embedded": self.embedded,
            "sidecar": self.sidecar,
            "sidecar_ignored": self.sidecar_ignored,
            "trusted_by": self.trusted_by.to_json() if self.trusted_by else None,
            "time_stamp": m.time_stamp.to_json() if m and m.time_stamp else None,
            "identities": [i.to_json() for i in m.identities] if m else [],
        }


def inspect_provenance(
    path: str | os.PathLike[str],
    *,
    trust_anchors: str | os.PathLike[str] | None = None,
    context=None,
    use_sidecar: bool = True,
    source: LoadedFile | None = None,
    default_trust: bool = True,
    legacy_anchors: str | os.PathLike[str] | None = None,
) -> ProvenanceRecord:
    """Read ``path``'s manifest store offline and interpret it. Never raises for content.

    Trust: the official C2PA Trust List in force (unless ``default_trust`` is False) and
    ``trust_anchors``, and ``legacy_anchors`` (a superseded list: its signers are trusted, and
    ``trusted_by.legacy`` says so); with a ``context`` given, these only name what a trusted
    signer chains to (``trusted_by``). ``source``: the file already read by
    ``deepaudit.media.load_file``.
    """
    ctx = (
        context
        if context is not None
        else make_context(trust_anchors, default_trust=default_trust, legacy_anchors=legacy_anchors)
    )
    rec = interpret(read_file(path, context=ctx, use_sidecar=use_sidecar, source=source))
    if rec.state == "trusted" and rec.signer is not None:
        rec.trusted_by = _trusted_by(rec.signer, trust_anchors, default_trust, legacy_anchors)
        if rec.trusted_by is not None:
            note = _expiry_note(rec.manifest)
            head = rec.reason.removesuffix(f" ({note})") if note else rec.reason
            rec.reason = f"{head} via {rec.trusted_by.label()}" + (f" ({note})" if note else "")
            rec.conclusion = _conclusion(rec)
    return rec


def _trusted_by(
    signer: SignerInfo,
    trust_anchors: str | os.PathLike[str] | None,
    default_trust: bool,
    legacy_anchors: str | os.PathLike[str] | None = None,
) -> TrustSource | None:
    try:
        pem = read_trust_anchors(trust_anchors) if trust_anchors is not None else None
        legacy = read_trust_anchors(legacy_anchors) if legacy_anchors is not None else None
        return trust_source(
            signer.issuer,
            signer.issuer_organization,
            anchors_pem=pem,
            anchors_file=str(trust_anchors) if trust_anchors is not None else None,
            default_trust=default_trust,
            legacy_pem=legacy,
            legacy_file=str(legacy_anchors) if legacy_anchors is not None else None,
        )
    except (DeepauditError, ValueError):  # naming the source must never fail a read
        return None


def interpret(read: C2paRead) -> ProvenanceRecord:
    """Turn what c2pa read into a :class:`ProvenanceRecord`."""
    if read.status == "absent":
        extra = f" (c2pa could not parse the file: {read.error})" if read.error else ""
        return _record(read, "absent", "no C2PA manifest" + extra)
    if read.status == "unsupported":
        return _record(read, "absent", f"no C2PA manifest ({read.error})")
    if read.status == "unreadable":
        return _record(read, "unreadable", f"file cannot be read: {read.error}")
    if read.status == "remote":
        url = read.remote_url or "an unknown URL"
        return _record(read, "remote", f"manifest is stored remotely at {url} (not fetched)")
    if read.status == "error" or not read.store:
        return _record(read, "malformed", f"manifest store cannot be read: {read.error}")

    store = read.store
    manifests: Mapping[str, Any] = store.get("manifests") or {}
    active = store.get("active_manifest")
    if not active or active not in manifests:
        return _record(read, "malformed", "manifest store has no active manifest")
    results = store.get("validation_results") or {}
    failures = _codes((results.get("activeManifest") or {}).get("failure"))
    for delta in results.get("ingredientDeltas") or []:
        failures += _codes(((delta or {}).get("validationDeltas") or {}).get("failure"))
    if not results:  # older stores: a flat validation_status list holds the failures
        failures = _codes(store.get("validation_status"))
    # CAWG identity codes speak for the named actor (``identities``), not for the claim
    failures = list(dict.fromkeys(c for c in failures if not is_identity_code(c)))
    state = _state(store.get("validation_state"), failures)
    if (
        state == "untrusted"
        and failures == []
        and "signingCredential.trusted"
        in _codes((results.get("activeManifest") or {}).get("success"))
    ):
        state = "trusted"  # c2pa says "Valid" when only an identity credential is untrusted
    summary = _summarise(
        manifests,
        active,
        read.certificates,
        state,
        failures,
        set(),
        0,
        results=results.get("activeManifest"),
    )
    rec = ProvenanceRecord(
        path=read.path,
        state=summary.state,
        reason="",
        manifest=summary,
        remote_url=read.remote_url,
        embedded=read.embedded,
        sidecar=read.sidecar,
        sidecar_ignored=read.sidecar_ignored,
    )
    signer = summary.signer.label() if summary.signer else "an unknown signer"
    if summary.state == "trusted":
        rec.reason = f"valid manifest signed by {signer}, trusted"
    elif summary.state == "untrusted":
        rec.reason = f"valid signature by {signer}, but the signer is not in the trust list"
    else:
        bad = [c for c in failures if c != UNTRUSTED] or failures
        rec.reason = "manifest fails validation: " + ", ".join(bad)
    if note := _expiry_note(summary):
        rec.reason += f" ({note})"
    active_results = results.get("activeManifest")
    summary.integrity = _integrity(active_results if isinstance(active_results, dict) else None)
    rec.graph = _attach_signals(summary, read.crjson)
    if rec.graph:
        rec.ai_declaration, rec.declaration_basis = _declaration_from_signals(rec.graph)
    else:  # c2pa gave no crJSON: the digital source types alone
        rec.ai_declaration = _declaration(summary)
    rec.conclusion = _conclusion(rec)
    return rec


def _expiry_note(node: C2paManifestNode | None) -> str | None:
    if node is None:
        return None
    return expiry_note(node.signer.not_after if node.signer else None, node.time_stamp, node.codes)


def _integrity(results: Mapping[str, Any] | None) -> list[Check]:
    try:
        return integrity_checks(results)
    except ValueError:  # the shipped rubric cannot be read: the record stands without it
        return []


def _walk(node: C2paManifestNode) -> list[C2paManifestNode]:
    out, stack = [], [node]
    while stack and len(out) < 10_000:
        n = stack.pop()
        out.append(n)
        stack.extend(reversed(n.ingredients))
    return out


def _attach_signals(
    summary: C2paManifestNode, crjson: Mapping[str, Any] | None
) -> list[SignalNode] | None:
    """Evaluate the signals rubric on the store and give each node of the tree its traits."""
    if not crjson:
        return None
    try:
        graph = signal_graph(crjson)
    except ValueError:  # the shipped rubric cannot be read
        return None
    if not graph:
        return None
    by_label = {n.label: n for n in graph if n.label}
    index_of = {n.label: n.index for n in graph if n.label}
    for node in _walk(summary):
        if node.label in by_label:
            node.signals = list(by_label[node.label].traits)
        parent = index_of.get(node.label)
        for ing in node.ingredients:
            if ing.label is None and parent is not None:  # a flat ingredient: its pseudo node
                for g in graph:
                    if g.pseudo and g.parent == parent and g.title == (ing.title or g.title):
                        ing.signals = list(g.traits)
                        break
    return graph


def _ancestors(graph: list[SignalNode]) -> list[SignalNode]:
    seen = {0}
    order: list[SignalNode] = []
    stack = [i for i, _ in graph[0].ingredients]
    while stack:
        i = stack.pop()
        if i in seen or not 0 <= i < len(graph):
            continue
        seen.add(i)
        order.append(graph[i])
        stack.extend(j for j, _ in graph[i].ingredients)
    return order


def _declaration_from_signals(graph: list[SignalNode]) -> tuple[Declaration, list[str]]:
    """The declaration the signals amount to, and the report texts it rests on."""
    active, older = graph[0], _ancestors(graph)

    def basis(pairs: list[tuple[SignalNode, Trait]]) -> list[str]:
        return [f"{t.report} ({n.title or n.label or 'ingredient'})" for n, t in pairs]

    own = [(active, t) for t in active.traits]
    hits = [(n, t) for n, t in own if t.name in _GENAI_MEDIA]
    if hits:
        return "ai-generated", basis(hits)
    hits = [(n, t) for n, t in own if t.name in _CONTAINS_AI]
    hits += [(n, t) for n in older for t in n.traits if t.name in _CONTAINS_AI | _GENAI_MEDIA]
    if hits:
        return "ai-edited", basis(hits)
    chain = [(n, t) for n in [active, *older] for t in n.traits]
    hits = [(n, t) for n, t in chain if t.name in _MAY_CONTAIN_AI]
    if hits:
        return "may-contain-ai", basis(hits)
    captures = [(n, t) for n, t in chain if t.name in _CAPTURE]
    other_origins = [
        (n, t) for n, t in chain if t.trait.startswith("inception:") and t.name not in _CAPTURE
    ]
    if captures and not other_origins:  # a pure capture chain
        return "capture", basis(captures)
    return "none", []


def _flat_signals(graph: list[SignalNode]) -> list[dict[str, Any]]:
    return [
        {
            "manifest": n.title or n.label,
            "node": n.index,
            "active": n.index == 0,
            "pseudo": n.pseudo,
            **t.to_json(),
        }
        for n in graph
        for t in n.traits
    ]


def _rubric_versions() -> dict[str, Any]:
    return {
        "signals": load_rubric("signals").to_json(),
        "integrity": load_rubric("integrity").to_json(),
    }


def _record(read: C2paRead, state: State, reason: str) -> ProvenanceRecord:
    rec = ProvenanceRecord(
        path=read.path,
        state=state,
        reason=reason,
        remote_url=read.remote_url,
        embedded=read.embedded,
        sidecar=read.sidecar,
        sidecar_ignored=read.sidecar_ignored,
    )
    rec.conclusion = _conclusion(rec)
    return rec


def _codes(entries: Any) -> list[str]:
    return [e["code"] for e in entries or [] if isinstance(e, dict) and e.get("code")]


def _state(validation_state: str | None, failures: list[str]) -> State:
    if validation_state == "Trusted":
        return "trusted"
    real = [c for c in failures if c != UNTRUSTED]
    if validation_state == "Valid" or (validation_state is None and not real):
        return "untrusted"
    return "invalid" if real else "untrusted"


def _summarise(
    manifests: Mapping[str, Any],
    label: str,
    certs: Mapping[str, Mapping[str, Any]],
    state: State,
    codes: list[str],
    seen: set[str],
    depth: int,
    ingredient: Mapping[str, Any] | None = None,
    results: Mapping[str, Any] | None = None,
) -> C2paManifestNode:
    m = manifests.get(label) or {}
    seen = seen | {label}
    summary = C2paManifestNode(
        label=label,
        state=state,
        codes=codes,
        title=(ingredient or {}).get("title") or m.get("title"),
        format=(ingredient or {}).get("format") or m.get("format"),
        relationship=(ingredient or {}).get("relationship"),
        claim_generator=_claim_generator(m),
        signer=_signer(m.get("signature_info") or {}, certs.get(label) or {}),
        signing_time=(m.get("signature_info") or {}).get("time"),
        actions=_actions(m.get("assertions") or []),
        time_stamp=time_stamp_of(results, certs.get(label)),
        identities=identities_of(m, results),
    )
    for ing in m.get("ingredients") or []:
        if not isinstance(ing, dict):
            continue
        child_label = ing.get("active_manifest")
        child_codes, child_state = _ingredient_validation(ing)
        recorded = (ing.get("validation_results") or {}).get("activeManifest")
        if (
            child_label
            and child_label in manifests
            and child_label not in seen
            and depth < _MAX_DEPTH
        ):
            child_results = (ing.get("validation_results") or {}).get("activeManifest")
            child = _summarise(
                manifests,
                child_label,
                certs,
                child_state,
                child_codes,
                seen,
                depth + 1,
                ing,
                child_results if isinstance(child_results, dict) else None,
            )
        else:
            child = C2paManifestNode(
                label=child_label,
                state=child_state if child_label else "absent",
                codes=child_codes,
                title=ing.get("title"),
                format=ing.get("format"),
                relationship=ing.get("relationship"),
            )
        if isinstance(recorded, dict):
            child.integrity = _integrity(recorded)
        summary.ingredients.append(child)
    return summary


def _ingredient_validation(ing: Mapping[str, Any]) -> tuple[list[str], State]:
    results = ing.get("validation_results")
    if isinstance(results, dict):
        active = results.get("activeManifest") or {}
        failures = _codes(active.get("failure"))
        trusted = "signingCredential.trusted" in _codes(active.get("success"))
    else:
        failures = _codes(ing.get("validation_status"))
        trusted = False
    failures = [c for c in failures if not is_identity_code(c)]
    if trusted and not failures:
        return failures, "trusted"
    return failures, _state(None, failures)


def _claim_generator(m: Mapping[str, Any]) -> str | None:
    info = m.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict):
        first = info[0]
        name = first.get("name")
        version = first.get("version")
        if name:
            return f"{name}/{version}" if version else str(name)
    gen = m.get("claim_generator")
    return str(gen) if gen else None


def _signer(sig: Mapping[str, Any], cert: Mapping[str, Any]) -> SignerInfo | None:
    if not sig and not cert:
        return None
    subject = cert.get("subject") or {}
    issuer = cert.get("issuer") or {}
    # json()'s signature_info "issuer" is the signer's own organisation (c2pa-rs takes the
    # subject's O), not who issued the certificate: only crJSON names the issuer
    return SignerInfo(
        common_name=subject.get("CN") or sig.get("common_name"),
        organization=subject.get("O") or sig.get("issuer"),
        issuer=issuer.get("CN"),
        issuer_organization=issuer.get("O"),
        serial_number=cert.get("serial_number") or sig.get("cert_serial_number"),
        not_before=cert.get("not_before"),
        not_after=cert.get("not_after"),
        algorithm=cert.get("algorithm") or sig.get("alg"),
    )


def _actions(assertions: list[Any]) -> list[Action]:
    out: list[Action] = []
    for a in assertions:
        if not isinstance(a, dict) or not str(a.get("label", "")).startswith("c2pa.actions"):
            continue
        for act in (a.get("data") or {}).get("actions") or []:
            if not isinstance(act, dict):
                continue
            agent = act.get("softwareAgent")
            if isinstance(agent, dict):
                agent = agent.get("name")
            out.append(
                Action(
                    action=str(act.get("action", "")),
                    digital_source_type=short_name(act.get("digitalSourceType")),
                    software_agent=str(agent) if agent else None,
                    when=act.get("when"),
                )
            )
    return out


def _declaration_of(summary: C2paManifestNode) -> Declaration:
    best: Declaration = "none"
    for dst in summary.digital_source_types:
        claim = claim_of(dst)
        if claim in _RANK and _RANK[claim] > _RANK[best]:
            best = claim  # type: ignore[assignment]
    return best


def _declaration(summary: C2paManifestNode) -> Declaration:
    """The active manifest's own declaration; AI inside an ingredient makes it AI-edited."""
    own = _declaration_of(summary)
    if own in ("ai-generated", "ai-edited"):
        return own
    stack = list(summary.ingredients)
    while stack:
        ing = stack.pop()
        if _declaration_of(ing) in ("ai-generated", "ai-edited"):
            return "ai-edited"
        stack.extend(ing.ingredients)
    return own


def _conclusion(rec: ProvenanceRecord) -> str:
    if rec.state == "absent":
        return "no C2PA manifest: no provenance claim either way"
    if rec.state == "remote":
        return "provenance not checked: the manifest is remote and was not fetched"
    if rec.state == "unreadable":
        return "provenance not checked: the file cannot be read"
    if rec.state == "malformed":
        return "a C2PA manifest is present but unreadable: treat as tampered or broken"
    text = _DECLARATION_TEXT[rec.ai_declaration]
    if rec.state == "trusted":
        if rec.trusted_by is not None and rec.trusted_by.legacy:
            return f"{text} (verified: signer trusted only by a legacy list)"
        return f"{text} (verified: trusted signer)"
    if rec.state == "untrusted":
        return f"{text} (signature valid but signer unknown: not verified)"
    return f"{text} (manifest invalid: do not rely on this claim)"


def audit_file(
    path: str | os.PathLike[str],
    *,
    context=None,
    trust_anchors: str | os.PathLike[str] | None = None,
    kind: str | None = None,
    check_metadata: bool = True,
    check_watermark: bool = True,
    default_trust: bool = True,
    legacy_anchors: str | os.PathLike[str] | None = None,
    rubric_json: bool = False,
) -> dict[str, Any]:
    """Provenance + AI metadata + invisible watermark of one file, as one JSON-ready dict
    (``rubric_json``: with the Asset Rubrics' results in the conformance shapes too).

    ``kind`` (``"image"``/``"video"``) skips sniffing when the caller knows it. Metadata and
    watermark failures are recorded in their own entries and never hide the C2PA result.
    """
    from deepaudit.audit.metadata import metadata_format
    from deepaudit.media import read_image

    record = inspect_provenance(
        path,
        trust_anchors=trust_anchors,
        context=context,
        default_trust=default_trust,
        legacy_anchors=legacy_anchors,
    )
    out = record.to_json()
    if rubric_json:
        out["rubric_json"] = record.rubric_json()
    if kind is None:
        try:
            kind = metadata_format(path)[1]  # image, video, or audio (tags only)
        except DeepauditError:
            kind = "other"
    out["metadata"] = None
    out["watermark"] = None
    if kind == "image" and (check_metadata or check_watermark):
        image = None
        if check_watermark:
            try:
                image = read_image(path)
            except DeepauditError as exc:
                out["watermark"] = _error(exc)
        out.update(image_signals(path, image, metadata=check_metadata, watermark=image is not None))
    elif kind in ("video", "audio") and check_metadata:  # container tags
        out.update(image_signals(path, metadata=True, watermark=False))
    return out


def image_signals(
    path: str | os.PathLike[str],
    image: Any = None,
    *,
    metadata: bool = True,
    watermark: bool = True,
    source: LoadedFile | None = None,
) -> dict[str, Any]:
    """``metadata`` and ``watermark`` entries of an image file (``image``: its decoded
    pixels, for the watermark), or the ``metadata`` of a video's or audio file's container
    tags; a failure is recorded in its entry, never raised."""
    from deepaudit.audit.metadata import read_ai_metadata
    from deepaudit.audit.watermark import detect_watermark

    out: dict[str, Any] = {}
    if metadata:
        try:
            out["metadata"] = read_ai_metadata(path, source=source).to_json()
        except DeepauditError as exc:
            out["metadata"] = _error(exc)
    if watermark and image is not None:
        try:
            out["watermark"] = detect_watermark(image).to_json()
        except ValueError as exc:  # not an H×W×3 image
            out["watermark"] = _error(exc)
    return out


def _error(exc: BaseException) -> dict[str, Any]:
    return {"error": error_record(exc)}
