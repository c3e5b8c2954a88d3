"""The Ray scan as a user runs it: ``deepaudit scan --ray ADDRESS --keep-actors M`` against the
local ``deepaudit scan``, each a new process from the shell, on a long-lived Ray cluster.

``python -m benchmarks.scale_cli [--quick]`` prints JSON. A one-node cluster is started with
``ray start --head --block`` (its own port, temp folder and process group; stopped at the
end) with this machine's cores. The folder: ``--quick`` 24 photos of 256² and 1 clip, timm
resnet10t at 64²; without: 96 photos of 512² and 2 clips, timm resnet18 at 224² (CPU, torch
engine). Each round runs, one after the other:

- ``local``: ``deepaudit scan DIR -d DET --device cpu --restart``;
- ``ray``: the same with ``--ray ADDRESS --keep-actors 10``, the actors kept from the
  previous round and the driver's detector facts cached (``scan.describe_scan_detectors``);
- ``ray_driver_loads``: the same with an empty ``$DEEPAUDIT_CACHE_DIR``, so the driver loads
  the detector's network for its facts, as every Ray run did before the cache.

Figures: each run's wall seconds; ``ratio`` (local ÷ ray seconds per round: above 1, the Ray
run is faster) and ``ratio_driver_loads``; ``first_ray_s`` (the first Ray run: the actor
starts and the facts are learned); ``rows_alike`` (the last Ray run's verdicts equal the
local one's, file by file); the CPU flags and the load average before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}...: {out.stderr.strip()[-1500:]}")
    return time.perf_counter() - t


def _verdicts(out: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {r["path"]: r.get("verdict") for r in rows}


def run(*, quick: bool = False) -> dict:
    from benchmarks.scan import make_files
    from deepaudit.detectors import create_detector
    from deepaudit.devices import cpu_flags

    cores = os.cpu_count() or 1
    model, size = ("resnet10t", 64) if quick else ("resnet18", 224)
    n, side, clips = (24, 256, 1) if quick else (96, 512, 2)
    rounds = 2 if quick else 3
    load_before = os.getloadavg()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="da-ray-", dir="/tmp") as tmp:
        root = Path(tmp)
        data = root / "inbox"
        make_files(data, n, side, clips, resized=True)
        det = root / "det"
        create_detector("timm", model=model, input_size=size, device="cpu").save_pretrained(det)
        port = _free_port()
        address = f"127.0.0.1:{port}"
        env = {
            **os.environ,
            "RAY_AUTH_MODE": "disabled",  # a private cluster on localhost
            "RAY_USAGE_STATS_ENABLED": "0",
            "DEEPAUDIT_CACHE_DIR": str(root / "cache"),
        }
        head = subprocess.Popen(
            [
                str(bin_dir / "ray"),
                "start",
                "--head",
                "--block",
                f"--port={port}",
                f"--num-cpus={cores}",
                "--num-gpus=0",
                "--include-dashboard=false",
                "--disable-usage-stats",
                f"--temp-dir={root / 'ray'}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            scan = [str(bin_dir / "deepaudit"), "scan", str(data), "-d", str(det)]
            scan += ["--device", "cpu", "--engine", "torch", "--restart"]
            ray = ["--ray", address, "--keep-actors", "10"]
            deadline = time.monotonic() + 120
            while True:  # the head is up once a driver can connect
                try:
                    first = _timed([*scan, "-o", str(root / "ray"), *ray], env)
                    break
                except RuntimeError:
                    if time.monotonic() > deadline or head.poll() is not None:
                        raise
                    time.sleep(2)
            times: dict[str, list[float]] = {"local": [], "ray": [], "ray_driver_loads": []}
            for r in range(rounds):
                times["local"].append(_timed([*scan, "-o", str(root / "local")], env))
                times["ray"].append(_timed([*scan, "-o", str(root / "ray"), *ray], env))
                cold = {**env, "DEEPAUDIT_CACHE_DIR": str(root / f"cold{r}")}
                times["ray_driver_loads"].append(
                    _timed([*scan, "-o", str(root / "ray_cold"), *ray], cold)
                )
            local_v, ray_v = _verdicts(root / "local"), _verdicts(root / "ray")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                head.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)
            head.wait()
    ratio = [lo / ra for lo, ra in zip(times["local"], times["ray"], strict=True)]
    ratio_loads = [
        lo / ra for lo, ra in zip(times["local"], times["ray_driver_loads"], strict=True)
    ]
    return {
        "files": n + clips,
        "detector": f"timm {model} at {size}², CPU, torch engine",
        "cluster": f"one node, {cores} CPUs (ray start --head)",
        "first_ray_s": round(first, 2),
        "seconds": {k: [round(v, 2) for v in vs] for k, vs in times.items()},
        "ratio": round(statistics.median(ratio), 3),
        "ratio_driver_loads": round(statistics.median(ratio_loads), 3),
        "rows_alike": local_v == ray_v,
        "load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "cpu_flags": cpu_flags(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="25 files and a small network.")
    args = parser.parse_args(argv)
    json.dump(run(quick=args.quick), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
