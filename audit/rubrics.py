"""The C2PA Asset Rubrics' signals and integrity results, evaluated on a file's crJSON.

The C2PA Conformance Task Force's Asset Rubrics 1.0 (2026-08-06) define what a manifest store
says about a file's origin in shared terms, so that validators label files alike:

- the **signals** rubric, evaluated on each manifest of the provenance graph *locally*:
  inception traits (``inception:signal_fullyGenAIMedia``, ``..._capturedMedia``, ...) and
  transformation traits (``transformation:signal_perceptibleGenAI``, ...);
- the **integrity** rubric: structural, validity and trust results from the validator's
  ``validationResults``.

The rubric files ship unmodified in ``rubric_data/`` (CC BY 4.0, see its SOURCE.md) and are
evaluated by :mod:`deepaudit.audit.jsonformula`. The graph follows the conformance program's
evaluator: one node per manifest of the store (the active manifest first), an edge per
ingredient assertion that points at a manifest, and a *pseudo* node for an ingredient without
a manifest that still declares a digital source type (on the ingredient, or on the
``c2pa.opened`` action that brought it in) — evaluated as if it had been created with it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from deepaudit.audit.jsonformula import FormulaError, Program, compile_formula, truthy

__all__ = [
    "RELEASE",
    "Check",
    "Rubric",
    "SignalNode",
    "Trait",
    "integrity_checks",
    "load_rubric",
    "load_rubric_file",
    "signal_graph",
    "signals_output",
]

log = logging.getLogger(__name__)

RELEASE = "C2PA Asset Rubrics 1.0 (2026-08-06)"
_DATA = Path(__file__).with_name("rubric_data")
_FILES = {
    "signals": "asset-rubric-signals-local.yml",
    "integrity": "asset-rubric-integrity.yml",
}
_URN = re.compile(r"urn:c2pa:[^/]+")


@dataclass(frozen=True)
class _Statement:
    id: str
    program: Program
    report: Any  # str | {lang: str} | {"true": ..., "false": ...}
    fail_if_matched: bool = False

    def text(self, outcome: bool | None, matches: list[Any] | None = None) -> str:
        rep = self.report
        if isinstance(rep, dict) and ("true" in rep or "false" in rep):
            rep = rep.get("true" if outcome else "false") or rep.get("default") or ""
        if isinstance(rep, dict):
            rep = rep.get("en") or next(iter(rep.values()), "")
        text = str(rep)
        if matches:
            text = text.replace("{{matches}}", ", ".join(str(m) for m in matches))
        return text


@dataclass(frozen=True)
class Rubric:
    """One rubric file, compiled: its metadata, variables, named expressions, statements."""

    name: str
    version: str
    date: str
    statements: tuple[_Statement, ...]
    variables: Mapping[str, Any]
    functions: Mapping[str, Program]
    path: str
    sha256: str = ""  # of the YAML file: the signals cache holds only for the shipped one

    def evaluate(self, statement: _Statement, data: Any, cache: dict | None = None) -> Any:
        return statement.program(data, self.variables, self.functions, cache)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "date": self.date, "release": RELEASE}


def load_rubric_file(path: str | os.PathLike[str]) -> Rubric:
    """Compile a rubric YAML file. Raises ``ValueError`` naming the file and the statement
    whose expression is outside what :mod:`~deepaudit.audit.jsonformula` supports."""
    import yaml

    p = Path(path)
    try:
        raw = p.read_bytes()
        docs = list(yaml.safe_load_all(raw.decode("utf-8")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{p}: cannot read the rubric: {exc}") from None
    if not docs or not isinstance(docs[0], dict) or "rubric_metadata" not in docs[0]:
        raise ValueError(f"{p}: not an asset rubric (no rubric_metadata block)")
    head = docs[0]
    meta = head.get("rubric_metadata") or {}
    names = frozenset((head.get("expressions") or {}).keys())
    try:
        functions = {
            n: compile_formula(str(e), names) for n, e in (head.get("expressions") or {}).items()
        }
        statements = []
        for doc in docs[1:]:
            for st in doc if isinstance(doc, list) else [doc]:
                if not isinstance(st, dict) or not st.get("expression") or not st.get("id"):
                    continue  # information statements and data blocks
                try:
                    program = compile_formula(str(st["expression"]), names)
                except FormulaError as exc:
                    raise ValueError(f"{p}: statement {st['id']}: {exc}") from None
                statements.append(
                    _Statement(
                        str(st["id"]),
                        program,
                        st.get("reportText") or str(st["id"]),
                        bool(st.get("failIfMatched", False)),
                    )
                )
    except FormulaError as exc:
        raise ValueError(f"{p}: {exc}") from None
    return Rubric(
        name=str(meta.get("name", p.stem)),
        version=str(meta.get("version", "?")),
        date=str(meta.get("date", "?"))[:10],
        statements=tuple(statements),
        variables=dict(head.get("variables") or {}),
        functions=functions,
        path=str(p),
        sha256=hashlib.sha256(raw).hexdigest(),
    )


@functools.cache
def load_rubric(kind: Literal["signals", "integrity"]) -> Rubric:
    """The shipped rubric of that kind (compiled once per process)."""
    return load_rubric_file(_DATA / _FILES[kind])


# --------------------------------------------------------------------------- signals


@dataclass(frozen=True)
class Trait:
    """One signal a manifest carries, with the rubric's report text."""

    trait: str  # e.g. "inception:signal_fullyGenAIMedia"
    report: str  # e.g. "Contains Fully GenAI Media"
    multiple: bool = False

    @property
    def name(self) -> str:
        """The trait without its category: ``signal_fullyGenAIMedia`` → ``fullyGenAIMedia``."""
        return self.trait.split(":", 1)[-1].removeprefix("signal_")

    def to_json(self) -> dict[str, Any]:
        return {"trait": self.trait, "reportText": self.report, "multiple": self.multiple}


