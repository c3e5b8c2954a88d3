"""The official C2PA trust lists: shipped with the package, dated, used by default.

The C2PA Conformance Program publishes the C2PA Trust List (the CAs whose certificates may
sign claims) and the C2PA TSA Trust List (time-stamping authorities), under CC BY 4.0. A
snapshot of both ships in ``deepaudit/trust/`` with its source, checksums and licence
(``SOURCE.md``), so a signature from a camera, phone or AI service that chains to the list is
``trusted`` out of the box, offline. A newer snapshot installed with ``deepaudit trust-list
update`` (into the user's data folder) takes precedence; ``$DEEPAUDIT_TRUST_DIR`` points at
another folder (the tests use a stand-in list made by themselves).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from deepaudit.errors import DeepauditError

__all__ = [
    "LIST_FILES",
    "SHIPPED_DIR",
    "TrustList",
    "TrustSource",
    "default_signing_anchors",
    "default_tsa_anchors",
    "install_trust_lists",
    "load_trust_lists",
    "trust_dir",
    "trust_source",
    "user_trust_dir",
]

SHIPPED_DIR = Path(__file__).with_name("trust")
# list kind -> file stem (``.pem`` certificates, ``.json`` the list's own record with dates)
LIST_FILES: dict[str, str] = {"signing": "C2PA-TRUST-LIST", "tsa": "C2PA-TSA-TRUST-LIST"}


@dataclass(frozen=True)
class TrustList:
    """One trust list as installed: what it is, when it was issued, what it holds."""

    kind: Literal["signing", "tsa"]
    name: str  # the list's own scheme name, e.g. "C2PA Trust List"
    pem: Path
    issued: str | None  # ListIssueDateTime of the list's JSON record
    next_update: str | None
    certificates: int
    earliest_expiry: str | None  # the first of its certificates to expire
    latest_expiry: str | None
    sha256: str  # of the PEM file
    location: Literal["shipped", "user", "env"]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "file": str(self.pem),
            "issued": self.issued,
            "next_update": self.next_update,
            "certificates": self.certificates,
            "earliest_expiry": self.earliest_expiry,
            "latest_expiry": self.latest_expiry,
            "sha256": self.sha256,
            "location": self.location,
        }


def user_trust_dir() -> Path:
    """Where ``trust-list update`` installs snapshots (XDG data folder)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "deepaudit" / "trust"


def trust_dir() -> tuple[Path, Literal["shipped", "user", "env"]]:
    """The folder whose lists are in force: ``$DEEPAUDIT_TRUST_DIR``, else an installed
    update, else the snapshot shipped with the package.

    Decided once per process and environment (a scan asks for every trusted file): an update
    installed by :func:`install_trust_lists` in this process takes effect at once, one
    installed by another process from this process's next start."""
    env = os.environ
    return _trust_dir(env.get("DEEPAUDIT_TRUST_DIR"), env.get("XDG_DATA_HOME"), env.get("HOME"))


@functools.lru_cache(maxsize=8)
def _trust_dir(
    env: str | None, xdg: str | None, home: str | None
) -> tuple[Path, Literal["shipped", "user", "env"]]:
    if env:
        return Path(env), "env"
    user = user_trust_dir()
    if (user / f"{LIST_FILES['signing']}.pem").is_file():
        return user, "user"
    return SHIPPED_DIR, "shipped"


def load_trust_lists(folder: str | os.PathLike[str] | None = None) -> list[TrustList]:
    """The lists in ``folder`` (default: :func:`trust_dir`, the ones in force), each parsed
    and dated."""
    if folder is None:
        root, where = trust_dir()
    else:
        root = Path(folder)
        where = "shipped" if root == SHIPPED_DIR else "user" if root == user_trust_dir() else "env"
    out = []
    for kind, stem in LIST_FILES.items():
        pem = root / f"{stem}.pem"
        if pem.is_file():
            out.append(_read_list(kind, pem, where))  # type: ignore[arg-type]
    if not out:
        raise DeepauditError(f"{root}: no trust list ({LIST_FILES['signing']}.pem) found")
    return out


