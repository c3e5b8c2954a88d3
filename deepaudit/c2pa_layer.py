"""A thin layer over c2pa-python: signers from PEM files, signing files, reading manifest stores.

Everything here is offline unless a caller asks otherwise: c2pa's own default
(``verify.remote_manifest_fetch = true``) makes a Reader download a manifest from a URL
written in the file, so every :class:`~c2pa.Context` built here turns it off, and thumbnails
(≈6× the file size of a small signed image) are off too.

Reading never raises for what a file contains: :func:`read_file` returns a
:class:`C2paRead` whose ``status`` is ``"ok"``, ``"absent"``, ``"remote"`` or ``"error"``;
`audit.provenance` turns it into a verdict a user understands. Signing errors (bad key,
certificate not valid for signing, unsupported format) raise :class:`CredentialError`
with the file and the reason.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import functools
import json
import mimetypes
import os
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from deepaudit import __version__
from deepaudit.errors import DeepauditError, DependencyError
from deepaudit.iptc import uri_of

if TYPE_CHECKING:
    from deepaudit.media import LoadedFile

__all__ = [
    "SIDECAR_SUFFIX",
    "C2paRead",
    "CredentialError",
    "SigningCredentials",
    "asset_of_sidecar",
    "build_manifest",
    "load_demo_ca",
    "load_signing_credentials",
    "make_context",
    "make_demo_credentials",
    "read_file",
    "read_trust_anchors",
    "sidecar_path",
    "sign_file",
]


# Formats c2pa-rs can embed a manifest in, by our sniffed format name → MIME type.
_SIGNABLE_MIME = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "tiff": "image/tiff",
    "gif": "image/gif",
    "avif": "image/avif",
    "heic": "image/heic",
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "avi": "video/x-msvideo",
}

SIDECAR_SUFFIX = ".c2pa"

ReadStatus = Literal["ok", "absent", "remote", "unsupported", "unreadable", "error"]


class CredentialError(DeepauditError):
    """Signing material or a signing request is unusable; names the file and the reason."""


def _c2pa():
    try:
        import c2pa
    except ImportError as exc:  # pragma: no cover - c2pa-python is a hard dependency
        raise DependencyError(f"c2pa-python is not installed: {exc}") from exc
    return c2pa


# --------------------------------------------------------------------------- contexts


def read_trust_anchors(path: str | os.PathLike[str]) -> str:
    """Concatenate the PEM certificates of a file, or of every ``.pem``/``.crt`` in a folder.

    Raises :class:`CredentialError` when nothing usable is there.
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(
            f for f in p.iterdir() if f.suffix.lower() in {".pem", ".crt", ".cer"} and f.is_file()
        )
    elif p.is_file():
        files = [p]
    else:
        raise CredentialError(f"{p}: trust anchors not found (give a PEM file or a folder)")
    # cached by the files' identity: callers may ask once per scanned file
    try:
        stamps = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    except OSError as exc:
        raise CredentialError(f"{p}: cannot read trust anchors: {exc}") from exc
    return _read_anchor_files(str(p), stamps)


@functools.lru_cache(maxsize=16)
def _read_anchor_files(where: str, stamps: tuple[tuple[str, int, int], ...]) -> str:
    chunks = []
    for name, _, _ in stamps:
        f = Path(name)
        try:
            text = f.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise CredentialError(f"{f}: cannot read trust anchors: {exc}") from exc
        if "-----BEGIN CERTIFICATE-----" in text:
            chunks.append(text.strip() + "\n")
    if not chunks:
        raise CredentialError(
            f"{where}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)"
        )
    return "".join(chunks)


def _context(
    anchors_pem: str | None,
    allow_network: bool,
    tsa: tuple[str, str | None] = ("", None),
    identity_pem: str | None = None,
):
    # keyed by process: a Context made before a fork is not valid in the child
    return _context_in_process(anchors_pem, allow_network, tsa, identity_pem, os.getpid())