@dataclass
class SignalNode:
    """One node of the provenance graph and the signals the rubric found on it."""

    index: int
    label: str | None
    title: str | None
    format: str | None
    asserted_by: dict[str, str]
    traits: list[Trait] = field(default_factory=list)
    ingredients: list[tuple[int, str | None]] = field(default_factory=list)  # (index, rel)
    pseudo: bool = False
    parent: int | None = None  # for pseudo nodes: the manifest that declared the ingredient

    @property
    def inceptions(self) -> list[Trait]:
        return [t for t in self.traits if t.trait.startswith("inception:")]

    @property
    def transformations(self) -> list[Trait]:
        return [t for t in self.traits if t.trait.startswith("transformation:")]

    def names(self) -> set[str]:
        return {t.name for t in self.traits}

    def to_json(self) -> dict[str, Any]:
        """The node in the shape of the conformance program's signals output schema."""
        out: dict[str, Any] = {
            "assertedBy": {"subject": self.asserted_by},
            "dc:format": self.format,
            "localInceptions": [t.to_json() for t in self.inceptions],
            "localTransformations": [t.to_json() for t in self.transformations],
            "ingredients": [{"index": i, "relationship": r} for i, r in self.ingredients],
        }
        if self.pseudo:
            out["pseudo"] = True
        return out


def _subject(manifest: Mapping[str, Any]) -> dict[str, str]:
    subject = ((manifest.get("signature") or {}).get("certificateInfo") or {}).get("subject") or {}
    out = {"CN": str(subject.get("CN", "Unknown CN")), "O": str(subject.get("O", "Unknown O"))}
    if subject.get("OU"):
        out["OU"] = str(subject["OU"])
    return out


def _opened_dst(assertions: Mapping[str, Any]) -> str | None:
    for key, value in assertions.items():
        if key.startswith("c2pa.actions") and isinstance(value, dict):
            for act in value.get("actions") or []:
                opened = isinstance(act, dict) and act.get("action") == "c2pa.opened"
                if opened and act.get("digitalSourceType"):
                    return str(act["digitalSourceType"])
    return None


