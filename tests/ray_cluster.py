"""A real two-node Ray cluster on this machine for the scale-out tests (a pytest plugin).

``ray start --head`` and a second ``ray start --address`` node with its own resources, one
CPU each, a small object store and no dashboard, started once per session, within a time
bound, and stopped by the fixture (their process groups, by id).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

_START_TIMEOUT_S = 90
_OBJECT_STORE = str(80 * 1024 * 1024)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    # the node's processes (raylet, its workers, gcs) share the group of `ray start --block`
    os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=3)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="session")
def ray_cluster():
    """The address of a running two-node local Ray cluster."""
    ray = pytest.importorskip(
        "ray", reason="Ray is not installed: pip install 'deepaudit[scale]' for the Ray tests"
    )
    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.is_file():
        pytest.skip(f"the ray command is not beside {sys.executable}")
    # a short folder: Ray's unix sockets live under it and their paths are length-limited
    temp = tempfile.mkdtemp(prefix="da-ray-", dir="/tmp")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = [
        "--block",
        "--num-cpus=1",
        "--num-gpus=0",
        f"--object-store-memory={_OBJECT_STORE}",
        "--disable-usage-stats",
    ]
    # a throwaway cluster on localhost: no token (a token left in ~/.ray by another cluster
    # would otherwise be offered to this one); drivers started by the tests inherit it
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    log = open(Path(temp) / "nodes.log", "w")  # noqa: SIM115  (kept open for the session)
    nodes = [
        subprocess.Popen(
            [
                str(ray_bin),
                "start",
                "--head",
                f"--port={port}",
                "--include-dashboard=false",
                f"--temp-dir={temp}",
                '--resources={"head": 1}',
                *common,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    ]
    try:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not _port_open(port):
            if nodes[0].poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray head did not start: {_tail(Path(temp) / 'nodes.log')}")
            time.sleep(0.2)
        nodes.append(
            subprocess.Popen(
                [
                    str(ray_bin),
                    "start",
                    f"--address={address}",
                    '--resources={"second": 1}',
                    *common,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        )
        ray.init(address=address, log_to_driver=False, configure_logging=False)
        while sum(1 for n in ray.nodes() if n.get("Alive")) < 2:
            if nodes[1].poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"second ray node did not join: {_tail(Path(temp) / 'nodes.log')}")
            time.sleep(0.2)
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for proc in reversed(nodes):
            _stop(proc)
        log.close()
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path) -> str:
    try:
        return " ".join(path.read_text().split()[-60:])
    except OSError:
        return "(no log)"
