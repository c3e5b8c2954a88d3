"""Inference engines: ONNX Runtime gives torch's scores, is checked at export, is cached, and
the scan records what ran; bf16 on a CPU without bf16 units is refused with its reason."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from deepaudit.cli import app  # noqa: E402
from deepaudit.detectors import create_detector, load_detector  # noqa: E402
from deepaudit.detectors.engine import make_runner  # noqa: E402
from deepaudit.devices import device_policy  # noqa: E402
from deepaudit.errors import DeepauditError  # noqa: E402


@pytest.fixture(scope="module")
def timm_dir(tmp_path_factory):
    """A timm detector folder (untrained weights: the engines must agree on any weights)."""
    det = create_detector("timm", input_size=32, device="cpu")
    return det.save_pretrained(tmp_path_factory.mktemp("det") / "timm")


def _crops(n=12, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_onnx_scores_are_torch_scores_and_the_graph_is_cached(timm_dir):
    onnx = load_detector(timm_dir, device="cpu", engine="onnx")
    torch_ = load_detector(timm_dir, device="cpu", engine="torch")
    x = _crops()
    a, b = onnx.score_inputs(x), torch_.score_inputs(x)
    assert onnx.engine_choice.engine == "onnx" and torch_.engine_choice.engine == "torch"
    assert np.abs(a - b).max() <= 1e-4 and np.ptp(b) > 0
    graphs = sorted((timm_dir / "engine").glob("*.onnx"))
    assert len(graphs) == 1
    meta = json.loads(graphs[0].with_suffix(".json").read_text())
    assert meta["checked"] and meta["max_abs_diff"] <= 1e-4 and meta["timings"]
    stamp = graphs[0].stat().st_mtime_ns
    again = load_detector(timm_dir, device="cpu", engine="auto")
    again.score_inputs(x)
    assert graphs[0].stat().st_mtime_ns == stamp  # reused, not exported again
    assert again.engine_choice.engine in ("onnx", "torch")  # the faster one, as timed
    assert "measured" in again.engine_choice.reason or "faster" in again.engine_choice.reason


class _SizeDependent(torch.nn.Module):
    """A network whose Python branch on the input size is baked into a traced graph."""

    def forward(self, x):
        scale = 2.0 if x.shape[2] % 2 else 1.0
        return x.float().mean((1, 2, 3)) * scale


def test_an_inexact_export_is_refused_and_auto_falls_back_to_torch(tmp_path):
    policy = device_policy("cpu")
    kw = dict(precision="fp32", weights_key="k" * 64, input_shape=(3, 16, 16), dynamic=True)
    with pytest.raises(DeepauditError, match=r"ONNX outputs differ from torch's by .* not used"):
        make_runner(_SizeDependent(), policy, engine="onnx", detector_dir=tmp_path, **kw)
    assert not list((tmp_path / "engine").glob("*.onnx"))  # the bad graph is deleted
    _, choice = make_runner(_SizeDependent(), policy, engine="auto", detector_dir=tmp_path, **kw)
    assert choice.engine == "torch" and "differ" in choice.reason


def test_onnx_is_fp32_on_cpu_only():
    with pytest.raises(DeepauditError, match="onnx engine runs fp32 on the CPU only"):
        make_runner(
            _SizeDependent(),
            device_policy("cpu"),
            engine="onnx",
            precision="bf16",
            weights_key="k",
            input_shape=(3, 8, 8),
        )


def test_scan_records_engine_and_precision_and_refuses_bf16_without_units(
    timm_dir, tmp_path, monkeypatch
):
    from deepaudit.media import write_image

    box = tmp_path / "box"
    for i, c in enumerate(_crops(4, 48)):
        write_image(box / f"{i}.png", c)
    runner = CliRunner()
    out = tmp_path / "scan"
    res = runner.invoke(
        app,
        [
            "scan",
            str(box),
            "-o",
            str(out),
            "-d",
            str(timm_dir),
            "--workers",
            "0",
            "--engine",
            "onnx",
            "--precision",
            "fp32",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    eng = json.loads(res.output)["detectors"]["timm"]["engine"]
    assert eng["engine"] == "onnx" and eng["precision"] == "fp32" and eng["device"] == "cpu"
    assert "onnx fp32 on cpu" in (out / "report.html").read_text()
    text = runner.invoke(
        app,
        [
            "scan",
            str(box),
            "-o",
            str(tmp_path / "s1"),
            "-d",
            str(timm_dir),
            "--workers",
            "0",
            "--engine",
            "onnx",
            "--precision",
            "fp32",
        ],
    ).output
    assert "detector timm: timm, not calibrated, onnx fp32 on cpu" in text

    import deepaudit.devices as devices

    monkeypatch.setattr(devices, "cpu_flags", lambda: ["avx2", "fma"])
    res = runner.invoke(
        app,
        ["scan", str(box), "-o", str(tmp_path / "s2"), "-d", str(timm_dir), "--precision", "bf16"],
    )
    assert res.exit_code != 0
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "precision bf16 refused: this CPU has no bf16 units" in lines[0]
