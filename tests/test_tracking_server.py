"""deepaudit against a shared mlflow tracking server backed by a real PostgreSQL server.

The fixtures start what a team runs: a throwaway PostgreSQL cluster (Debian's ``postgresql``
package; ``initdb`` in a temporary folder, a free port on 127.0.0.1) and ``mlflow server`` on
it with proxied artifacts, then stop both. They skip, saying why, only where PostgreSQL or
its Python driver (the ``server`` extra) is not installed; a server that is there but does
not start fails the tests.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepaudit.cli import app

pytestmark = pytest.mark.slow  # a database cluster and an mlflow server: seconds to start

_START_TIMEOUT_S = 240  # a busy 2-core CI machine takes ~15 s; leave room
# a superuser "deepaudit" trusted on 127.0.0.1 only; no fsync: the cluster is thrown away
_INITDB_OPTIONS = "-U deepaudit --auth=trust -E UTF8 --no-sync --no-instructions"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:  # often a link from /usr/local/bin: createdb is beside the real one
        return Path(found).resolve().parent
    versions = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    versions.sort(key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


def _tail(path: Path, n: int = 3000) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-n:]
    return ""


@pytest.fixture(scope="module")
def postgres_uri():
    """A PostgreSQL cluster of its own (trust auth on 127.0.0.1): its database's URI."""
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server not installed (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401  (SQLAlchemy's driver for postgresql:// URIs)
    except ImportError:
        pytest.skip("psycopg not installed: pip install -e '.[server]'")
    # PostgreSQL refuses to run as root (CI runs as root): run the server as an
    # unprivileged account, in a folder that account owns.
    as_user: dict[str, object] = {}
    root = Path(tempfile.mkdtemp(prefix="deepaudit-pg-"))
    if os.geteuid() == 0:
        account = None
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                account = pwd.getpwnam(name)
                break
        if account is None:
            shutil.rmtree(root)
            pytest.skip("running as root and no 'postgres' or 'nobody' account to run PostgreSQL")
        os.chown(root, account.pw_uid, account.pw_gid)
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    data, log, port = root / "data", root / "server.log", _free_port()
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    server = [str(bindir / "pg_ctl"), "-D", str(data)]
    started = False
    try:
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), *_INITDB_OPTIONS.split()],
            check=True,
            capture_output=True,
            cwd=root,
            env=env,
            timeout=_START_TIMEOUT_S,
            **as_user,
        )
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        done = subprocess.run(
            [*server, "-l", str(log), "-o", options, "-w", "-t", str(_START_TIMEOUT_S), "start"],
            capture_output=True,
            text=True,
            cwd=root,
            env=env,
            **as_user,
        )
        assert done.returncode == 0, f"PostgreSQL did not start: {done.stderr}{_tail(log)}"
        started = True
        subprocess.run(
            [
                str(bindir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "deepaudit",
                "mlflow",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield f"postgresql+psycopg://deepaudit@127.0.0.1:{port}/mlflow"
    finally:
        if started:
            subprocess.run([*server, "-m", "immediate", "stop"], capture_output=True, **as_user)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def tracking_server(postgres_uri, tmp_path_factory):
    """``mlflow server`` on the PostgreSQL database, serving artifacts itself: its URL."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = folder / "server.log"
    # the server's job runner (a dozen huey processes for mlflow's GenAI jobs) is not
    # something deepaudit uses
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                postgres_uri,
                "--artifacts-destination",
                str(folder / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",  # one process; its thread pool serves both jobs at once
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"mlflow server exited: {_tail(log)}"
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{url}/health", timeout=2) as answer,
            ):
                if answer.status == 200:
                    break
            assert time.monotonic() < deadline, f"mlflow server not up: {_tail(log)}"
            time.sleep(0.25)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # a throwaway server: no need to wait for grace
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# One training job: a small network trained by deepaudit's Trainer, tracked through
# $MLFLOW_TRACKING_URI like any deepaudit command, its weights logged and registered. Two
# barriers make both jobs create their runs at once and log while both runs are open.
TRAINING = """
import json, sys, time
from pathlib import Path

import torch
from safetensors.torch import save_file

from deepaudit.tracking import Tracker
from deepaudit.trainer import Trainer, TrainState

name, out, barrier = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])


def together(stage):
    (barrier / f"{stage}-{name}").touch()
    deadline = time.monotonic() + 300
    while len(list(barrier.glob(f"{stage}-*"))) < 2:
        if time.monotonic() > deadline:
            sys.exit(f"the other job never reached {stage}")
        time.sleep(0.02)


torch.manual_seed(ord(name))
net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
x = torch.randn(64, 4)
y = x.sum(1, keepdim=True)
state = TrainState(modules={"net": net}, stateful={"opt": opt})
trainer = Trainer(
    out / "checkpoint", state, config={"job": name}, total=6, checkpoint_every=2, log_every=1
)


def step(i):
    loss = (net(x) - y).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return {"loss": float(loss)}


def write():
    (out / "model").mkdir(parents=True, exist_ok=True)
    save_file(net.state_dict(), out / "model" / "model.safetensors")
    return out / "model"


together("start")
params = {"lr": 1e-2, "job": name}
with trainer.tracking(Tracker(), "shared-store", run_name=f"job-{name}", params=params) as run:
    together("open")
    trainer.fit(step)
    model = trainer.export(write)
    run.log_artifact(model, "model")
    version = run.register_model("toy-detector", "model")
print(json.dumps({"run_id": run.run_id, "version": version}))
"""


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path)


def _same(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_trainings_at_once_land_as_two_complete_runs(tracking_server, tmp_path):
    import mlflow

    from deepaudit.tracking import Tracker

    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_server, "OMP_NUM_THREADS": "1"}
    jobs = {
        name: subprocess.Popen(
            [sys.executable, "-c", TRAINING, name, str(tmp_path / name), str(barrier)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        for name in ("a", "b")
    }
    printed = {}
    for name, job in jobs.items():
        out, err = job.communicate(timeout=600)
        assert job.returncode == 0, err[-3000:]
        printed[name] = json.loads(out)  # stdout is the job's own: mlflow prints nothing there

    tracker = Tracker(tracking_server)
    client = tracker.client
    assert printed["a"]["run_id"] != printed["b"]["run_id"]
    assert {printed["a"]["version"], printed["b"]["version"]} == {"1", "2"}
    for name, job in printed.items():
        record = tracker.get_run(job["run_id"])
        assert record.status == "FINISHED" and record.name == f"job-{name}"
        assert record.params == {"lr": "0.01", "job": name}
        assert record.metrics["steps_done"] == 6 and "final_loss" in record.metrics
        history = client.get_metric_history(job["run_id"], "loss")
        assert [m.step for m in history] == [1, 2, 3, 4, 5, 6]
        local = _weights(tmp_path / name / "model" / "model.safetensors")
        logged = client.download_artifacts(job["run_id"], "model", str(tmp_path / f"got-{name}"))
        assert _same(_weights(Path(logged) / "model.safetensors"), local)
        # the registry: the version points at this run and serves these weights
        version = client.get_model_version("toy-detector", job["version"])
        assert version.run_id == job["run_id"] and version.status == "READY"
        served = mlflow.artifacts.download_artifacts(
            artifact_uri=client.get_model_version_download_uri("toy-detector", job["version"]),
            dst_path=str(tmp_path / f"registry-{name}"),
            tracking_uri=tracking_server,
        )
        assert _same(_weights(Path(served) / "model.safetensors"), local)
    assert not _same(  # two jobs, two models: nothing was mixed up between them
        _weights(tmp_path / "a" / "model" / "model.safetensors"),
        _weights(tmp_path / "b" / "model" / "model.safetensors"),
    )

    listed = CliRunner().invoke(
        app, ["runs", "--tracking-uri", tracking_server, "--experiment", "shared-store", "--json"]
    )
    assert listed.exit_code == 0, listed.output
    answer = json.loads(listed.stdout)
    assert answer["tracking_uri"] == tracking_server
    runs = {r["run_id"]: r for r in answer["runs"]}
    assert set(runs) == {printed["a"]["run_id"], printed["b"]["run_id"]}
    assert {r["name"] for r in runs.values()} == {"job-a", "job-b"}
    assert all(r["status"] == "FINISHED" and r["metrics"]["steps_done"] == 6 for r in runs.values())
