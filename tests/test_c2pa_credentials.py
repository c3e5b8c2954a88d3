"""Time-stamps and CAWG identity assertions, on files the tests sign with their own
certificates, a real RFC 3161 time-stamping authority on 127.0.0.1 (tests/tsa.py) and c2pa's
CAWG X.509 identity signer."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from typer.testing import CliRunner

from deepaudit.audit.provenance import inspect_provenance
from deepaudit.c2pa_layer import (
    build_manifest,
    load_signing_credentials,
    make_demo_credentials,
    sign_file,
)
from deepaudit.cli.app import app
from deepaudit.media import write_image
from tests.tsa import TimeStampAuthority


def _stand_in_lists(folder, signing_ca, tsa_root):
    """Stand-ins for the shipped C2PA Trust List and TSA Trust List, in force through
    $DEEPAUDIT_TRUST_DIR."""
    folder.mkdir()
    for stem, pem, name in (
        ("C2PA-TRUST-LIST", signing_ca, "Stand-in Trust List"),
        ("C2PA-TSA-TRUST-LIST", tsa_root, "Stand-in TSA Trust List"),
    ):
        (folder / f"{stem}.pem").write_bytes(pem.read_bytes())
        info = {"SchemeName": [{"value": name}], "ListIssueDateTime": "2026-11-01T00:00:00Z"}
        (folder / f"{stem}.json").write_text(
            json.dumps({"LoTE": {"ListAndSchemeInformation": info}})
        )
    return folder


@pytest.fixture
def tsa(tmp_path):
    return TimeStampAuthority(tmp_path / "tsa")


@pytest.fixture
def lists(tmp_path, creds, tsa, monkeypatch):
    folder = _stand_in_lists(tmp_path / "lists", creds["ca"], tsa.root_pem)
    monkeypatch.setenv("DEEPAUDIT_TRUST_DIR", str(folder))
    return folder


def test_the_time_stamp_and_its_authority_are_shown(lists, tsa, tmp_path, photo, creds):
    src = write_image(tmp_path / "p.png", photo)
    with tsa.serve() as url:
        signed = sign_file(src, creds["signing"], tmp_path / "s.png", tsa_url=url)
    assert tsa.requests == 1
    rec = inspect_provenance(signed)
    stamp = rec.manifest.time_stamp
    assert rec.state == "trusted"
    assert (stamp.authority, stamp.authority_issuer) == ("Test TSA (Test TSA Org)", "Test TSA Root")
    assert (stamp.validated, stamp.trusted) == (True, True)
    assert stamp.trust_list == "Stand-in TSA Trust List of 2026-11-01"
    assert abs(dt.datetime.fromisoformat(stamp.time) - dt.datetime.now(dt.timezone.utc)) < (
        dt.timedelta(minutes=5)
    )
    assert rec.to_json()["time_stamp"]["label"].endswith(
        "by Test TSA (Test TSA Org) (trusted via Stand-in TSA Trust List of 2026-11-01)"
    )
    # without the TSA list the token still validates, but nothing vouches for its authority
    bare = inspect_provenance(signed, trust_anchors=creds["ca"], default_trust=False)
    assert (bare.state, bare.manifest.time_stamp.trusted) == ("trusted", False)
    assert "timeStamp.untrusted" in bare.manifest.time_stamp.codes
    unstamped = sign_file(src, creds["signing"], tmp_path / "u.png")
    assert inspect_provenance(unstamped).to_json()["time_stamp"] is None


@pytest.mark.slow  # waits ~6 s for a certificate to expire
def test_a_trusted_time_stamp_keeps_a_signature_valid_after_its_certificate_expires(
    lists, tsa, tmp_path, photo, creds
):
    """C2PA §14.5: with a trusted time-stamp the signing certificate must have been valid at
    the time-stamp; without one, now."""
    from deepaudit.c2pa_layer import load_demo_ca

    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    lifetime = 5  # seconds: long enough to sign twice, short enough to wait for
    short = make_demo_credentials(
        tmp_path / "short",
        organization="Test Org",
        not_before=now - dt.timedelta(minutes=1),
        valid_days=(60 + lifetime) / 86400,
        ca=load_demo_ca(creds["ca"].parent),
        name="short-lived",
    )
    cred = load_signing_credentials(short["chain"], short["key"])
    src = write_image(tmp_path / "p.png", photo)
    with tsa.serve() as url:
        stamped = sign_file(src, cred, tmp_path / "stamped.png", tsa_url=url)
    plain = sign_file(src, cred, tmp_path / "plain.png")
    time.sleep(max(0.0, cred.not_after.timestamp() - time.time() + 1.5))
    assert cred.not_after < dt.datetime.now(dt.timezone.utc)  # expired now

    ok = inspect_provenance(stamped)
    assert ok.state == "trusted"
    assert ok.manifest.time_stamp.trusted
    assert "signingCredential.expired" not in ok.codes
    assert "the signer's certificate expired" in ok.reason
    assert "inside its validity, keeps the signature valid" in ok.reason

    bad = inspect_provenance(plain)
    assert bad.state == "invalid"
    assert "signingCredential.expired" in bad.codes
    assert "no trusted time-stamp shows the signature was made before" in bad.reason

    # a time-stamp whose authority is on no TSA list does not vouch for the time
    untrusted_tsa = inspect_provenance(stamped, trust_anchors=creds["ca"], default_trust=False)
    assert untrusted_tsa.state == "invalid"
    assert "signingCredential.expired" in untrusted_tsa.codes
    assert "not on a TSA trust list" in untrusted_tsa.reason


def _sign_with_identity(src, dest, claim: dict, identity: dict) -> None:
    """Sign with c2pa's settings signer wrapped in its CAWG X.509 identity signer.

    c2pa-rs adds the ``cawg.identity`` assertion only for a signer it builds from the
    ``signer`` and ``cawg_x509_signer`` settings; c2pa-python 0.38 has no public switch to
    sign with such a context signer (``Context.has_signer`` only tracks ``Signer`` objects),
    so the test sets the Builder's flag itself.
    """
    import c2pa

    def local(paths):
        return {
            "alg": "es256",
            "sign_cert": paths["chain"].read_text(),
            "private_key": paths["key"].read_text(),
        }

    settings = {
        "verify": {"remote_manifest_fetch": False},
        "builder": {"thumbnail": {"enabled": False}},
        "signer": {"local": local(claim)},
        "cawg_x509_signer": {"local": local(identity)},
    }
    builder = c2pa.Builder(
        build_manifest(title=dest.name), context=c2pa.Context.from_dict(settings)
    )
    builder._has_context_signer = True
    with open(src, "rb") as s, open(dest, "w+b") as d:
        builder.sign("image/png", s, d)


def test_a_cawg_identity_names_its_actor_with_its_own_validity(lists, tmp_path, photo, creds):
    jane = make_demo_credentials(tmp_path / "jane", organization="Newsroom", name="Jane Doe")
    signed = tmp_path / "s.png"
    _sign_with_identity(write_image(tmp_path / "p.png", photo), signed, creds, jane)

    rec = inspect_provenance(signed)
    # the claim signer is on the (stand-in) list; an unknown identity CA must not change that
    assert rec.state == "trusted"
    assert not any(c.startswith("cawg.") for c in rec.codes)
    (who,) = rec.manifest.identities
    assert (who.label, who.credential_type) == ("cawg.identity", "X.509 certificate")
    assert (who.named_actor, who.issuer) == ("Newsroom Jane Doe", "Newsroom")
    assert who.validity == "valid"  # the signature holds; nobody vouches for the credential
    assert who.failures == ("cawg.x509.credential.untrusted",)
    assert {"cawg.identity.well-formed", "cawg.x509.signature.validated"} <= set(who.codes)
    assert "c2pa.hash.data" in who.referenced_assertions

    vouched = inspect_provenance(signed, trust_anchors=jane["ca"])
    (who,) = vouched.manifest.identities
    assert (vouched.state, who.validity) == ("trusted", "trusted")
    assert "cawg.x509.credential.trusted" in who.codes
    row = vouched.to_json()["identities"][0]
    assert row["summary"] == "Newsroom Jane Doe (X.509 certificate, issued by Newsroom): trusted"

    out = CliRunner().invoke(
        app,
        ["provenance", str(signed), "--trust-anchors", str(jane["ca"]), "--no-watermark"],
    )
    assert out.exit_code == 0, out.output
    assert "identity: Newsroom Jane Doe (X.509 certificate, issued by Newsroom): trusted" in (
        out.output
    )


def test_a_certificate_copying_another_signers_subject_and_serial_shows_its_own_issuer(
    tmp_path, photo
):
    """json() names a signer's certificate by subject and serial number, which any CA can
    copy: what a record says of the issuer and validity must come from this file's own
    certificate, whatever was read before (a per-process cache keyed that way gave the copy
    the first certificate's issuer and validity)."""

    def signer(tag, ca_org, days):  # "Newsroom signer" (Newsroom), serial 4242
        return make_demo_credentials(
            tmp_path / tag,
            organization="Newsroom",
            ca_organization=ca_org,
            serial_number=4242,
            valid_days=days,
        )

    good, copy = signer("good", "Trusted Root Org", 365), signer("copy", "Other Root Org", 2)
    src = write_image(tmp_path / "p.png", photo)
    a = sign_file(src, load_signing_credentials(good["chain"], good["key"]), tmp_path / "a.png")
    b = sign_file(src, load_signing_credentials(copy["chain"], copy["key"]), tmp_path / "b.png")
    first = inspect_provenance(a, trust_anchors=good["ca"], default_trust=False)
    second = inspect_provenance(b, trust_anchors=good["ca"], default_trust=False)
    assert (first.state, first.signer.issuer) == ("trusted", "Trusted Root Org root CA")
    assert (second.state, second.signer.issuer) == ("untrusted", "Other Root Org root CA")
    assert second.signer.not_after < first.signer.not_after
    assert second.signer.serial_number == first.signer.serial_number  # the copied serial
