"""Multi-node training: two torchrun agents ("nodes") meeting at a c10d rendezvous on
localhost, one gloo process each, running ``deepaudit detectors train`` as on a cluster.

One node dies mid-run (its agent and worker get SIGKILL, as when a machine goes down); the
other node's job fails instead of hanging; a restart where one node's ``--out`` is not the
shared folder stops with a one-line error; both started again as they should be, training
resumes from the last checkpoint rank 0 wrote and finishes, with every epoch recorded once.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

_TIMEOUT_S = 600  # a whole run on a busy 2-core machine is well under this


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Node:
    """One torchrun agent (a "node") and its worker."""

    def __init__(self, rank: int, port: int, data: Path, out: Path, logs: Path, tag: str):
        self.stdout, self.stderr = logs / f"{tag}-node{rank}.out", logs / f"{tag}-node{rank}.err"
        cmd = [
            sys.executable,  # torchrun itself, without relying on its script being on PATH
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "2",
            "--nproc_per_node",
            "1",
            "--rdzv_backend",
            "c10d",
            "--rdzv_endpoint",
            f"127.0.0.1:{port}",
            "--rdzv_id",
            "deepaudit-multinode-test",
            # both "nodes" are this machine: say which one hosts the rendezvous store
            "--rdzv_conf",
            f"is_host={int(rank == 0)}",
            "--local_addr",
            "127.0.0.1",
            "--max_restarts",
            "0",
            "-m",
            "deepaudit",
            "-v",  # the trainer logs where it resumes
            "detectors",
            "train",
            "--data",
            str(data),
            "--detector",
            "timm",
            "--out",
            str(out),
            "--set",
            "epochs=4",
            "--set",
            "patience=10",  # no early stop: the run has a known length
            "--device",
            "cpu",
            "--no-track",
            "--json",
        ]
        with open(self.stdout, "w") as out_f, open(self.stderr, "w") as err_f:
            self.proc = subprocess.Popen(
                cmd,
                stdout=out_f,
                stderr=err_f,
                cwd=logs,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )

    def signal(self, sig: int) -> None:
        """Signal the agent and its workers (torchrun starts each worker in a session of its
        own, so the agent's process group does not hold them)."""
        import psutil

        with contextlib.suppress(psutil.NoSuchProcess):
            agent = psutil.Process(self.proc.pid)
            for proc in [agent, *agent.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.send_signal(sig)

    def wait(self, timeout: float = _TIMEOUT_S) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait()
            pytest.fail(f"node did not end in {timeout} s: {self.log()[-3000:]}")

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")


def _progress(ckpt: Path) -> dict | None:
    """The checkpoint's progress.json, wherever the atomic swap has it at this moment."""
    for folder in (ckpt, ckpt.with_name(ckpt.name + ".old")):
        with contextlib.suppress(OSError, ValueError):
            return json.loads((folder / "progress.json").read_text())
    return None


def test_two_nodes_resume_from_the_last_checkpoint_when_one_dies(detector_data, tmp_path):
    out, ckpt = tmp_path / "det", tmp_path / "det" / "checkpoint"
    port = _free_port()
    nodes = [_Node(rank, port, detector_data, out, tmp_path, "first") for rank in (0, 1)]
    try:
        deadline = time.monotonic() + _TIMEOUT_S
        while (saved := _progress(ckpt)) is None:
            for node in nodes:
                assert node.proc.poll() is None, node.log()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint written"
            time.sleep(0.02)
        # freeze both nodes where they are, so the kill below lands mid-run for sure
        for node in nodes:
            node.signal(signal.SIGSTOP)
        saved = _progress(ckpt)
        assert not (out / "model.safetensors").exists()
        nodes[1].signal(signal.SIGKILL)  # node 1 dies: its agent and its worker
        nodes[0].signal(signal.SIGCONT)
        assert nodes[0].wait() != 0  # the surviving node's job fails; it does not hang
        nodes[1].wait()
    finally:
        for node in nodes:
            node.signal(signal.SIGKILL)
    assert not (out / "model.safetensors").exists()
    at_kill = _progress(ckpt)
    assert at_kill is not None and at_kill["step"] >= saved["step"] > 0

    # a node whose --out is not the folder the others share (say, its local disk) finds no
    # checkpoint: the job stops before any step, saying so in one line, and leaves the
    # checkpoint as it was
    port = _free_port()
    elsewhere = tmp_path / "local-disk-of-node-1"
    nodes = [
        _Node(0, port, detector_data, out, tmp_path, "unshared"),
        _Node(1, port, detector_data, elsewhere, tmp_path, "unshared"),
    ]
    try:
        codes = [node.wait() for node in nodes]
    finally:
        for node in nodes:
            node.signal(signal.SIGKILL)
    assert 0 not in codes
    for node in nodes:
        said = " ".join(node.log().split())
        assert "the ranks found different checkpoints" in said, said[-3000:]
        assert "--out must be one folder that every node shares" in said
    assert _progress(ckpt) == at_kill and not (elsewhere / "checkpoint").exists()

    port = _free_port()
    nodes = [_Node(rank, port, detector_data, out, tmp_path, "again") for rank in (0, 1)]
    try:
        codes = [node.wait() for node in nodes]
    finally:
        for node in nodes:
            node.signal(signal.SIGKILL)
    assert codes == [0, 0], "\n".join(node.log()[-3000:] for node in nodes)

    # both nodes restored the checkpoint rank 0 had written before the kill
    for node in nodes:
        resumed = re.search(r"resuming \S+ at step (\d+) of (\d+)", node.log())
        assert resumed, node.log()[-3000:]
        assert int(resumed.group(1)) == at_kill["step"]
    total = int(resumed.group(2))
    assert at_kill["step"] < total
    # rank 0 reports (whichever node it landed on), the other rank prints nothing
    printed = sorted(node.stdout.read_text() for node in nodes)
    assert printed[0] == ""
    assert json.loads(printed[1])["metrics"]["test"]["n"] > 0
    assert (out / "model.safetensors").is_file()
    assert {p.name for p in out.iterdir()} == {
        "config.json",
        "model.safetensors",
        "calibration.json",
    }  # the checkpoint goes once the model is written
    history = json.loads((out / "config.json").read_text())["training"]["history"]["epochs"]
    assert [e["epoch"] for e in history] == [1, 2, 3, 4]  # every epoch once, none missing
    # the epochs done before the kill come from the checkpoint, not from a second run of
    # them: even their measured throughput is the one recorded then
    before = at_kill["values"]["history"]["epochs"]
    assert before and history[: len(before)] == before
