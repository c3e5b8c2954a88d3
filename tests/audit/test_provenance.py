"""Each provenance state, produced by signing real files with certificates made by the tests."""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest
from PIL import Image

from deepaudit.audit.provenance import audit_file, inspect_provenance
from deepaudit.c2pa_layer import (
    load_demo_ca,
    load_signing_credentials,
    make_demo_credentials,
    sign_file,
)
from deepaudit.media import write_image, write_video


def _flip(path, marker: bytes, offset: int, out, *, last: bool = False):
    data = bytearray(path.read_bytes())
    # last: the JPEG start-of-scan comes after the manifest, whose random signature bytes can
    # hold the same two bytes; entropy-coded data cannot (0xFF is stuffed there)
    i = (data.rindex(marker) if last else data.index(marker)) + offset
    data[i] ^= 0x5A
    out.write_bytes(bytes(data))
    return out


@pytest.fixture
def signed(tmp_path, photo, clip, creds):
    """A signed PNG, JPEG and MP4, each declaring trainedAlgorithmicMedia."""
    files = {
        "png": write_image(tmp_path / "a.png", photo),
        "jpeg": write_image(tmp_path / "a.jpg", photo),
        "mp4": write_video(tmp_path / "a.mp4", clip, fps=8).path,
    }
    return {
        k: sign_file(v, creds["signing"], tmp_path / f"signed.{v.suffix[1:]}")
        for k, v in files.items()
    }


@pytest.mark.parametrize("fmt", ["png", "jpeg", "mp4"])
def test_trusted_with_anchor_untrusted_without(signed, creds, fmt):
    trusted = inspect_provenance(signed[fmt], trust_anchors=creds["ca"])
    assert trusted.state == "trusted", trusted.reason
    assert trusted.ai_declaration == "ai-generated"
    assert trusted.conclusion == "declares AI-generated (verified: trusted signer)"
    assert trusted.signer.organization == "Test Org"
    assert trusted.signer.issuer == "Test Org root CA"
    assert trusted.signer.not_after and trusted.signer.not_before
    assert trusted.digital_source_types == ["trainedAlgorithmicMedia"]
    assert trusted.manifest.claim_generator.startswith("deepaudit/")
    untrusted = inspect_provenance(signed[fmt])
    assert untrusted.state == "untrusted"
    assert "signingCredential.untrusted" in untrusted.codes
    assert "not verified" in untrusted.conclusion


def test_pixel_tampering_is_invalid(signed, creds, tmp_path):
    png = _flip(signed["png"], b"IDAT", 40, tmp_path / "t.png")
    rec = inspect_provenance(png, trust_anchors=creds["ca"])
    assert rec.state == "invalid"
    assert "assertion.dataHash.mismatch" in rec.codes
    assert "do not rely" in rec.conclusion
    jpg = _flip(signed["jpeg"], b"\xff\xda", 200, tmp_path / "t.jpg", last=True)
    assert "assertion.dataHash.mismatch" in inspect_provenance(jpg).codes
    mp4 = _flip(signed["mp4"], b"mdat", 64, tmp_path / "t.mp4")
    rec = inspect_provenance(mp4)
    assert rec.state == "invalid" and "assertion.bmffHash.mismatch" in rec.codes


def test_edited_assertion_is_invalid(signed, tmp_path):
    data = (
        signed["png"]
        .read_bytes()
        .replace(b"trainedAlgorithmicMedia", b"digitalCaptureXXXXXXXXX", 1)
    )
    (tmp_path / "e.png").write_bytes(data)
    rec = inspect_provenance(tmp_path / "e.png")
    assert rec.state == "invalid"
    assert "assertion.hashedURI.mismatch" in rec.codes


def test_resaving_strips_the_manifest(signed, tmp_path):
    Image.open(signed["png"]).save(tmp_path / "r.png")
    rec = inspect_provenance(tmp_path / "r.png")
    assert rec.state == "absent" and rec.ai_declaration == "none"


def test_corrupt_manifest_bytes_are_malformed(signed, tmp_path):
    data = bytearray(signed["png"].read_bytes())
    i = data.index(b"caBX")
    for off in (40, 200):
        bad = bytearray(data)
        bad[i + off] ^= 0xFF
        (tmp_path / f"c{off}.png").write_bytes(bytes(bad))
        rec = inspect_provenance(tmp_path / f"c{off}.png")
        assert rec.state == "malformed", (off, rec.reason)
        assert "cannot be read" in rec.reason
    (tmp_path / "cut.png").write_bytes(bytes(data[: i + 300]))
    assert inspect_provenance(tmp_path / "cut.png").state == "malformed"


def test_manifest_pasted_onto_another_file_is_invalid(signed, tmp_path, photo):
    data = signed["png"].read_bytes()
    j = data.index(b"caBX") - 4
    (length,) = struct.unpack(">I", data[j : j + 4])
    chunk = data[j : j + 12 + length]
    other = write_image(tmp_path / "o.png", photo[::-1].copy()).read_bytes()
    (tmp_path / "pasted.png").write_bytes(other[:33] + chunk + other[33:])
    rec = inspect_provenance(tmp_path / "pasted.png")
    assert rec.state == "invalid" and "assertion.dataHash.mismatch" in rec.codes


