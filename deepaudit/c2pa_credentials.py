"""Who signed a manifest, and when: the time-stamp of its claim signature and its CAWG
identity assertions, as c2pa-rs validated them.

**Time.** A claim signature may carry an RFC 3161 time-stamp from a time-stamping authority
(TSA). c2pa-rs checks the token against the signature (``timeStamp.validated``) and the TSA
against the TSA anchors of the read's context (``timeStamp.trusted`` / ``timeStamp.untrusted``;
:func:`deepaudit.c2pa_layer.make_context` gives it the C2PA TSA Trust List in force). As the
C2PA specification says (§14.5, validity of the signing credential), a *trusted* time-stamp
moves the moment at which the signer's certificate must be valid from "now" to the time-stamp:
a signature made while the certificate was valid stays valid after it expires; without one (or
with an untrusted one) an expired certificate fails with ``signingCredential.expired``.

**Identity.** A CAWG identity assertion (``cawg.identity``, Creator Assertions Working Group)
binds a named actor - a person or organisation, separate from the claim generator that signed
the manifest - to the manifest, with an X.509 certificate (``cawg.x509.cose``) or an identity
claims aggregator's verifiable credential (``cawg.identity_claims_aggregation``). c2pa-rs
validates it and reports ``cawg.*`` codes on the assertion's URL; those codes speak for the
named actor only and never change the claim's own validity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "IdentityAssertion",
    "TimeStamp",
    "expiry_note",
    "identities_of",
    "is_identity_code",
    "time_stamp_of",
]

IdentityValidity = Literal["trusted", "valid", "invalid", "unchecked"]

_CREDENTIAL_TYPES = {
    "cawg.x509.cose": "X.509 certificate",
    "cawg.identity_claims_aggregation": "identity claims aggregation (verifiable credential)",
}


def is_identity_code(code: str) -> bool:
    """A validation code about a CAWG identity assertion (not about the claim itself)."""
    return code.startswith("cawg.")


def _entries(results: Mapping[str, Any] | None) -> Iterable[tuple[str, Mapping[str, Any]]]:
    """(kind, entry) of every status entry of one manifest's results, kind being ``success``,
    ``informational`` or ``failure``."""
    for kind in ("success", "informational", "failure"):
        for e in (results or {}).get(kind) or []:
            if isinstance(e, dict) and isinstance(e.get("code"), str):
                yield kind, e


def _name(info: Mapping[str, Any] | None) -> str | None:
    """``CN (O)`` of a crJSON distinguished name."""
    if not isinstance(info, dict):
        return None
    cn, org = info.get("CN"), info.get("O")
    if cn and org and org not in cn:
        return f"{cn} ({org})"
    return cn or org or None


# --------------------------------------------------------------------------- time


@dataclass(frozen=True)
class TimeStamp:
    """The RFC 3161 time-stamp of a claim signature."""

    time: str | None  # the TSA's time (genTime), ISO 8601
    authority: str | None  # the TSA certificate's subject, "CN (O)"
    authority_issuer: str | None
    validated: bool  # the token is intact and covers this signature
    trusted: bool  # the TSA chains to a TSA trust list or anchor of the read
    trust_list: str | None  # which one, as c2pa reports it (its trust_uri)
    codes: tuple[str, ...]

    def label(self) -> str:
        who = self.authority or "an unknown TSA"
        if self.trusted:
            how = f"trusted via {self.trust_list}" if self.trust_list else "trusted"
        elif self.validated:
            how = "TSA not on any TSA trust list"
        else:
            how = "token does not validate"
        return f"time-stamped {self.time or '(no time)'} by {who} ({how})"

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "authority": self.authority,
            "authority_issuer": self.authority_issuer,
            "validated": self.validated,
            "trusted": self.trusted,
            "trust_list": self.trust_list,
            "codes": list(self.codes),
            "label": self.label(),
        }


def time_stamp_of(
    results: Mapping[str, Any] | None, certificate: Mapping[str, Any] | None
) -> TimeStamp | None:
    """The time-stamp of one manifest's signature, from its validation results (c2pa's
    ``activeManifest`` block of that manifest) and its crJSON certificate record
    (``c2pa_layer.C2paRead.certificates[label]``); None when the signature has none."""
    codes: list[str] = []
    trust_list = None
    for _, e in _entries(results):
        code = e["code"]
        if not code.startswith("timeStamp."):
            continue
        codes.append(code)
        text = str(e.get("explanation") or "")
        if code == "timeStamp.trusted" and "trust list:" in text:
            trust_list = text.split("trust list:", 1)[1].strip() or None
    info = (certificate or {}).get("timestamp")
    info = info if isinstance(info, dict) else {}
    if not codes and not info:
        return None
    cert = info.get("certificateInfo") if isinstance(info.get("certificateInfo"), dict) else {}
    return TimeStamp(
        time=info.get("timestamp") if isinstance(info.get("timestamp"), str) else None,
        authority=_name(cert.get("subject")),
        authority_issuer=_name(cert.get("issuer")),
        validated="timeStamp.validated" in codes,
        trusted="timeStamp.trusted" in codes,
        trust_list=trust_list,
        codes=tuple(dict.fromkeys(codes)),
    )


# --------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class IdentityAssertion:
    """One CAWG identity assertion and what c2pa's validation says about it."""

    label: str  # cawg.identity, cawg.identity__1, ...
    credential_type: str  # "X.509 certificate", "identity claims aggregation ...", or sig_type
    named_actor: str | None  # who the credential names
    issuer: str | None  # who issued the credential (CA organisation, or the ICA's DID)
    roles: tuple[str, ...]
    referenced_assertions: tuple[str, ...]  # the assertions the actor signed for
    verified_identities: tuple[str, ...]  # ICA: "type: name (provider)"
    validity: IdentityValidity
    codes: tuple[str, ...]
    failures: tuple[str, ...]

    def summary(self) -> str:
        who = self.named_actor or "an unnamed actor"
        role = f" as {', '.join(self.roles)}" if self.roles else ""
        by = f", issued by {self.issuer}" if self.issuer else ""
        return f"{who}{role} ({self.credential_type}{by}): {self.validity}"

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "credential_type": self.credential_type,
            "named_actor": self.named_actor,
            "issuer": self.issuer,
            "roles": list(self.roles),
            "referenced_assertions": list(self.referenced_assertions),
            "verified_identities": list(self.verified_identities),
            "validity": self.validity,
            "codes": list(self.codes),
            "failures": list(self.failures),
            "summary": self.summary(),
        }