def default_signing_anchors() -> str:
    """PEM of the signing trust list in force ("" when none is installed)."""
    root, _ = trust_dir()
    pem = root / f"{LIST_FILES['signing']}.pem"
    try:
        st = pem.stat()
    except OSError:
        return ""
    return _pem_text(str(pem), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _pem_text(path: str, mtime_ns: int, size: int) -> str:
    return Path(path).read_text(encoding="ascii")


def default_tsa_anchors() -> tuple[str, str | None]:
    """PEM of the TSA trust list in force and its label ("C2PA TSA Trust List of
    2026-..."), which c2pa repeats when a time-stamp's authority chains to it; ("", None)
    when none is installed."""
    root, where = trust_dir()
    pem = root / f"{LIST_FILES['tsa']}.pem"
    try:
        st = pem.stat()
    except OSError:
        return "", None
    return _tsa_list(str(pem), st.st_mtime_ns, st.st_size, where)


@functools.lru_cache(maxsize=8)
def _tsa_list(path: str, mtime_ns: int, size: int, where: str) -> tuple[str, str | None]:
    try:
        listed = _read_list("tsa", Path(path), where)
    except DeepauditError:  # an unreadable record: still the list, just undated
        return _pem_text(path, mtime_ns, size), LIST_FILES["tsa"].replace("-", " ").title()
    label = f"{listed.name} of {listed.issued[:10]}" if listed.issued else listed.name
    return _pem_text(path, mtime_ns, size), label


def install_trust_lists(source: str | os.PathLike[str]) -> list[TrustList]:
    """Check a snapshot folder (or one ``.pem`` file of a list) and install it as the user's
    lists; nothing is installed when any file fails to parse."""
    src = Path(source)
    files = sorted(src.iterdir()) if src.is_dir() else [src]
    wanted = {f"{stem}{ext}" for stem in LIST_FILES.values() for ext in (".pem", ".json")}
    chosen = [f for f in files if f.name in wanted]
    if not any(f.suffix == ".pem" for f in chosen):
        raise DeepauditError(f"{src}: no trust list found (expected {', '.join(sorted(wanted))})")
    for f in chosen:  # parse everything before touching the installed lists
        kind = next(k for k, stem in LIST_FILES.items() if f.stem == stem)
        if f.suffix == ".pem":
            _read_list(kind, f, "user")  # type: ignore[arg-type]
        else:
            _list_record(f)
    dest = user_trust_dir()
    dest.mkdir(parents=True, exist_ok=True)
    for f in chosen:
        tmp = dest / f".{f.name}.part"
        shutil.copyfile(f, tmp)
        os.replace(tmp, dest / f.name)
    _trust_dir.cache_clear()  # in force from now on in this process too
    _installs[0] += 1
    _stamps.clear()
    return load_trust_lists(dest)


def _read_list(kind: Literal["signing", "tsa"], pem: Path, where: Any) -> TrustList:
    from cryptography import x509

    data = pem.read_bytes()
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise DeepauditError(f"{pem}: not a PEM list of certificates ({exc})") from None
    expiries = sorted(c.not_valid_after_utc.isoformat() for c in certs)
    record = _list_record(pem.with_suffix(".json"))
    info = record.get("ListAndSchemeInformation") or {}
    names = [n.get("value") for n in info.get("SchemeName") or [] if isinstance(n, dict)]
    return TrustList(
        kind=kind,
        name=(names[0] if names else None) or LIST_FILES[kind].replace("-", " ").title(),
        pem=pem,
        issued=info.get("ListIssueDateTime"),
        next_update=info.get("NextUpdate"),
        certificates=len(certs),
        earliest_expiry=expiries[0] if expiries else None,
        latest_expiry=expiries[-1] if expiries else None,
        sha256=hashlib.sha256(data).hexdigest(),
        location=where,
    )


def _list_record(path: Path) -> dict[str, Any]:
    """The ``LoTE`` record of a list's JSON file ({} when the list came as PEM only)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DeepauditError(f"{path}: not a trust list record ({exc})") from None
    record = data.get("LoTE") if isinstance(data, dict) else None
    if not isinstance(record, dict):
        raise DeepauditError(f"{path}: not a trust list record (no 'LoTE' object)")
    return record


@dataclass(frozen=True)
class TrustSource:
    """Where the certificate a signer chains to comes from: a trust list (with its date) or
    the user's own trust anchors."""

    name: str
    issued: str | None = None
    file: str | None = None
    legacy: bool = False  # a superseded list the user still accepts (reported as such)

    def label(self) -> str:
        return f"{self.name} of {self.issued[:10]}" if self.issued else self.name

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "issued": self.issued, "file": self.file, "legacy": self.legacy}