def signal_graph(crjson: Mapping[str, Any], rubric: Rubric | None = None) -> list[SignalNode]:
    """The provenance graph of a crJSON manifest store, each node with its signals.

    Node 0 is the active manifest; pseudo nodes (flat ingredients that declare a digital
    source type) come after the store's manifests, as in the conformance output.
    """
    rubric = rubric or load_rubric("signals")
    manifests = [m for m in crjson.get("manifests") or [] if isinstance(m, dict)]
    manifests = [m for m in manifests if m.get("label")]
    index = {str(m["label"]): i for i, m in enumerate(manifests)}
    nodes: list[SignalNode] = []
    evaluated: list[Mapping[str, Any]] = []
    for i, m in enumerate(manifests):
        claim = m.get("claim.v2") or m.get("claim") or {}
        nodes.append(
            SignalNode(
                i,
                str(m["label"]),
                claim.get("dc:title"),
                claim.get("dc:format"),
                _subject(m),
            )
        )
        evaluated.append(m)
    for i, m in enumerate(manifests):
        assertions = m.get("assertions") or {}
        if not isinstance(assertions, dict):
            continue
        for key, value in assertions.items():
            if not isinstance(value, dict):
                continue
            if key.startswith("c2pa.thumbnail") and nodes[i].format is None:
                nodes[i].format = value.get("format")
            if not key.startswith("c2pa.ingredient"):
                continue
            rel = value.get("relationship")
            url = (value.get("activeManifest") or {}).get("url")
            if url:
                found = _URN.search(str(url))
                parent = index.get(found.group()) if found else None
                if parent is None:
                    continue  # points at a manifest the store does not hold
                nodes[i].ingredients.append((parent, rel))
                if nodes[parent].format is None:
                    nodes[parent].format = value.get("dc:format")
                if nodes[parent].title is None:
                    nodes[parent].title = value.get("dc:title")
                continue
            dst = value.get("digitalSourceType") or _opened_dst(assertions)
            if not dst:
                continue
            k = len(nodes)
            title = value.get("dc:title") or "flat-ingredient"
            nodes.append(
                SignalNode(
                    k,
                    None,
                    title,
                    value.get("dc:format"),
                    nodes[i].asserted_by,
                    pseudo=True,
                    parent=i,
                )
            )
            evaluated.append(
                {
                    "label": f"urn:c2pa:pseudo:{m['label']}:{title}_{k}",
                    "assertions": {
                        "c2pa.actions.v2": {
                            "allActionsIncluded": True,
                            "actions": [{"action": "c2pa.created", "digitalSourceType": dst}],
                        }
                    },
                }
            )
            nodes[i].ingredients.append((k, rel))
    shipped = rubric.sha256 == SIGNALS_SHA256
    for node, data in zip(nodes, evaluated, strict=True):
        small = signal_input(data) if shipped else None
        if small is None:
            node.traits.extend(_node_traits(rubric, data, node.index))
            continue
        key = repr(small)
        traits = _TRAITS.get(key)
        if traits is None:
            if len(_TRAITS) >= _TRAITS_MAX:
                _TRAITS.clear()
            traits = _TRAITS[key] = _node_traits(rubric, small, node.index)
        node.traits.extend(traits)
    return nodes


# The shipped signals rubric reads a manifest (or pseudo node) only through these paths: its
# statements and named expressions (asset-rubric-signals-local.yml) reach
# assertions.'c2pa.actions.v2' (allActionsIncluded; each action's action and
# digitalSourceType), whether assertions.'c2pa.ingredient.v3' and its activeManifest are null,
# and the url of each of claim.v2's gathered_assertions. Manifests made by one tool share
# these, so a node's traits are evaluated once per distinct input and cached: a rubric read
# ~0.1 ms per file. tests/audit/test_rubrics.py checks that this sha256 is the shipped file's
# (a new rubric must be read again before it takes the cache) and that the traits of every
# manifest the tests sign are the same from the full node and from its input.
SIGNALS_SHA256 = "e4b121277e55eba19a52611320b5a44466fb49489aa4a528be92506caef54579"
_TRAITS: dict[str, tuple[Trait, ...]] = {}
_TRAITS_MAX = 4096


def clear_caches() -> None:
    """Forget the cached traits and checks (benchmarks: a first read of each input)."""
    _TRAITS.clear()
    _CHECKS.clear()


