"""A real RFC 3161 time-stamping authority for the tests, on 127.0.0.1, made with
``cryptography`` and a few lines of DER.

c2pa-rs asks a TSA for a token over HTTP while it signs (``tsa_url``); nothing offline can
answer it, so the tests run this one. It signs a ``TSTInfo`` (RFC 3161) in a CMS
``SignedData`` (RFC 5652) with the ESS ``signingCertificateV2`` attribute, the way public
TSAs do, and its clock can be set (``gen_time``) so a test can stamp a signature with a time
inside a certificate's validity window after that window has closed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import itertools
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# --------------------------------------------------------------------------- DER


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _len(len(body)) + body


def seq(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def set_of(*parts: bytes) -> bytes:
    return tlv(0x31, b"".join(sorted(parts)))  # DER sorts SET OF members


def integer(n: int) -> bytes:
    body = n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True)
    return tlv(0x02, body)


def octets(b: bytes) -> bytes:
    return tlv(0x04, b)


def oid(dotted: str) -> bytes:
    nums = [int(x) for x in dotted.split(".")]
    out = bytearray([40 * nums[0] + nums[1]])
    for n in nums[2:]:
        chunk = [n & 0x7F]
        n >>= 7
        while n:
            chunk.append(0x80 | (n & 0x7F))
            n >>= 7
        out += bytes(reversed(chunk))
    return tlv(0x06, bytes(out))


def gen_time(t: dt.datetime) -> bytes:
    return tlv(0x18, t.astimezone(dt.timezone.utc).strftime("%Y%m%d%H%M%SZ").encode())


def read_tlv(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """(tag, body, end) of the DER element at ``pos``."""
    tag = data[pos]
    n = data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[pos : pos + k], "big")
        pos += k
    return tag, data[pos : pos + n], pos + n


def children(body: bytes) -> list[bytes]:
    """The DER elements (whole, tag included) inside a constructed body."""
    out, pos = [], 0
    while pos < len(body):
        _, _, end = read_tlv(body, pos)
        out.append(body[pos:end])
        pos = end
    return out


SHA256 = seq(oid("2.16.840.1.101.3.4.2.1"))
ECDSA_SHA256 = seq(oid("1.2.840.10045.4.3.2"))
ID_SIGNED_DATA = "1.2.840.113549.1.7.2"
ID_TST_INFO = "1.2.840.113549.1.9.16.1.4"


# --------------------------------------------------------------------------- the TSA


class TimeStampAuthority:
    """An RFC 3161 TSA: a root CA and a time-stamping certificate signed by it."""

    def __init__(self, folder: Path, *, name: str = "Test TSA") -> None:
        now = dt.datetime.now(dt.timezone.utc)
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Root")])
        self.root = (
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(self.root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=3650))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.root_key.public_key()), False
            )
            .sign(self.root_key, hashes.SHA256())
        )
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, name),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"{name} Org"),
                    ]
                )
            )
            .issuer_name(root_name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=3000))
            .not_valid_after(now + dt.timedelta(days=3000))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
            )
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.root_key.public_key()),
                False,
            )
            .sign(self.root_key, hashes.SHA256())
        )
        folder.mkdir(parents=True, exist_ok=True)
        self.root_pem = folder / "tsa-root.pem"
        self.root_pem.write_bytes(self.root.public_bytes(serialization.Encoding.PEM))
        self.gen_time: dt.datetime | None = None  # None: the real clock
        self.requests = 0
        self._serial = itertools.count(1)

    def respond(self, request: bytes) -> bytes:
        """A granted ``TimeStampResp`` for a DER ``TimeStampReq``."""
        _, req, _ = read_tlv(request)
        fields = children(req)
        imprint = fields[1]  # version, messageImprint, [reqPolicy], [nonce], [certReq]
        nonce = next((f for f in fields[2:] if f[0] == 0x02), b"")
        when = self.gen_time or dt.datetime.now(dt.timezone.utc)
        tst_info = seq(
            integer(1),
            oid("1.3.6.1.4.1.99999.1"),  # a policy id of our own
            imprint,
            integer(next(self._serial)),
            gen_time(when),
            nonce,
        )
        cert_der = self.cert.public_bytes(serialization.Encoding.DER)
        ess = seq(seq(seq(octets(hashlib.sha256(cert_der).digest()))))
        attrs = [
            seq(oid("1.2.840.113549.1.9.3"), set_of(oid(ID_TST_INFO))),
            seq(oid("1.2.840.113549.1.9.4"), set_of(octets(hashlib.sha256(tst_info).digest()))),
            seq(oid("1.2.840.113549.1.9.16.2.47"), set_of(ess)),
        ]
        signed_attrs = set_of(*attrs)
        signature = self.key.sign(signed_attrs, ec.ECDSA(hashes.SHA256()))
        issuer = self.root.subject.public_bytes()
        signer_info = seq(
            integer(1),
            seq(issuer, integer(self.cert.serial_number)),
            SHA256,
            b"\xa0" + signed_attrs[1:],  # [0] IMPLICIT: the SET's body under a context tag
            ECDSA_SHA256,
            octets(signature),
        )
        root_der = self.root.public_bytes(serialization.Encoding.DER)
        signed_data = seq(
            integer(3),
            set_of(SHA256),
            seq(oid(ID_TST_INFO), tlv(0xA0, octets(tst_info))),
            tlv(0xA0, cert_der + root_der),
            set_of(signer_info),
        )
        token = seq(oid(ID_SIGNED_DATA), tlv(0xA0, signed_data))
        self.requests += 1
        return seq(seq(integer(0)), token)

    def serve(self) -> _Server:
        return _Server(self)


class _Server:
    """The TSA over HTTP on a free local port, for as long as the ``with`` block lasts."""

    def __init__(self, tsa: TimeStampAuthority) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                reply = tsa.respond(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/tsa"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return self.url

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