def trust_source(
    issuer_cn: str | None,
    issuer_org: str | None,
    *,
    anchors_pem: str | None = None,
    anchors_file: str | None = None,
    default_trust: bool = True,
    legacy_pem: str | None = None,
    legacy_file: str | None = None,
) -> TrustSource | None:
    """Which list or anchors file holds the certificate that issued a trusted signer (matched
    by the issuer's common name and organisation); None when no anchor matches, e.g. when
    the signer's issuer is an intermediate that the list's root signed. ``anchors_pem``: the
    user's trust anchors (``c2pa_layer.read_trust_anchors``), read from ``anchors_file``;
    ``legacy_pem``: a superseded list's, consulted last (a signer on a current list is never
    reported as legacy)."""
    if not issuer_cn and not issuer_org:
        return None
    root, _ = trust_dir()
    # a replaced list (an update, from this process or another) is followed by its identity
    stamp = _list_stamp(_list_pem(root, "signing"))
    index = _anchor_index(
        anchors_pem, anchors_file, default_trust, root, stamp, legacy_pem, legacy_file
    )
    for key, source in index:
        if key == (issuer_cn, issuer_org) or (issuer_org is None and key[0] == issuer_cn):
            return source
    return None


# How long a list file's identity (inode, mtime, size) is taken as current: a scan names the
# source of every trusted file, and a stat each time was 1% of a provenance read
_STAMP_TTL_S = 1.0
_stamps: dict[str, tuple[float, tuple[int, int, int]]] = {}
_installs = [0]  # bumped by install_trust_lists: a look begun before it is not kept


@functools.lru_cache(maxsize=32)
def _list_pem(root: Path, kind: str) -> str:
    return str(root / f"{LIST_FILES[kind]}.pem")


def _list_stamp(path: str) -> tuple[int, int, int]:
    """``path``'s (inode, mtime, size), zeros when missing, looked at again after
    :data:`_STAMP_TTL_S`."""
    now = time.monotonic()
    seen = _stamps.get(path)
    if seen is not None and now - seen[0] < _STAMP_TTL_S:
        return seen[1]
    installs = _installs[0]
    try:
        st = os.stat(path)
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = (0, 0, 0)
    if installs == _installs[0]:
        _stamps[path] = (now, stamp)
    return stamp


@functools.lru_cache(maxsize=16)
def _anchor_index(
    anchors_pem: str | None,
    anchors_file: str | None,
    default_trust: bool,
    root: Path,
    stamp: tuple[int, int, int],
    legacy_pem: str | None = None,
    legacy_file: str | None = None,
) -> tuple[tuple[tuple[str | None, str | None], TrustSource], ...]:
    """(CN, O) of every anchor certificate -> its source; the user's anchors first, a legacy
    list last."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    def names(pem: bytes) -> list[tuple[str | None, str | None]]:
        out = []
        for cert in x509.load_pem_x509_certificates(pem):
            cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
            out.append((cn[0].value if cn else None, org[0].value if org else None))
        return out

    index: list[tuple[tuple[str | None, str | None], TrustSource]] = []
    if anchors_pem:
        mine = TrustSource("your trust anchors", None, anchors_file)
        index += [(k, mine) for k in names(anchors_pem.encode())]
    if default_trust:
        for t in load_trust_lists(root):
            if t.kind == "signing":
                src = TrustSource(t.name, t.issued, str(t.pem))
                index += [(k, src) for k in names(t.pem.read_bytes())]
    if legacy_pem:
        name = f"legacy list {Path(legacy_file).name}" if legacy_file else "legacy list"
        old = TrustSource(name, None, legacy_file, legacy=True)
        index += [(k, old) for k in names(legacy_pem.encode())]
    return tuple(index)
