"""Device choice, precision policy and seeding."""

from __future__ import annotations

import pytest
import torch

from deepaudit.devices import describe_environment, device_policy, seed_everything, select_device


def test_cpu_policy_is_fp32():
    policy = device_policy("cpu")
    assert policy.device == "cpu" and policy.amp_dtype is None
    assert not policy.channels_last and not policy.pin_memory
    with policy.autocast():
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32


def test_cpu_bf16_is_opt_in(monkeypatch):
    import deepaudit.devices as devices

    monkeypatch.setattr(devices, "cpu_flags", lambda: ["avx2", "avx512f", "amx_bf16"])
    policy = device_policy("cpu", precision="bf16")
    with policy.autocast():
        y = torch.nn.Linear(4, 4)(torch.ones(1, 4))
    assert y.dtype == torch.bfloat16


def test_bad_values_name_the_allowed_ones():
    with pytest.raises(ValueError, match="precision must be one of"):
        device_policy("cpu", precision="fp8")
    with pytest.raises(ValueError, match="device must be"):
        select_device("tpu")
    with pytest.raises(ValueError, match="CUDA"):
        device_policy("cpu", precision="fp16")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_cuda_without_gpu_is_a_clear_error():
    assert select_device("auto") == "cpu"
    with pytest.raises(ValueError, match="no CUDA GPU"):
        select_device("cuda")


@pytest.mark.gpu
def test_cuda_policy_uses_amp_and_channels_last():
    policy = device_policy("auto")
    assert policy.is_cuda and policy.amp_dtype in ("bfloat16", "float16")
    assert policy.channels_last and policy.pin_memory
    model = torch.nn.Conv2d(3, 8, 3).to(policy.torch_device(), memory_format=torch.channels_last)
    x = torch.randn(2, 3, 16, 16, device=policy.device).to(memory_format=torch.channels_last)
    with policy.autocast():
        y = model(x)
    assert y.dtype == getattr(torch, policy.amp_dtype)


def test_seeding_reproduces():
    import numpy as np

    seed_everything(7)
    a = (torch.rand(3), np.random.rand(3))
    seed_everything(7)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and (a[1] == b[1]).all()


def test_describe_environment():
    """A bug report's environment block names the versions and device actually in use."""
    import platform

    import deepaudit

    env = describe_environment()
    # pip metadata may keep or drop the local tag ("2.14.1+cu130"): compare the release part
    assert env["versions"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert env["versions"]["deepaudit"] == deepaudit.__version__
    assert env["python"] == platform.python_version()
    assert env["cuda_available"] is torch.cuda.is_available()
    assert env["default_device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert len(env["gpus"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)


def test_bf16_on_a_cpu_without_bf16_units_is_refused_and_auto_picks_fp32(monkeypatch):
    import deepaudit.devices as devices

    monkeypatch.setattr(devices, "cpu_flags", lambda: ["avx2", "fma"])
    with pytest.raises(ValueError, match=r"precision bf16 refused: this CPU has no bf16 units"):
        device_policy("cpu", precision="bf16")
    assert devices.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(devices, "cpu_flags", lambda: ["avx2", "avx512_bf16"])
    assert devices.resolve_precision("auto", "cpu") == "bf16"
    assert devices.resolve_precision("fp32", "cpu") == "fp32"
    monkeypatch.setattr(devices, "cpu_flags", lambda: [])  # not Linux: cannot tell, allowed
    assert device_policy("cpu", precision="bf16").amp_dtype == "bfloat16"
