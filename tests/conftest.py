"""Shared fixtures: small real images and media files made by the tests themselves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# deepaudit's per-user cache (detector facts) in a folder of this run, not the user's
os.environ.setdefault("DEEPAUDIT_CACHE_DIR", tempfile.mkdtemp(prefix="deepaudit-cache-"))
# Under pytest-xdist each worker takes its share of the cores for torch's threads (set before
# torch is imported; subprocesses inherit it): two workers of two threads on two cores would
# spend their time waiting for each other.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _share)))

import numpy as np
import pytest

pytest_plugins = ["tests.ray_cluster"]  # the `ray_cluster` fixture: a real two-node local cluster

# Fixtures that train a model or generate a data set: seconds to a minute each on 2 cores, so
# a test that needs one is slow whatever its own body costs (`make test-fast` skips it).
TRAINED_FIXTURES = frozenset(
    {"pixel_model", "detector_data", "latent_model", "video_model", "tiny_pipelines"}
)


# Under pytest-xdist (`make test` runs two workers, `--dist loadgroup`) a module's tests go to
# one worker, so its module fixtures are made once; the tests that share a server or cluster
# fixture go to one worker whatever their module, so it starts once.
SERVER_FIXTURES = {"ray_cluster": "ray", "postgres_uri": "postgres"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if TRAINED_FIXTURES.intersection(item.fixturenames):
            item.add_marker(pytest.mark.slow)
        group = next(
            (g for name, g in SERVER_FIXTURES.items() if name in item.fixturenames),
            item.nodeid.split("::")[0],
        )
        item.add_marker(pytest.mark.xdist_group(group))
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


@pytest.fixture(autouse=True)
def _stores_built_from_crjson_read_as_json_does(monkeypatch):
    """On every C2PA read of every test: where ``c2pa_layer.store_from_crjson`` builds the
    store from crJSON (c2pa then renders json() no more), the provenance record it gives is
    the one json() gives, field for field, and so is c2pa's validation state."""
    import json

    from deepaudit import c2pa_layer

    real = c2pa_layer._crjson

    def checking(reader):
        cr = real(reader)
        built = c2pa_layer.store_from_crjson(cr) if cr is not None else None
        if built is not None:
            from deepaudit.audit.provenance import interpret

            def record(store):
                read = c2pa_layer.C2paRead(
                    "x", "ok", store=store, certificates=c2pa_layer._certificates(cr), crjson=cr
                )
                return interpret(read).to_json()

            whole = json.loads(reader.json())
            assert built["validation_state"] == whole["validation_state"]
            assert record(built) == record(whole)
        return cr

    checking.__wrapped__ = real  # for a test that reads without the check
    monkeypatch.setattr(c2pa_layer, "_crjson", checking)


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
    from deepaudit.c2pa_layer import load_signing_credentials, make_demo_credentials

    paths = make_demo_credentials(tmp_path_factory.mktemp("certs"), organization="Test Org")
    return {**paths, "signing": load_signing_credentials(paths["chain"], paths["key"])}


@pytest.fixture(scope="session")
def pixel_model(tmp_path_factory):
    """A pixel DDPM trained for 6 steps: its samples are easy to tell from photos."""
    from deepaudit.generators.training import TrainConfig, train_diffusion

    cfg = TrainConfig(family="pixel", channels=(16, 32), steps=6, batch_size=8, checkpoint_every=3)
    return train_diffusion(cfg, tmp_path_factory.mktemp("m") / "pixel", device="cpu")


@pytest.fixture(scope="session")
def detector_data(tmp_path_factory, pixel_model):
    """A split manifest: 64 real 32² photo crops and 64 pixel-DDPM samples (two samplers)."""
    from deepaudit.generators.suite import load_suite, run_suite
    from deepaudit.generators.training import write_real_crops
    from deepaudit.manifest import read_manifest

    root = tmp_path_factory.mktemp("detdata")
    write_real_crops(root, 64, size=32, seed=99, source="photos")
    spec = root / "suite.toml"
    spec.write_text(
        f'[suite]\nbatch_size = 32\n[[generate]]\ngenerator = "pixel-ddim"\n'
        f'model = "{pixel_model}"\n'
        'count = 32\noptions = { steps = 4 }\n[[generate]]\ngenerator = "pixel-euler"\n'
        f'model = "{pixel_model}"\ncount = 32\noptions = {{ steps = 4 }}\n'
    )
    run_suite(load_suite(spec), root, device="cpu")
    m = read_manifest(root).with_splits(ratios=(0.6, 0.2, 0.2), overwrite=True)
    m.write()
    return root


@pytest.fixture
def run_script(tmp_path):
    """Run ``python -c script *args`` and return the lines it printed; with ``kill_after=N``
    SIGKILL it as soon as it prints a line starting with step ``N`` (a real ``kill -9``:
    no handler, no cleanup), which the tests use to interrupt training anywhere."""

    def run(script: str, *args: object, kill_after: int | None = None) -> list[str]:
        # a stderr file per run: tests start independent runs side by side (one per core)
        with tempfile.NamedTemporaryFile("w+", dir=tmp_path, suffix=".stderr") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", script, *map(str, args)],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                # one thread in every run: busy cores make two OpenMP threads spin (10-40x
                # slower steps here), and runs compared bit for bit must use the same kernels
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
            lines = []
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                if kill_after is not None and line.split()[0] == str(kill_after):
                    proc.send_signal(signal.SIGKILL)
                    break
            proc.stdout.close()
            code = proc.wait(timeout=600)
            err.seek(0)
            expected = -signal.SIGKILL if kill_after is not None else 0
            assert code == expected, err.read()[-3000:]
        return lines

    return run