@functools.lru_cache(maxsize=16)
def _context_in_process(
    anchors_pem: str | None,
    allow_network: bool,
    tsa: tuple[str, str | None],
    identity_pem: str | None,
    pid: int,
):
    c2pa = _c2pa()
    settings: dict[str, Any] = {
        "verify": {"remote_manifest_fetch": bool(allow_network), "ocsp_fetch": False},
        "builder": {"thumbnail": {"enabled": False}},
    }
    trust: dict[str, Any] = {}
    if anchors_pem:
        trust["user_anchors"] = anchors_pem
    # Kind-scoped anchors: a TSA list vouches for time-stamps only and an identity anchor for
    # CAWG identity credentials only, never for claim signers.
    scoped = []
    if tsa[0].strip():
        scoped.append({"trust_anchors": tsa[0], "trust_kind": "tsa", "trust_uri": tsa[1]})
    if identity_pem:
        scoped.append(
            {"trust_anchors": identity_pem, "trust_kind": "cawg", "trust_uri": "your anchors"}
        )
    if scoped:
        trust["anchors"] = scoped
    if trust:
        settings["trust"] = trust
    return c2pa.Context.from_dict(settings)


def make_context(
    trust_anchors: str | os.PathLike[str] | None = None,
    *,
    default_trust: bool = True,
    legacy_anchors: str | os.PathLike[str] | None = None,
    allow_network: bool = False,
):
    """A c2pa ``Context``: the official C2PA Trust List in force (unless ``default_trust`` is
    False; see :mod:`deepaudit.trust_lists`) plus the user's trust anchors (PEM file/folder);
    no network, no thumbnails. Contexts are cached by anchor content and process (a Context
    made before a fork is not valid in the child), so calling this per file costs a few
    ``stat`` calls. ``legacy_anchors``: a superseded list (e.g. the interim trust list frozen on
    2026-01-01) whose signers are trusted but reported as ``trusted (legacy list)``.

    Time-stamps are checked against the C2PA TSA Trust List in force (with
    ``default_trust``), and CAWG identity credentials against the user's trust anchors (see
    :mod:`deepaudit.c2pa_credentials`).
    """
    from deepaudit.trust_lists import default_signing_anchors, default_tsa_anchors

    parts = [default_signing_anchors() if default_trust else ""]
    mine = read_trust_anchors(trust_anchors) if trust_anchors is not None else None
    if mine is not None:
        parts.append(mine)
    if legacy_anchors is not None:
        parts.append(read_trust_anchors(legacy_anchors))
    pem = "".join(p.strip() + "\n" for p in parts if p.strip()) or None
    tsa = default_tsa_anchors() if default_trust else ("", None)
    return _context(pem, allow_network, tsa, mine)


# --------------------------------------------------------------------------- signing


@dataclass(frozen=True)
class SigningCredentials:
    """A certificate chain (end-entity first, no root) and its private key, as PEM."""

    chain_pem: bytes
    key_pem: bytes
    alg: str  # es256 | es384 | es512 | ps256 | ed25519
    subject: str
    not_after: _dt.datetime
    source: str = ""

    def signer(self, tsa_url: str | None = None):
        """A c2pa ``Signer``; with ``tsa_url`` it asks that RFC 3161 time-stamping authority
        for a time-stamp of each signature (over the network: the only request signing
        makes), so the signature stays valid after the certificate expires."""
        c2pa = _c2pa()
        ta = tsa_url.encode() if tsa_url else None
        info = c2pa.C2paSignerInfo(self.alg, self.chain_pem, self.key_pem, ta)
        return c2pa.Signer.from_info(info)