def identities_of(
    manifest: Mapping[str, Any], results: Mapping[str, Any] | None
) -> list[IdentityAssertion]:
    """The CAWG identity assertions of one manifest (``Reader.json()``'s decoded
    assertions), each with the ``cawg.*`` codes c2pa reported on its URL."""
    out = []
    for a in manifest.get("assertions") or []:
        if not isinstance(a, dict):
            continue
        label = str(a.get("label") or "")
        if not label.startswith("cawg.identity"):
            continue
        data = a.get("data") if isinstance(a.get("data"), dict) else {}
        out.append(_identity(label, data, results))
    return out


def _identity(
    label: str, data: Mapping[str, Any], results: Mapping[str, Any] | None
) -> IdentityAssertion:
    payload = data.get("signer_payload") if isinstance(data.get("signer_payload"), dict) else {}
    sig_type = str(payload.get("sig_type") or "") or None
    roles = payload.get("role") or payload.get("roles") or []
    refs = [
        str(r.get("url", "")).rsplit("/", 1)[-1]
        for r in payload.get("referenced_assertions") or []
        if isinstance(r, dict)
    ]
    sig = data.get("signature_info") if isinstance(data.get("signature_info"), dict) else {}
    actor = sig.get("common_name") or None
    issuer = sig.get("issuer") or None
    identities = _verified_identities(data)
    if identities and actor is None:  # an ICA credential names its subject in these
        actor = identities[0].split(": ", 1)[-1]
    if sig_type == "cawg.identity_claims_aggregation" and issuer is None:
        issuer = _ica_issuer(data)
    codes, failures = [], []
    suffix = f"/c2pa.assertions/{label}"
    for kind, e in _entries(results):
        if is_identity_code(e["code"]) and str(e.get("url", "")).endswith(suffix):
            codes.append(e["code"])
            if kind == "failure":
                failures.append(e["code"])
    return IdentityAssertion(
        label=label,
        credential_type=_CREDENTIAL_TYPES.get(sig_type or "", sig_type or "unknown"),
        named_actor=actor,
        issuer=issuer,
        roles=tuple(str(r) for r in (roles if isinstance(roles, list) else [roles])),
        referenced_assertions=tuple(refs),
        verified_identities=tuple(identities),
        validity=_validity(codes, failures),
        codes=tuple(dict.fromkeys(codes)),
        failures=tuple(dict.fromkeys(failures)),
    )