def test_remote_manifest_is_not_fetched(tmp_path, photo, creds):
    src = write_image(tmp_path / "a.png", photo)
    out = sign_file(src, creds["signing"], tmp_path / "r.png", remote_url="http://192.0.2.1/m.c2pa")
    rec = inspect_provenance(out)
    assert rec.state == "remote"
    assert rec.remote_url == "http://192.0.2.1/m.c2pa"
    assert "not fetched" in rec.reason


def test_sidecar_manifest_is_read(tmp_path, photo, creds):
    src = write_image(tmp_path / "a.png", photo)
    out = sign_file(src, creds["signing"], tmp_path / "s.png", sidecar=True)
    rec = inspect_provenance(out, trust_anchors=creds["ca"])
    assert rec.state == "trusted" and rec.sidecar and rec.embedded is False


@pytest.mark.slow  # waits ~3 s of real time for the certificate to expire
def test_expired_certificate_without_timestamp(tmp_path, photo):
    import datetime as dt

    base = make_demo_credentials(tmp_path / "ca")
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    short = make_demo_credentials(
        tmp_path / "short",
        ca=load_demo_ca(tmp_path / "ca"),
        not_before=start,
        valid_days=1 + 2 / 86400,
    )
    cred = load_signing_credentials(short["chain"], short["key"])
    out = sign_file(write_image(tmp_path / "a.png", photo), cred, tmp_path / "x.png")
    time.sleep(max(0.0, cred.not_after.timestamp() - time.time()) + 1.1)
    rec = inspect_provenance(out, trust_anchors=base["ca"])
    assert rec.state == "invalid"
    assert "signingCredential.expired" in rec.codes


def test_ingredient_chain_and_declarations(tmp_path, photo, creds):
    gen = sign_file(write_image(tmp_path / "g.png", photo), creds["signing"], tmp_path / "gen.png")
    edit = sign_file(
        write_image(tmp_path / "e.png", photo[:, ::-1].copy()),
        creds["signing"],
        tmp_path / "edit.png",
        parent=gen,
        digital_source_type="digitalCreation",
    )
    rec = inspect_provenance(edit, trust_anchors=creds["ca"])
    assert rec.state == "trusted"
    assert [a.action for a in rec.manifest.actions] == ["c2pa.opened", "c2pa.edited"]
    (ing,) = rec.ingredients
    assert ing.title == "gen.png" and ing.relationship == "parentOf"
    assert ing.digital_source_types == ["trainedAlgorithmicMedia"]
    # validated when the edit was signed, by a signer without our trust list: signature
    # valid, trust unknown then
    assert ing.state == "untrusted"
    # The edit itself declares no AI, but its ingredient does: the result contains AI content.
    assert rec.ai_declaration == "ai-edited"
    capture = sign_file(
        write_image(tmp_path / "c.png", photo),
        creds["signing"],
        tmp_path / "cap.png",
        digital_source_type="digitalCapture",
    )
    assert inspect_provenance(capture).ai_declaration == "capture"
    js = rec.to_json()
    for key in (
        "path",
        "state",
        "codes",
        "signer",
        "digital_source_types",
        "ai_declaration",
        "ingredients",
    ):
        assert key in js
    assert js["ingredients"][0]["title"] == "gen.png"


def test_hostile_inputs_end_in_a_state(tmp_path):
    inner = b""
    for _ in range(1000):
        inner = struct.pack(">I", 8 + len(inner)) + b"moov" + inner
    (tmp_path / "deep.mp4").write_bytes(struct.pack(">I", 16) + b"ftypisom" + b"\0" * 4 + inner)
    riff = b"RIFF" + struct.pack("<I", 0xFFFFFFF0) + b"WEBPVP8X" + struct.pack("<I", 0xFFFFFFF0)
    (tmp_path / "bomb.webp").write_bytes(riff)
    (tmp_path / "x.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"></svg>')
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    states = {p.name: inspect_provenance(p).state for p in sorted(tmp_path.iterdir())}
    # damaged containers without a manifest store are broken files, not tampered provenance
    assert states["deep.mp4"] == "absent"
    assert "could not parse" in inspect_provenance(tmp_path / "deep.mp4").reason
    assert states["bomb.webp"] == "absent"
    assert states["x.svg"] == "absent"
    assert states["empty.png"] == "absent"
    assert states["text.jpg"] == "absent"
    for p in tmp_path.iterdir():
        rec = inspect_provenance(p)
        assert rec.reason and rec.conclusion


def test_audit_file_combines_c2pa_metadata_and_watermark(tmp_path, creds):
    from deepaudit.audit.watermark import embed_watermark

    rng = np.random.default_rng(0)
    img = embed_watermark((rng.random((128, 128, 3)) * 255).astype(np.uint8), "sdxl")
    path = write_image(tmp_path / "w.png", img)
    signed_path = sign_file(path, creds["signing"], tmp_path / "ws.png")
    out = audit_file(signed_path, trust_anchors=creds["ca"])
    assert out["state"] == "trusted"
    assert out["watermark"]["detected"] and out["watermark"]["scheme"] == "sdxl"
    assert out["metadata"]["signals"] == []
    plain = audit_file(write_image(tmp_path / "p.png", img[::-1].copy()))
    assert plain["state"] == "absent" and not plain["watermark"]["detected"]
