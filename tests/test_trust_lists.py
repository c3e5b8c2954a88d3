"""The official C2PA trust lists: shipped, dated, used by default, replaceable, switchable off."""

from __future__ import annotations

import json
import shutil

import pytest

from deepaudit.audit.provenance import inspect_provenance
from deepaudit.audit.scan import run_scan
from deepaudit.c2pa_layer import make_context, sign_file
from deepaudit.errors import DeepauditError
from deepaudit.media import write_image
from deepaudit.trust_lists import SHIPPED_DIR, install_trust_lists, load_trust_lists


def test_the_shipped_snapshot_parses_and_is_dated(monkeypatch, tmp_path):
    monkeypatch.delenv("DEEPAUDIT_TRUST_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))  # no user update installed
    signing, tsa = load_trust_lists()
    assert (signing.kind, signing.name, signing.location) == (
        "signing",
        "C2PA Trust List",
        "shipped",
    )
    assert signing.issued == "2026-08-05T00:11:39Z" and signing.certificates == 30
    assert (tsa.name, tsa.certificates) == ("C2PA TSA Trust List", 22)
    sums = dict(
        reversed(line.split()) for line in (SHIPPED_DIR / "SHA256SUMS").read_text().splitlines()
    )
    assert sums["C2PA-TRUST-LIST.pem"] == signing.sha256
    assert "Attribution 4.0" in (SHIPPED_DIR / "LICENSE").read_text()
    assert (
        "CC BY 4.0" in (SHIPPED_DIR / "SOURCE.md").read_text()
        or "Attribution" in (SHIPPED_DIR / "SOURCE.md").read_text()
    )
    make_context()  # c2pa accepts the official list as anchors


@pytest.fixture
def stand_in(tmp_path, creds, monkeypatch):
    """A trust list made by the tests (their CA), in force through $DEEPAUDIT_TRUST_DIR."""
    folder = tmp_path / "lists"
    folder.mkdir()
    shutil.copy(creds["ca"], folder / "C2PA-TRUST-LIST.pem")
    record = {
        "LoTE": {
            "ListAndSchemeInformation": {
                "SchemeName": [{"lang": "en", "value": "Stand-in Trust List"}],
                "ListIssueDateTime": "2026-11-01T00:00:00Z",
            }
        }
    }
    (folder / "C2PA-TRUST-LIST.json").write_text(json.dumps(record))
    monkeypatch.setenv("DEEPAUDIT_TRUST_DIR", str(folder))
    return folder


def test_the_list_in_force_is_trusted_by_default(stand_in, tmp_path, photo, creds):
    signed = sign_file(write_image(tmp_path / "p.png", photo), creds["signing"], tmp_path / "s.png")
    rec = inspect_provenance(signed)  # no --trust-anchors needed
    assert rec.state == "trusted"
    assert rec.trusted_by.to_json() == {
        "name": "Stand-in Trust List",
        "issued": "2026-11-01T00:00:00Z",
        "file": str(stand_in / "C2PA-TRUST-LIST.pem"),
        "legacy": False,
    }
    assert rec.reason.endswith("trusted via Stand-in Trust List of 2026-11-01")
    off = make_context(default_trust=False)
    assert inspect_provenance(signed, context=off).state == "untrusted"
    mine = inspect_provenance(signed, trust_anchors=creds["ca"], default_trust=False)
    assert (mine.state, mine.trusted_by.name) == ("trusted", "your trust anchors")
    box = tmp_path / "box"
    box.mkdir()
    shutil.copy(signed, box / "s.png")
    run_scan([box], tmp_path / "on", workers=0, report=False)
    run_scan([box], tmp_path / "off", workers=0, report=False, default_trust=False)
    on, off_row = (json.loads((tmp_path / d / "results.jsonl").read_text()) for d in ("on", "off"))
    assert (on["provenance"]["state"], on["verdict"]) == ("trusted", "synthetic")
    assert "trusted via Stand-in Trust List of 2026-11-01" in on["reasons"][0]["text"]
    assert (off_row["provenance"]["state"], off_row["verdict"]) == ("untrusted", "likely-synthetic")
    (listed,) = load_trust_lists()
    assert (listed.name, listed.issued, listed.location) == (
        "Stand-in Trust List",
        "2026-11-01T00:00:00Z",
        "env",
    )


def test_update_installs_a_snapshot_only_when_it_parses(stand_in, tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPAUDIT_TRUST_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "C2PA-TRUST-LIST.pem").write_text("-----BEGIN CERTIFICATE-----\nnope\n")
    with pytest.raises(DeepauditError, match="not a PEM list of certificates"):
        install_trust_lists(bad)
    assert load_trust_lists()[0].location == "shipped"  # nothing was installed
    (installed,) = install_trust_lists(stand_in)
    assert (installed.name, installed.location) == ("Stand-in Trust List", "user")
    assert load_trust_lists()[0].pem.parent == tmp_path / "data" / "deepaudit" / "trust"


def test_a_legacy_list_trusts_its_signers_and_says_so(tmp_path, photo, creds):
    signed = sign_file(write_image(tmp_path / "p.png", photo), creds["signing"], tmp_path / "s.png")
    old = tmp_path / "interim-trust-list.pem"
    shutil.copy(creds["ca"], old)
    rec = inspect_provenance(signed, default_trust=False, legacy_anchors=old)
    assert rec.state == "trusted" and rec.trusted_by.legacy
    assert rec.trusted_by.name == "legacy list interim-trust-list.pem"
    assert "signer trusted only by a legacy list" in rec.conclusion
    # a current source wins: the same CA among the user's anchors is not reported as legacy
    both = inspect_provenance(
        signed, trust_anchors=creds["ca"], default_trust=False, legacy_anchors=old
    )
    assert both.trusted_by.name == "your trust anchors" and not both.trusted_by.legacy
    box = tmp_path / "box"
    box.mkdir()
    shutil.copy(signed, box / "s.png")
    run_scan(
        [box], tmp_path / "scan", workers=0, report=False, default_trust=False, legacy_anchors=old
    )
    row = json.loads((tmp_path / "scan" / "results.jsonl").read_text())
    assert (row["provenance"]["state"], row["verdict"]) == ("trusted", "synthetic")
    assert (
        "trusted (legacy list) via legacy list interim-trust-list.pem" in row["reasons"][0]["text"]
    )