def _validity(codes: list[str], failures: list[str]) -> IdentityValidity:
    if not codes:
        return "unchecked"  # c2pa did not decode it (decode_identity_assertions off)
    untrusted = [c for c in failures if c.endswith(".untrusted") or c.endswith("untrusted_issuer")]
    if [c for c in failures if c not in untrusted]:
        return "invalid"
    trusted = any(c.endswith(("credential.trusted", "credential_valid")) for c in codes)
    return "trusted" if trusted and not untrusted else "valid"


def _verified_identities(data: Mapping[str, Any]) -> list[str]:
    """``type: name (provider)`` of an ICA credential's ``verifiedIdentities``, wherever the
    decoded assertion keeps them."""
    stack: list[Any] = [data]
    found: list[str] = []
    seen = 0
    while stack and seen < 1000:  # a bounded walk: the data comes from the file
        seen += 1
        node = stack.pop()
        if isinstance(node, dict):
            ids = node.get("verifiedIdentities")
            if isinstance(ids, list):
                for i in ids:
                    if not isinstance(i, dict):
                        continue
                    name = i.get("name") or i.get("username") or i.get("uri") or "?"
                    provider = i.get("provider")
                    pname = provider.get("name") if isinstance(provider, dict) else None
                    kind = str(i.get("type") or "identity")
                    found.append(f"{kind}: {name}" + (f" ({pname})" if pname else ""))
            stack.extend(v for v in node.values() if isinstance(v, Mapping | list))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, Mapping | list))
    return found


def _ica_issuer(data: Mapping[str, Any]) -> str | None:
    for key in ("issuer", "credential"):
        value = data.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, dict):
            inner = value.get("issuer")
            if isinstance(inner, str):
                return inner
            if isinstance(inner, dict) and isinstance(inner.get("id"), str):
                return inner["id"]
    return None


def expiry_note(not_after: str | None, stamp: TimeStamp | None, codes: Iterable[str]) -> str | None:
    """What the signer's certificate expiry means for a signature, in the words of the
    specification's rule (a trusted time-stamp inside the validity window keeps it valid);
    None when the certificate has not expired."""
    import datetime as dt

    codes = list(codes)
    until = f" on {not_after[:10]}" if not_after else ""
    if "signingCredential.expired" in codes:
        if stamp is not None and stamp.validated and not stamp.trusted:
            why = "its time-stamp's authority is not on a TSA trust list, so it cannot vouch"
            return f"the signer's certificate expired{until}, and {why} for an earlier signature"
        return (
            f"the signer's certificate expired{until}, and no trusted time-stamp shows the "
            "signature was made before"
        )
    if not not_after or stamp is None or not stamp.trusted:
        return None
    try:
        expired = dt.datetime.fromisoformat(not_after) < dt.datetime.now(dt.timezone.utc)
    except ValueError:
        return None
    if not expired:
        return None
    when = f" of {stamp.time}" if stamp.time else ""
    return (
        f"the signer's certificate expired{until}; the trusted time-stamp{when}, inside its "
        "validity, keeps the signature valid"
    )