def _alg_for_key(key: Any, where: str) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey):
        curves = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name not in curves:
            raise CredentialError(f"{where}: EC curve {key.curve.name} is not supported by C2PA")
        return curves[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise CredentialError(f"{where}: key type {type(key).__name__} is not supported by C2PA")


def load_signing_credentials(
    cert_chain: str | os.PathLike[str], key: str | os.PathLike[str], *, alg: str | None = None
) -> SigningCredentials:
    """Load and check a PEM chain + key; the algorithm follows from the key unless given.

    Checks what c2pa-rs would reject later with a less helpful message: the key must match
    the first certificate, which must not be a CA and must be valid now.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert_path, key_path = Path(cert_chain), Path(key)
    try:
        chain_pem = cert_path.read_bytes()
    except OSError as exc:
        raise CredentialError(f"{cert_path}: cannot read certificate chain: {exc}") from exc
    try:
        key_pem = key_path.read_bytes()
    except OSError as exc:
        raise CredentialError(f"{key_path}: cannot read private key: {exc}") from exc
    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise CredentialError(f"{cert_path}: not a PEM certificate chain ({exc})") from exc
    try:
        private_key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialError(
            f"{key_path}: not an unencrypted PEM private key ({str(exc).splitlines()[0]})"
        ) from exc
    leaf = certs[0]
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(
        serialization.Encoding.DER, pub
    ) != private_key.public_key().public_bytes(serialization.Encoding.DER, pub):
        raise CredentialError(
            f"{key_path}: private key does not match the certificate in {cert_path}"
        )
    try:
        basic = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
        if basic.ca:
            raise CredentialError(
                f"{cert_path}: the first certificate is a CA; C2PA needs the end-entity "
                "certificate first, then intermediates"
            )
    except x509.ExtensionNotFound:
        pass
    now = _dt.datetime.now(_dt.timezone.utc)
    if not (leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc):
        raise CredentialError(
            f"{cert_path}: certificate not valid now (valid {leaf.not_valid_before_utc:%Y-%m-%d} "
            f"to {leaf.not_valid_after_utc:%Y-%m-%d})"
        )
    detected = _alg_for_key(private_key, str(key_path))
    return SigningCredentials(
        chain_pem=chain_pem,
        key_pem=key_pem,
        alg=(alg or detected).lower(),
        subject=leaf.subject.rfc4514_string(),
        not_after=leaf.not_valid_after_utc,
        source=str(cert_path),
    )


def _dst_uri(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return uri_of(value)
    except ValueError as exc:
        raise CredentialError(str(exc)) from None


def build_manifest(
    *,
    title: str,
    digital_source_type: str | None = "trainedAlgorithmicMedia",
    action: str = "c2pa.created",
    software_agent: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    assertions: Sequence[Mapping[str, Any]] = (),
    parent_label: str | None = None,
) -> dict[str, Any]:
    """The manifest definition deepaudit signs: one action with its digital source type.

    With ``parent_label`` (an edit of an ingredient) the action list starts with
    ``c2pa.opened`` of that ingredient, as C2PA requires, followed by ``action``.
    """
    act: dict[str, Any] = {"action": action}
    dst = _dst_uri(digital_source_type)
    if dst:
        act["digitalSourceType"] = dst
    act["softwareAgent"] = {"name": software_agent or f"deepaudit/{__version__}"}
    if parameters:
        act["parameters"] = dict(parameters)
    actions = [act]
    if parent_label is not None:
        opened = {"action": "c2pa.opened", "parameters": {"ingredientIds": [parent_label]}}
        actions = [opened, act]
    return {
        "claim_generator_info": [{"name": "deepaudit", "version": __version__}],
        "title": title,
        # deepaudit made the asset and knows every action: the actions are a created
        # assertion and complete, so the Asset Rubrics find no ambiguous actions in them
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {"actions": actions, "allActionsIncluded": True},
                "created": True,
            },
            *assertions,
        ],
    }


def _mime_for(path: Path) -> str:
    from deepaudit.media import sniff_format

    guess = sniff_format(path)
    mime = _SIGNABLE_MIME.get(guess.format or "")
    if mime is None:
        raise CredentialError(f"{path}: cannot embed a C2PA manifest in {guess.description}")
    return mime


def sign_file(
    source: str | os.PathLike[str],
    credentials: SigningCredentials,
    dest: str | os.PathLike[str] | None = None,
    *,
    digital_source_type: str | None = "trainedAlgorithmicMedia",
    action: str = "c2pa.created",
    title: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    parent: str | os.PathLike[str] | None = None,
    sidecar: bool = False,
    remote_url: str | None = None,
    manifest: Mapping[str, Any] | None = None,
    tsa_url: str | None = None,
) -> Path:
    """Sign ``source`` into ``dest`` (default: in place), atomically; returns the signed path.

    ``parent`` adds that file as a ``parentOf`` ingredient (with its own manifest, if any)
    and the action refers to it, as an edit should. ``sidecar`` writes the manifest store
    to ``<dest>.c2pa`` beside the file and leaves the media bytes as they were;
    ``remote_url`` additionally records where the store will be published. ``tsa_url``: an
    RFC 3161 time-stamping authority to time-stamp the signature (see
    :meth:`SigningCredentials.signer`).
    """
    c2pa = _c2pa()
    src = Path(source)
    out = Path(dest) if dest is not None else src
    mime = _mime_for(src)
    if manifest is None:
        manifest = build_manifest(
            title=title or out.name,
            digital_source_type=digital_source_type,
            action="c2pa.edited" if parent is not None and action == "c2pa.created" else action,
            parameters=parameters,
            parent_label="parent" if parent is not None else None,
        )
    ctx = _context(None, False)
    try:
        builder = c2pa.Builder(dict(manifest), context=ctx)
        if parent is not None:
            parent_path = Path(parent)
            with parent_path.open("rb") as fh:
                builder.add_ingredient(
                    {"title": parent_path.name, "relationship": "parentOf", "label": "parent"},
                    _mime_for(parent_path),
                    fh,
                )
        if sidecar or remote_url:
            builder.set_no_embed()
        if remote_url:
            builder.set_remote_url(remote_url)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "w+b") as dst_fh, src.open("rb") as src_fh:
                manifest_bytes = builder.sign(credentials.signer(tsa_url), mime, src_fh, dst_fh)
            os.replace(tmp, out)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except c2pa.C2paError as exc:
        raise CredentialError(f"{src}: signing failed: {_one_line(exc)}") from exc
    except OSError as exc:
        raise CredentialError(f"{src}: signing failed: {exc}") from exc
    if sidecar:
        side = sidecar_path(out)
        tmp_side = side.with_name(f".{side.name}.part")
        tmp_side.write_bytes(manifest_bytes)
        os.replace(tmp_side, side)
    return out


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:500] or type(exc).__name__


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Where a sidecar manifest store of ``path`` lives: the same name with ``.c2pa``."""
    p = Path(path)
    return p.with_suffix(SIDECAR_SUFFIX)


def asset_of_sidecar(sidecar: str | os.PathLike[str]) -> Path | None:
    """The asset a ``.c2pa`` sidecar belongs to (same folder and stem, another suffix), whose
    manifest read includes the sidecar; None for a sidecar without its asset."""
    import glob

    side = Path(sidecar)
    try:
        siblings = sorted(side.parent.glob(glob.escape(side.stem) + ".*"))
    except OSError:
        return None
    for s in siblings:
        if s.suffix.lower() != SIDECAR_SUFFIX and s.is_file():
            return s
    return None


# --------------------------------------------------------------------------- reading


@dataclass
class C2paRead:
    """What c2pa-rs found in one file, before any interpretation."""

    path: str
    status: ReadStatus
    # Reader.json()'s shape (what the interpretation reads of it: store_from_crjson)
    store: dict[str, Any] | None = None
    certificates: dict[str, dict[str, Any]] = field(default_factory=dict)  # label → cert info
    crjson: dict[str, Any] | None = None  # Reader.crjson(): certificates, what rubrics read
    embedded: bool | None = None
    sidecar: str | None = None
    remote_url: str | None = None
    error: str | None = None  # "<Class>: <message>" when status is "error" or "remote"
    sidecar_ignored: str | None = None  # a sidecar beside an asset that holds its own store


def read_file(
    path: str | os.PathLike[str],
    *,
    context=None,
    trust_anchors: str | os.PathLike[str] | None = None,
    use_sidecar: bool = True,
    source: LoadedFile | None = None,
) -> C2paRead:
    """Read and validate the manifest store of ``path`` (embedded, or a sidecar ``.c2pa``).

    Never raises for the file's content; unreadable files are ``status="error"``.
    ``source``: the file already read by ``deepaudit.media.load_file`` (not read again).
    """
    c2pa = _c2pa()
    p = Path(path)
    ctx = context if context is not None else make_context(trust_anchors)
    from deepaudit.media import open_media

    fh = None  # the file, open once, when the caller holds no copy of it
    try:
        if source is None:  # sniff the first bytes; c2pa then streams the file itself
            source, fh = open_media(p)
        guess = source.guess
        mime = _SIGNABLE_MIME.get(guess.format or "") or mimetypes.guess_type(p.name)[0]
        if mime is None or not _reader_supports(mime):
            return C2paRead(str(p), "unsupported", error=f"C2PA cannot read {guess.description}")
        # the bytes the caller holds (a scan's one read), else the open file: c2pa pulls
        # small reads into one buffer, cheaper than a fresh whole-file copy per file
        # (benchmarks/provenance.py: 0.04-0.06 of the ratio to the bare reader)
        if fh is None:
            try:
                fh = source.stream()
            except DeepauditError as exc:  # a large file that went away since it was sniffed
                return C2paRead(str(p), "unreadable", error=getattr(exc, "reason", str(exc)))
        # the asset's own store first; its sidecar only where the asset holds none (or only a
        # remote reference), in c2pa-rs's order (``Reader::from_file``)
        found = _read_store(c2pa, p, mime, fh, None, ctx)
        side = sidecar_path(p) if use_sidecar else None
        if side is None or side == p:
            return found
        if found.status in ("ok", "error"):  # the asset holds a store of its own: it wins
            if _is_regular_file(side):
                found.sidecar_ignored = str(side)
            return found
        if found.status not in ("absent", "remote"):  # the asset itself could not be read
            return found
        try:
            manifest_data = _read_sidecar(side)
        except OSError as exc:
            return C2paRead(str(p), "unreadable", sidecar=str(side), error=f"OSError: {exc}")
        if manifest_data is None:
            return found
        fh.seek(0)
        found = _read_store(c2pa, p, mime, fh, manifest_data, ctx)
        if found.status == "ok":
            found.sidecar = str(side)
        return found
    except OSError as exc:
        return C2paRead(str(p), "unreadable", error=f"{type(exc).__name__}: {_one_line(exc)}")
    except DeepauditError as exc:  # not media at all: nothing C2PA could be attached to
        reason = getattr(exc, "reason", str(exc))
        status: ReadStatus = "unreadable" if "permission" in reason.lower() else "unsupported"
        return C2paRead(str(p), status, error=reason)
    finally:
        if fh is not None:
            fh.close()


# what an open of a sidecar path can meet when there is no sidecar file to read
_NO_SIDECAR = frozenset(
    {errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP, errno.ENXIO, errno.EISDIR}
)


def _read_sidecar(side: Path) -> bytes | None:
    """The bytes of ``side`` when it is a regular file; None when there is none, or it is a
    FIFO, socket, device or folder (opened without blocking, never read), or no file can
    have its name. OSError otherwise (e.g. permission denied)."""
    try:
        fd = os.open(side, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except ValueError:  # a NUL byte
        return None
    except OSError as exc:
        if exc.errno in _NO_SIDECAR:
            return None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with open(fd, "rb", closefd=False) as sf:
            return sf.read()
    finally:
        os.close(fd)


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _read_store(c2pa, p: Path, mime: str, fh, manifest_data: bytes | None, ctx) -> C2paRead:
    """One c2pa read of the file ``fh``: its embedded store, or ``manifest_data`` (a sidecar)
    checked against it."""
    try:
        reader = c2pa.Reader.try_create(mime, fh, manifest_data, context=ctx)
        if reader is None:
            return C2paRead(str(p), "absent")
        with reader:
            # crJSON is what the rubrics are defined on, and the certificates' issuer and
            # validity are there only: json() names a signer's certificate by subject and
            # serial number, which another CA can copy, so nothing kept from another file
            # can stand in for it. json() is rendered too only where crJSON leaves out
            # something the interpretation reads (store_from_crjson says where).
            cr = _crjson(reader)
            store = store_from_crjson(cr) if cr is not None else None
            if store is None:
                store = json.loads(reader.json())
            certificates = _certificates(cr)
            embedded = reader.is_embedded()
            # only a manifest fetched from elsewhere has a remote URL to report
            remote = None if embedded else reader.get_remote_url()
    except c2pa.C2paError as exc:
        message = _one_line(exc)
        if message.startswith("Remote:"):
            url = message.split(" url ", 1)[1].strip() if " url " in message else None
            return C2paRead(str(p), "remote", remote_url=url, error=message)
        if "ManifestNotFound" in type(exc).__name__:
            return C2paRead(str(p), "absent")
        if "NotSupported" in type(exc).__name__:
            return C2paRead(str(p), "unsupported", error=message)
        kind = type(exc).__name__.lstrip("_").removeprefix("C2pa") or "C2paError"
        if manifest_data is None and not _has_manifest_marker(p):
            # c2pa could not parse the *asset* (truncated, corrupt) and nothing in it looks
            # like a manifest store: that is a broken file without provenance, not tampering
            return C2paRead(str(p), "absent", error=f"{kind}: {message}")
        return C2paRead(str(p), "error", error=f"{kind}: {message}")
    except OSError as exc:
        return C2paRead(str(p), "unreadable", error=f"{type(exc).__name__}: {_one_line(exc)}")
    except DeepauditError as exc:  # a large file that went away while c2pa read it
        return C2paRead(str(p), "unreadable", error=getattr(exc, "reason", str(exc)))
    except ValueError as exc:
        return C2paRead(str(p), "error", error=f"{type(exc).__name__}: {_one_line(exc)}")
    return C2paRead(
        str(p),
        "ok",
        store=store,
        certificates=certificates,
        crjson=cr,
        embedded=embedded,
        remote_url=remote,
    )


def _has_manifest_marker(path: Path) -> bool:
    """Whether the file holds JUMBF/C2PA box labels (read in 1 MiB blocks, overlap kept)."""
    tail = b""
    try:
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                chunk = tail + block
                if b"jumb" in chunk or b"c2pa" in chunk or b"caBX" in chunk:
                    return True
                tail = chunk[-8:]
    except OSError:
        return False
    return False


@functools.cache
def _reader_mimes() -> frozenset[str]:
    return frozenset(_c2pa().Reader.get_supported_mime_types())


def _reader_supports(mime: str) -> bool:
    return mime in _reader_mimes()


def _crjson(reader) -> dict[str, Any] | None:
    """The store in C2PA's crJSON form (what the Asset Rubrics evaluate), or None."""
    try:
        cr = json.loads(reader.crjson())
    except Exception:  # older/newer c2pa without crjson, or a store it cannot render
        return None
    return cr if isinstance(cr, dict) else None


_MANIFEST_URI = "self#jumbf=/c2pa/"


def store_from_crjson(cr: dict[str, Any]) -> dict[str, Any] | None:
    """What :func:`audit.provenance.interpret` reads of ``Reader.json()``, built from the crJSON
    of the same read, so that c2pa renders the store once; None where crJSON does not say it
    all, and the caller renders json().

    The fields: the active manifest (crJSON's first: c2pa-rs puts it there), its validation
    results and its ingredients' deltas, the validation state (as c2pa-rs 0.91's json() gives
    it: a failure other than ``signingCredential.untrusted`` is Invalid; any failure or no
    ``signingCredential.trusted`` is Valid, else Trusted), and per manifest
    the title, claim generator, signing time (the time-stamp's), the actions assertions and
    the ingredients (title, format, relationship, manifest label, recorded validation
    results), each in the claim's order (created, then gathered assertions), as json() lists
    them.

    None, so json() decides, for: a v1 claim, an update manifest, redactions, a v1/v2
    ingredient, a CAWG identity assertion (json() decodes its credential; crJSON keeps it
    raw), a signature whose certificate crJSON could not describe (json() still names the
    signer), failing deltas or failures in a manifest other than the active one (crJSON
    files a delta under the manifest holding the ingredient; json() gathers the whole
    tree's), a
    failure other than an untrusted signer or the asset's hard binding (``_ASSET_ONLY``: the
    store may be damaged anywhere, and json() leaves out what it cannot render), and anything
    not shaped as expected. On every C2PA read of the test suite,
    ``tests/conftest.py`` checks that the record and the validation state built from this
    equal json()'s."""
    ms = cr.get("manifests")
    if not isinstance(ms, list) or not ms or not all(isinstance(m, dict) for m in ms):
        return None
    manifests: dict[str, Any] = {}
    for i, m in enumerate(ms):
        label, claim, found = m.get("label"), m.get("claim.v2"), m.get("assertions")
        if not isinstance(label, str) or not isinstance(claim, dict) or not isinstance(found, dict):
            return None
        if m.get("isUpdateManifest") or claim.get("redacted_assertions"):
            return None
        signature = m.get("signature")
        if not isinstance(signature, dict) or not isinstance(
            signature.get("certificateInfo"), dict
        ):
            return None  # crJSON could not name the certificate; json() still says who signed
        if i and (_delta_failures(m) or _codes(m.get("validationResults"), "failure")):
            return None  # json() gathers the failures of the whole tree, not only the active's
        keys = [
            r["url"].rsplit("/", 1)[-1]
            for part in ("created_assertions", "gathered_assertions")
            for r in _list(claim.get(part))
            if isinstance(r, dict) and isinstance(r.get("url"), str)
        ]
        keys = [k for k in dict.fromkeys(keys) if k in found] + [k for k in found if k not in keys]
        actions, ingredients = [], []
        for key in keys:
            data, base = found[key], key.split("__", 1)[0]
            if base.startswith("cawg.identity"):
                return None
            if base.startswith("c2pa.actions"):
                actions.append({"label": key, "data": data})
            elif base.startswith("c2pa.ingredient"):
                if base != "c2pa.ingredient.v3" or not isinstance(data, dict):
                    return None
                ingredient = {
                    "title": data.get("dc:title"),
                    "format": data.get("dc:format"),
                    "relationship": data.get("relationship"),
                }
                ref = data.get("activeManifest")
                if ref is not None:
                    url = ref.get("url") if isinstance(ref, dict) else None
                    if not isinstance(url, str) or not url.startswith(_MANIFEST_URI):
                        return None
                    ingredient["active_manifest"] = url[len(_MANIFEST_URI) :].split("/", 1)[0]
                if "validationResults" in data:
                    ingredient["validation_results"] = data["validationResults"]
                ingredients.append(ingredient)
        info = claim.get("claim_generator_info")
        stamp = signature.get("timeStampInfo")
        time = stamp.get("timestamp") if isinstance(stamp, dict) else None
        manifests[label] = {
            "title": claim.get("dc:title"),
            "claim_generator_info": [info] if isinstance(info, dict) else info,
            "assertions": actions,
            "ingredients": ingredients,
            "signature_info": {"time": time} if time else {},
        }
    active = ms[0]
    results = active.get("validationResults")
    deltas = active.get("ingredientDeltas")
    if not isinstance(results, dict) or not isinstance(deltas or [], list):
        return None
    if not all(isinstance(results.get(k) or [], list) for k in _RESULT_KINDS):
        return None
    own = {k: results[k] for k in _RESULT_KINDS if k in results}
    failures = _codes(own, "failure") + _delta_failures(active)
    validation: dict[str, Any] = {"activeManifest": own}
    if deltas is not None:
        validation["ingredientDeltas"] = deltas
    if [c for c in failures if c != "signingCredential.untrusted" and c not in _ASSET_ONLY]:
        # a store that fails its own checks may be damaged anywhere, and json() leaves out
        # what it cannot render (a broken active manifest, a damaged ingredient): json() decides
        return None
    # c2pa-rs 0.91's rule, as its json() reports it: an untrusted signer alone is Valid
    if [c for c in failures if c in _ASSET_ONLY]:
        state = "Invalid"
    elif failures or "signingCredential.trusted" not in _codes(own, "success"):
        state = "Valid"
    else:
        state = "Trusted"
    return {
        "active_manifest": active["label"],
        "manifests": manifests,
        "validation_results": validation,
        "validation_state": state,
    }


_RESULT_KINDS = ("success", "informational", "failure")
# Failures of the hard binding alone: the asset's bytes changed, while the store itself passed
# every check (its claim signature, every hashed URI), so crJSON and json() render the same
# intact store. Any other failure sends the store to json().
_ASSET_ONLY = frozenset(
    {
        "assertion.dataHash.mismatch",
        "assertion.bmffHash.mismatch",
        "assertion.boxesHash.mismatch",
        "assertion.collectionHash.mismatch",
    }
)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _delta_failures(manifest: dict[str, Any]) -> list[str]:
    """The failure codes of a crJSON manifest's ingredient deltas."""
    return [
        c
        for d in _list(manifest.get("ingredientDeltas"))
        if isinstance(d, dict)
        for c in _codes(d.get("validationDeltas"), "failure")
    ]


def _codes(results: Any, kind: str) -> list[str]:
    """The status codes of one kind in a crJSON results block (anything else: none)."""
    entries = results.get(kind) if isinstance(results, dict) else None
    if not isinstance(entries, list):
        return []
    return [e["code"] for e in entries if isinstance(e, dict) and isinstance(e.get("code"), str)]


def _certificates(cr: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Certificate subject/issuer/validity per manifest label (from the crJSON view)."""
    out: dict[str, dict[str, Any]] = {}
    for m in _list((cr or {}).get("manifests")):
        sig = m.get("signature") if isinstance(m, dict) else None
        if not isinstance(sig, dict) or not isinstance(m.get("label"), str):
            continue
        info = sig.get("certificateInfo") if isinstance(sig.get("certificateInfo"), dict) else {}
        validity = info.get("validity") if isinstance(info.get("validity"), dict) else {}
        out[m["label"]] = {
            "algorithm": sig.get("algorithm"),
            "subject": info["subject"] if isinstance(info.get("subject"), dict) else {},
            "issuer": info["issuer"] if isinstance(info.get("issuer"), dict) else {},
            "serial_number": info.get("serialNumber"),
            "not_before": validity.get("notBefore"),
            "not_after": validity.get("notAfter"),
            "timestamp": sig.get("timeStampInfo") or sig.get("timestamp"),
        }
    return out


# --------------------------------------------------------------------------- demo/test certs


def make_demo_credentials(
    out_dir: str | os.PathLike[str],
    *,
    organization: str = "deepaudit demo",
    valid_days: float = 365,
    not_before: _dt.datetime | None = None,
    key_type: Literal["ec", "rsa", "ed25519"] = "ec",
    ca: tuple[Any, Any] | None = None,
    name: str = "signer",
    ca_organization: str | None = None,
    serial_number: int | None = None,
) -> dict[str, Path]:
    """Write a throwaway CA and an end-entity signing certificate (for demos and tests).

    Returns paths ``ca`` (the trust anchor), ``chain`` (end-entity PEM) and ``key``.
    ``ca_organization``: the CA's own organisation (default ``organization``);
    ``serial_number``: the signer certificate's (default random), e.g. for a test where two
    CAs issue the same subject and serial.
    The certificate has what c2pa-rs requires of a signer: v3, not a CA, digitalSignature,
    an Authority Key Identifier and the emailProtection extended key usage. Never use
    these for anything but demonstrations: the CA key is written beside them.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.timezone.utc)
    start = not_before or now - _dt.timedelta(days=1)

    def _name(cn: str, org: str = organization) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            ]
        )

    ca_org = ca_organization or organization

    def _usage(ca_: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=ca_,
            crl_sign=ca_,
            encipher_only=False,
            decipher_only=False,
        )

    if ca is None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"{ca_org} root CA", ca_org))
            .issuer_name(_name(f"{ca_org} root CA", ca_org))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(days=3650))
            .not_valid_after(now + _dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_usage(True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
            .sign(ca_key, hashes.SHA256())
        )
    else:
        ca_key, ca_cert = ca
    if key_type == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
    elif key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif key_type == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unknown key_type {key_type!r}")
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{organization} {name}"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(serial_number or x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + _dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = {
        "ca": out / "ca.pem",
        "ca_key": out / "ca.key.pem",
        "chain": out / f"{name}.pem",
        "key": out / f"{name}.key.pem",
    }
    paths["ca"].write_bytes(ca_cert.public_bytes(pem))
    paths["ca_key"].write_bytes(
        ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    paths["chain"].write_bytes(cert.public_bytes(pem))
    paths["key"].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def load_demo_ca(out_dir: str | os.PathLike[str]) -> tuple[Any, Any]:
    """The (key, certificate) of a CA written by :func:`make_demo_credentials`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    out = Path(out_dir)
    key = serialization.load_pem_private_key((out / "ca.key.pem").read_bytes(), password=None)
    cert = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    return key, cert
