"""The deepaudit command line: help without torch, JSON output, exit codes."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deepaudit.cli import app
from deepaudit.media import write_image

runner = CliRunner()


GROUPS = {
    "manifest": {
        "import-folder",
        "import-cnnspot",
        "import-csv",
        "import-feedback",
        "import-genimage",
        "import-synthbuster",
        "import-real-fake",
        "import-table",
        "import-prompts",
        "builtin",
        "validate",
        "split",
        "stats",
        "filter",
    },
    "generators": {"list", "train", "personalize"},
    "detectors": {"list", "kinds", "import", "info", "train", "calibrate", "evaluate"},
    "audit": {"fairness", "mitigate", "generator", "model-card", "dataset-card", "explain"},
    "trust-list": {"show", "update"},
}
ROOT = {
    "anonymize",
    "inspect",
    "metadata",
    "provenance",
    "sign",
    "demo-cert",
    "generate",
    "scan",
    "review",
    "env",
    "runs",
    "demo",
    *GROUPS,
}


def _listed_commands(help_text: str) -> set[str]:
    section = help_text.split("Commands:", 1)[1]
    return {line.split()[0] for line in section.splitlines() if line.startswith("  ")}


def test_help_of_every_group_without_importing_torch():
    """`--help` stays instant: no torch (seconds to import) behind the root or any group."""
    code = (
        "import sys\n"
        "from deepaudit.cli import main\n"
        f"for args in [[], *[[g] for g in {sorted(GROUPS)!r}], ['detectors', 'train']]:\n"
        "    sys.argv = ['deepaudit', *args, '--help']\n"
        "    try:\n        main()\n    except SystemExit as e:\n        assert e.code == 0\n"
        "    print('=' * 20)\n"
        "heavy = [m for m in ('torch', 'cv2', 'mlflow', 'diffusers', 'PIL') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout
    root, *groups, train, _ = out.stdout.split("=" * 20)
    assert "deepfake detection and provenance auditing" in root
    # train/evaluate live under `detectors`, not at the root
    assert _listed_commands(root) == ROOT
    for (name, commands), text in zip(sorted(GROUPS.items()), groups, strict=True):
        assert f"Usage: deepaudit {name} " in text
        assert _listed_commands(text) == commands
        _usage, *about = [p for p in text.split("Options:")[0].split("\n\n") if p.strip()]
        assert len(about) >= 2, f"`{name} --help` explains nothing beyond its first line"
    assert "--detector" in train and "--set" in train


def test_python_m_deepaudit_is_the_command():
    done = subprocess.run(
        [sys.executable, "-m", "deepaudit", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.startswith("deepaudit ")


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("deepaudit ")


def test_usage_error_exits_2(tmp_path):
    assert runner.invoke(app, ["inspect", str(tmp_path / "missing")]).exit_code == 2
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2
    assert runner.invoke(app, ["train", "--data", str(tmp_path)]).exit_code == 2


@pytest.fixture
def inbox(tmp_path, photo, clip):
    from deepaudit.media import write_video

    d = tmp_path / "inbox"
    write_image(d / "ok.png", photo)
    write_video(d / "clip.mp4", clip, fps=12)
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.png").write_text("not an image")
    return d


def test_inspect_json_and_strict(inbox):
    result = runner.invoke(app, ["inspect", str(inbox), "--json", "--hash"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["summary"] == {
        "files": 4,
        "images": 1,
        "videos": 1,
        "errors": 2,
        "extension_mismatches": 0,
    }
    errors = {Path(r["path"]).name: r["error"]["message"] for r in data["files"] if "error" in r}
    # one error record everywhere: the class and one line that names the file
    assert errors["empty.jpg"] == f"{inbox / 'empty.jpg'}: empty file (0 bytes)"
    assert "content is text" in errors["text.png"]
    assert runner.invoke(app, ["inspect", str(inbox), "--strict"]).exit_code == 1
    table = runner.invoke(app, ["inspect", str(inbox)])
    assert "2 unreadable" in table.stdout


def test_manifest_commands(tmp_path, photo):
    src = tmp_path / "ds"
    for i in range(6):
        write_image(src / f"{i}.png", photo[i : i + 32, :32])
    r = runner.invoke(app, ["manifest", "import-folder", str(src), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["added"] == 6
    r = runner.invoke(app, ["manifest", "split", str(src), "--ratios", "0.5,0.5,0", "--json"])
    assert r.exit_code == 0 and set(json.loads(r.stdout)["by_split"]) <= {"train", "val"}
    r = runner.invoke(app, ["manifest", "stats", str(src), "--json"])
    assert json.loads(r.stdout)["items"] == 6
    r = runner.invoke(
        app, ["manifest", "filter", str(src), "--split", "train", "--out", str(tmp_path / "tr")]
    )
    assert r.exit_code == 0 and (tmp_path / "tr" / "manifest.jsonl").exists()
    assert runner.invoke(app, ["manifest", "validate", str(tmp_path / "tr")]).exit_code == 0
    r = runner.invoke(app, ["manifest", "split", str(src), "--ratios", "1,2"])
    assert r.exit_code == 2


def test_validate_exits_1_with_line_numbers(tmp_path):
    (tmp_path / "manifest.jsonl").write_text('{"id": "x"}\n')
    r = runner.invoke(app, ["manifest", "validate", str(tmp_path), "--json"])
    assert r.exit_code == 1
    problem = json.loads(r.stdout)["problems"][0]
    assert problem["line"] == 1 and "missing required key" in problem["message"]
    r = runner.invoke(app, ["manifest", "stats", str(tmp_path)])
    assert r.exit_code == 1 and "manifest.jsonl:1:" in r.output


def test_import_csv_command(tmp_path, photo):
    write_image(tmp_path / "a.png", photo)
    (tmp_path / "t.csv").write_text("file,gender\na.png,1\n")
    r = runner.invoke(
        app,
        [
            "manifest",
            "import-csv",
            str(tmp_path / "t.csv"),
            "--path-column",
            "file",
            "--label",
            "real",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["added"] == 1
    r = runner.invoke(app, ["manifest", "import-csv", str(tmp_path / "t.csv")])
    assert r.exit_code == 2


def test_env_json():
    r = runner.invoke(app, ["env", "--json"])
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    assert data["versions"]["torch"] and data["default_device"] in ("cpu", "cuda")


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "demo"
    r = runner.invoke(app, ["demo", "--out", str(out), "--quick", "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["dataset"]["by_label"]["real"] == 96
    assert data["generation"]["generated"] > 100 and not data["generation"]["failed"]
    for name in ("spectral", "timm"):
        assert data["detectors"][name]["test"]["auc"] is not None
    scan = data["scan"]
    verdicts = scan["by_verdict"]
    assert verdicts["synthetic"] >= 1 and verdicts["needs-review"] >= 1 and verdicts["error"] == 5
    assert (
        scan["by_provenance_state"]["trusted"] >= 2 and scan["by_provenance_state"]["invalid"] == 1
    )
    rows = {
        os.path.basename(r["path"]): r
        for r in map(json.loads, (out / "scan" / "results.jsonl").read_text().splitlines())
    }
    assert rows["signed_ai.png"]["verdict"] == "synthetic"
    assert rows["tampered_ai.png"]["verdict"] == "needs-review"
    assert rows["stripped_ai.png"]["provenance"]["state"] == "absent"
    assert rows["signed_capture.png"]["provenance"]["ai_declaration"] == "capture"
    assert rows["watermarked_ai.png"]["watermark"]["detected"]
    assert rows["ai_metadata.png"]["reasons"][0]["source"] == "metadata"
    assert rows["real_clip.mp4"]["kind"] == "video"
    assert data["mode"] == "quick" and data["evaluation"]
    # the localiser, trained on the demo's inpainting set: pixel figures with CIs ...
    loc = data["localization"]
    o = loc["overall"]
    assert o["edited_images"] >= 2 and loc["dataset"]["by_label"]["synthetic"] == 15
    assert o["pixel_auc"] > 0.5 and o["f1_ci"][0] <= o["f1"] <= o["f1_ci"][1]
    assert o["iou_ci"][0] <= o["iou"] <= o["iou_ci"][1]
    assert (out / "evaluation" / "localize" / "localization.json").is_file()
    # ... and the scan maps the flagged images with it: regions, a heatmap, shown in the report
    mapped = [r for r in rows.values() if (r.get("localization") or {}).get("heatmap")]
    assert mapped and all(
        r["verdict"] in ("synthetic", "likely-synthetic", "needs-review") for r in mapped
    )
    assert all((out / "scan" / r["localization"]["heatmap"]).is_file() for r in mapped)
    assert any(name.startswith("inpainted_") for name in rows)
    edit = rows["signed_inpainted.png"]  # an inpainted crop signed as an AI edit: mapped
    assert edit["verdict"] == "synthetic" and edit["provenance"]["ai_declaration"] == "ai-edited"
    assert edit["localization"]["heatmap"] and "regions" in edit["localization"]
    assert "Where the flagged images were changed" in (out / "scan" / "report.html").read_text()
    assert (out / "scan" / "report.html").is_file() and (out / "mlflow.db").is_file()
    runs = json.loads(
        runner.invoke(
            app, ["runs", "--tracking-uri", f"sqlite:///{out / 'mlflow.db'}", "--json"]
        ).stdout
    )["runs"]
    assert {"train-detector", "train-generator"} <= {
        r["tags"].get("task", r["experiment"]) for r in runs
    } | {r["experiment"] for r in runs}
    # a second run resumes: models, data and detectors are reused, not made again
    r = runner.invoke(app, ["demo", "--out", str(out), "--quick", "--device", "cpu", "--json"])
    again = json.loads(r.stdout)
    assert again["generation"]["generated"] == 0
    assert again["dataset"]["items"] == data["dataset"]["items"]


def test_metadata_command(tmp_path, photo):
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5")
    Image.fromarray(photo).save(tmp_path / "gen.png", pnginfo=info)
    write_image(tmp_path / "plain.png", photo)
    (tmp_path / "broken.jpg").write_bytes(b"")
    r = runner.invoke(app, ["metadata", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["summary"] == {"files": 3, "declares_ai": 1, "claims_capture": 0, "errors": 1}
    assert runner.invoke(app, ["metadata", str(tmp_path), "--strict"]).exit_code == 1


def test_demo_cert_sign_and_provenance(tmp_path, photo):
    certs = tmp_path / "certs"
    assert runner.invoke(app, ["demo-cert", str(certs)]).exit_code == 0
    src = write_image(tmp_path / "a.png", photo)
    signed = tmp_path / "signed.png"
    cert_args = ["--cert", str(certs / "signer.pem"), "--key", str(certs / "signer.key.pem")]
    result = runner.invoke(app, ["sign", str(src), *cert_args, "--ai-generated", "-o", str(signed)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        ["provenance", str(signed), str(src), "--json", "--trust-anchors", str(certs / "ca.pem")],
    )
    assert result.exit_code == 0, result.output
    files = {f["path"]: f for f in json.loads(result.stdout)["files"]}
    rec = files[str(signed)]
    assert rec["state"] == "trusted" and rec["ai_declaration"] == "ai-generated"
    for key in ("codes", "signer", "digital_source_types", "ingredients", "metadata", "watermark"):
        assert key in rec
    assert files[str(src)]["state"] == "absent"
    assert [s["trait"] for s in rec["signals"]] == ["inception:signal_fullyGenAIMedia"]
    tree = runner.invoke(app, ["provenance", str(signed), "--tree"])
    assert tree.exit_code == 0
    assert "untrusted" in tree.stdout and "trainedAlgorithmicMedia" in tree.stdout
    assert "signals (C2PA Asset Rubrics): Contains Fully GenAI Media" in tree.stdout
    out = tmp_path / "rubrics.json"
    result = runner.invoke(
        app, ["provenance", str(signed), str(src), "--rubric-json", str(out), "--no-watermark"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["release"].startswith("C2PA Asset Rubrics 1.0")
    by = {f["path"]: f for f in doc["files"]}
    sig = by[str(signed)]["signals"]
    # the fields the conformance program's asset-rubric-signals-local-output schema requires
    assert {"rubricName", "rubricVersion", "manifests"} <= set(sig)
    (node,) = sig["manifests"]
    assert {"assertedBy", "dc:format", "localInceptions", "localTransformations"} <= set(node)
    assert node["assertedBy"]["subject"]["O"] == "deepaudit demo"
    assert node["localInceptions"][0] == {
        "trait": "inception:signal_fullyGenAIMedia",
        "reportText": "Contains Fully GenAI Media",
        "multiple": False,
    }
    assert by[str(src)]["signals"] is None  # no manifest, no graph


def test_sign_needs_an_output_and_reports_bad_keys(tmp_path, photo):
    certs = tmp_path / "certs"
    runner.invoke(app, ["demo-cert", str(certs)])
    src = write_image(tmp_path / "a.png", photo)
    base = ["sign", str(src), "--cert", str(certs / "signer.pem")]
    assert runner.invoke(app, [*base, "--key", str(certs / "signer.key.pem")]).exit_code == 2
    bad = runner.invoke(app, [*base, "--key", str(certs / "ca.key.pem"), "--in-place"])
    assert bad.exit_code == 1 and "does not match" in bad.output


def test_provenance_strict_flags_invalid(tmp_path, photo):
    certs = tmp_path / "certs"
    runner.invoke(app, ["demo-cert", str(certs)])
    src = write_image(tmp_path / "a.png", photo)
    args = ["--cert", str(certs / "signer.pem"), "--key", str(certs / "signer.key.pem")]
    assert runner.invoke(app, ["sign", str(src), *args, "--in-place"]).exit_code == 0
    data = bytearray(src.read_bytes())
    data[data.index(b"IDAT") + 40] ^= 0x5A
    src.write_bytes(bytes(data))
    assert runner.invoke(app, ["provenance", str(src)]).exit_code == 0
    result = runner.invoke(app, ["provenance", str(src), "--strict"])
    assert result.exit_code == 1 and "invalid" in result.stdout


@pytest.mark.slow
def test_generators_list_train_and_generate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    listed = runner.invoke(app, ["generators", "list", "pixel-*", "--json"])
    assert listed.exit_code == 0
    assert "pixel-ddim" in {r["name"] for r in json.loads(listed.stdout)}
    trained = runner.invoke(
        app,
        [
            "generators",
            "train",
            "--out",
            "model",
            "--steps",
            "3",
            "--channels",
            "8,16",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--no-track",
        ],
    )
    assert trained.exit_code == 0, trained.output
    assert "model written to model (3 steps" in trained.stdout
    (tmp_path / "suite.toml").write_text(
        '[[generate]]\ngenerator = "pixel-euler"\nmodel = "model"\ncount = 3\n'
        "options = { steps = 2 }\n"
    )
    gen = runner.invoke(app, ["generate", "--suite", "suite.toml", "--out", "data", "--json"])
    assert gen.exit_code == 0, gen.output
    assert json.loads(gen.stdout)["generated"] == 3
    again = runner.invoke(app, ["generate", "--suite", "suite.toml", "--out", "data"])
    assert "0 generated, 3 already there" in again.stdout
    (tmp_path / "bad.toml").write_text('[[generate]]\ngenerator = "pixel-ddimm"\ncount = 1\n')
    bad = runner.invoke(app, ["generate", "--suite", "bad.toml", "--out", "x"])
    assert bad.exit_code == 1 and "unknown generator 'pixel-ddimm'" in bad.output


def _jpeg_with_corrupt_exif(path: Path, photo) -> Path:
    """A JPEG whose APP1 Exif block promises five IFD entries and holds one and a third."""
    write_image(path, photo)
    jpeg = path.read_bytes()
    tiff = b"II*\x00" + struct.pack("<IH", 8, 5) + b"\x0f\x01\x02\x00" * 4
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    path.write_bytes(jpeg[:2] + app1 + jpeg[2:])
    return path


def test_third_party_warnings_go_to_the_log_not_the_terminal(tmp_path, photo):
    bad = _jpeg_with_corrupt_exif(tmp_path / "exif.jpg", photo)
    command = [sys.executable, "-m", "deepaudit"]
    quiet = subprocess.run([*command, "metadata", str(bad)], capture_output=True, text=True)
    assert quiet.returncode == 0 and f"{bad}: no AI metadata" in quiet.stdout
    assert "EXIF" not in quiet.stderr and "Warning" not in quiet.stderr
    loud = subprocess.run([*command, "-v", "metadata", str(bad)], capture_output=True, text=True)
    assert loud.returncode == 0
    assert "WARNING py.warnings" in loud.stderr and "Corrupt EXIF data" in loud.stderr


def test_audit_fairness_takes_the_threshold_recorded_by_evaluate(tmp_path):
    rng = np.random.default_rng(0)
    ev = tmp_path / "eval"
    ev.mkdir()
    with (ev / "predictions.jsonl").open("w") as fh:
        for i in range(80):
            label = i % 2
            score = rng.uniform(0.3, 1.0) if label else rng.uniform(0.0, 0.7)
            group = "a" if i % 3 else "b"
            row = {"id": f"x{i}", "label": label, "score": score, "attributes": {"group": group}}
            fh.write(json.dumps(row) + "\n")
    (ev / "metrics.json").write_text(json.dumps({"detector": "spectral", "threshold": 0.37}))
    args = ["audit", "fairness", "--predictions", str(ev / "predictions.jsonl")]
    args += ["--attributes", "group", "--out", str(tmp_path / "fair"), "--min-n", "5", "--json"]
    recorded = runner.invoke(app, args)
    assert recorded.exit_code == 0, recorded.output
    assert json.loads(recorded.stdout)["threshold"] == 0.37
    assert (tmp_path / "fair" / "fairness.json").is_file()
    chosen = runner.invoke(app, [*args, "--threshold", "0.6"])
    assert json.loads(chosen.stdout)["threshold"] == 0.6