def signal_input(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the shipped signals rubric reads of a node: the same keys present, with the same
    values where it reads them; None for a shape it might read differently (then the whole
    node is evaluated)."""
    out: dict[str, Any] = {}
    if "assertions" in data:
        assertions = data["assertions"]
        if not isinstance(assertions, dict):
            return None
        seen: dict[str, Any] = {}
        if "c2pa.actions.v2" in assertions:
            v2 = assertions["c2pa.actions.v2"]
            if not isinstance(v2, dict):
                return None
            kept = {k: v2[k] for k in ("allActionsIncluded",) if k in v2}
            if "actions" in v2:
                acts = v2["actions"]
                if not isinstance(acts, list) or not all(isinstance(a, dict) for a in acts):
                    return None
                kept["actions"] = [
                    {k: a[k] for k in ("action", "digitalSourceType") if k in a} for a in acts
                ]
            seen["c2pa.actions.v2"] = kept
        if "c2pa.ingredient.v3" in assertions:
            ing = assertions["c2pa.ingredient.v3"]
            if not isinstance(ing, dict):
                return None
            seen["c2pa.ingredient.v3"] = (
                {"activeManifest": True} if ing.get("activeManifest") is not None else {}
            )
        out["assertions"] = seen
    if "claim.v2" in data:
        claim = data["claim.v2"]
        if not isinstance(claim, dict):
            return None
        kept_claim: dict[str, Any] = {}
        if "gathered_assertions" in claim:
            gathered = claim["gathered_assertions"]
            if not isinstance(gathered, list) or not all(isinstance(g, dict) for g in gathered):
                return None
            kept_claim["gathered_assertions"] = [
                {k: g[k] for k in ("url",) if k in g} for g in gathered
            ]
        out["claim.v2"] = kept_claim
    return out


def _node_traits(rubric: Rubric, data: Any, index: int) -> tuple[Trait, ...]:
    traits = []
    cache: dict = {}
    for st in rubric.statements:
        try:
            value = rubric.evaluate(st, data, cache)
        except (FormulaError, TypeError, AttributeError) as exc:
            log.debug("rubric statement %s on node %d: %s", st.id, index, exc)
            continue
        if isinstance(value, list):
            hit, multiple = len(value) > 0, len(value) > 1
        elif isinstance(value, bool):
            hit, multiple = value, False
        elif isinstance(value, (int, float)):
            hit, multiple = value > 0, False
        else:
            hit, multiple = value is not None, False
        if hit:
            traits.append(Trait(st.id, st.text(True), multiple))
    return tuple(traits)


def signals_output(nodes: list[SignalNode], rubric: Rubric | None = None) -> dict[str, Any]:
    """The graph in the shape of ``asset-rubric-signals-local-output.schema.json``."""
    rubric = rubric or load_rubric("signals")
    return {
        "rubricName": rubric.name,
        "rubricVersion": rubric.version,
        "manifests": [n.to_json() for n in nodes],
    }


# --------------------------------------------------------------------------- integrity


@dataclass(frozen=True)
class Check:
    """One integrity statement's outcome: passed, failed, or None (could not evaluate)."""

    trait: str  # e.g. "validation:valid_success"
    passed: bool | None
    report: str
    matches: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "trait": self.trait,
            "value": self.passed,
            "reportText": self.report,
            "matches": list(self.matches),
        }


def integrity_checks(
    validation_results: Mapping[str, Any] | None, rubric: Rubric | None = None
) -> list[Check]:
    """The integrity rubric on one manifest's ``validationResults`` (success/informational/
    failure lists of ``{code}``; None when the validator gave none)."""
    rubric = rubric or load_rubric("integrity")
    small = integrity_input(validation_results) if rubric.sha256 == INTEGRITY_SHA256 else None
    if small is None:
        return _integrity_checks(rubric, validation_results)
    key = repr(small)
    checks = _CHECKS.get(key)
    if checks is None:
        if len(_CHECKS) >= _TRAITS_MAX:
            _CHECKS.clear()
        checks = _CHECKS[key] = tuple(_integrity_checks(rubric, small))
    return list(checks)


# The shipped integrity rubric reads a manifest's validationResults only through whether it
# is null or empty and each failure's code (checked as SIGNALS_SHA256 is): results with the
# same codes share their checks.
INTEGRITY_SHA256 = "d78bf9f5abc9bbbe7b10e6f64ac58ecad5b7500167584494ec3f3963f3bb50bf"
_CHECKS: dict[str, tuple[Check, ...]] = {}


def integrity_input(validation_results: Any) -> dict[str, Any] | None:
    """What the shipped integrity rubric reads of ``validationResults``: its keys, and the
    failures' codes; None for a shape it might read differently."""
    if validation_results is None:
        return None
    if not isinstance(validation_results, dict):
        return None
    out: dict[str, Any] = {k: None for k in validation_results if k != "failure"}
    if "failure" in validation_results:
        failure = validation_results["failure"]
        if not isinstance(failure, list) or not all(isinstance(f, dict) for f in failure):
            return None
        out["failure"] = [{k: f[k] for k in ("code",) if k in f} for f in failure]
    return out


def _integrity_checks(rubric: Rubric, validation_results: Any) -> list[Check]:
    data = {"manifests": [{"validationResults": validation_results}]}
    if validation_results is None:
        data = {"manifests": [{}]}
    out: list[Check] = []
    cache: dict = {}
    for st in rubric.statements:
        try:
            value = rubric.evaluate(st, data, cache)
        except (FormulaError, TypeError, AttributeError) as exc:
            out.append(Check(st.id, None, f"Error: {exc}"))
            continue
        if st.fail_if_matched:
            matches = tuple(str(v) for v in value) if isinstance(value, list) else ()
            passed = not matches
            out.append(Check(st.id, passed, st.text(passed, list(matches)), matches))
        else:
            passed = truthy(value) if not isinstance(value, (int, float)) else value > 0
            out.append(Check(st.id, bool(passed), st.text(bool(passed))))
    return out
