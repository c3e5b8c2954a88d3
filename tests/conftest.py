"""Shared fixtures: small real images and media files made by the tests themselves."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import numpy as np
import pytest


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photograph (scikit-image's astronaut), cropped to 96×128 so it is not square."""
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[::4, ::4][:96, :128])


@pytest.fixture(scope="session")
def clip(photo) -> np.ndarray:
    """Twelve 48×64 frames of a pan across the photo: real content, distinct frames."""
    frames = [photo[10 : 10 + 48, 2 * i : 2 * i + 64] for i in range(12)]
    return np.ascontiguousarray(np.stack(frames))


@pytest.fixture(scope="session")
def creds(tmp_path_factory):
    """A throwaway CA (``creds["ca"]``) and a signing certificate + key made by the tests."""
    from deepaudit.credentials import load_signing_credentials, make_demo_credentials

    paths = make_demo_credentials(tmp_path_factory.mktemp("certs"), organization="Test Org")
    return {**paths, "signing": load_signing_credentials(paths["chain"], paths["key"])}
