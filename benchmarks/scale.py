"""The scan on Ray against the local scan on one machine, and what each stage costs.

``python -m benchmarks.scale [--quick]`` prints JSON (needs ``deepaudit[scale]``; ``make
bench`` runs the quick form). Files: photos of real size (the built-in photos resized to
512² with ``--quick``, 1024² without, JPEG and PNG) and a few MP4 clips, so per-file work
weighs as in an inbox; one timm detector (weights untouched).

- ``local_files_per_s``: ``run_scan`` (worker processes, default workers) over the job:
  the photos and the clips;
- ``ray_files_per_s``: ``run_scan_ray`` on a private Ray instance with as many CPUs as the
  machine, warm (its worker processes started and imports done by a first run, as on a
  long-lived cluster; each run still starts its detector actor, a new process) and
  ``ray_cold_files_per_s`` (the first run, with Ray's worker start);
- ``overhead_ratio`` (Ray ÷ local, whole runs over the job; goal ≥ 0.8) and
  ``overhead_ratio_large`` (the same over a job with four times the photos);
- ``*_steady_files_per_s``, ``overhead_ratio_steady`` and ``fixed_start_s``: from the two
  sizes, the per-file rate between them (what a long scan sees) and the fixed start each
  run pays (detector loading, process and actor start); ``files_for_ratio_0.8``: the job
  size from which a whole Ray run reaches 0.8 of the local scan's rate by that model;
- without kept actors the CPU stage runs while the actor starts, so part of the larger job's
  extra work hides in the fixed start and ``ray_steady_files_per_s`` reads high (it can
  exceed what the cores allow); the kept actors' steady rate has no such overlap;
- ``*_kept_actors``: the same with ``keep_actors`` (``scan --ray --keep-actors``): the
  detector actors stay loaded between jobs, as a long-lived cluster serving many scans
  would run them (the first job starts them, the timed ones find them);
- ``scaling_by_ray_cpus``: files/s, whole and steady, as the Ray instance's CPUs (so its
  CPU tasks) grow from 1 to the cores, with the files per block the scan chose;
- ``load_average_1m`` before and after: other jobs on the machine skew every figure;
- ``stages_ms_per_file``: each stage alone on one core in this process — read, hash, C2PA,
  metadata + watermark, decode, the detector's input preparation, inference (batches of
  32), verdict + results line, and the bytes a file's record carries from the CPU tasks
  to the detector actors;
- ``driver``: the driver's CPU per block through three stages and per results line;
- ``model``: files/s at 1, 10 and 100 nodes of 16 cores + 1 GPU, from those stage figures
  and the H200 resnet50 rate measured before (docs/scan.md), and the stage that bounds it
  (docs/scale.md explains it).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

# resnet50 crops/s on one H200 at bf16, measured 2026-11-28 (docs/scan.md)
H200_RESNET50_PER_S = 3900.0
# the larger run: this many times the job's photos (steady rate and fixed start from the two)
LARGE = 4
NODE_CORES = 16


def _stages(files: list[Path], det_dir: Path) -> dict[str, float]:
    """Milliseconds per file of each stage alone, one core, this process."""
    from deepaudit.audit.provenance import image_signals, inspect_provenance
    from deepaudit.audit.scan import load_scan_detectors, result_line
    from deepaudit.audit.verdict import Fusion
    from deepaudit.c2pa_layer import make_context
    from deepaudit.detectors.inference import score_prepared
    from deepaudit.media import file_sha256, load_file, read_image, read_video

    loaded = load_scan_detectors([det_dir], "cpu", "auto", "torch", 0)
    spec = loaded[0].spec
    warm = spec.prepare(read_image(next(p for p in files if p.suffix != ".mp4")))
    score_prepared(loaded[0].det, [warm], video=[False])  # first-call setup is not per file
    ctx = make_context(None)
    t = dict.fromkeys(
        ("read", "hash", "c2pa", "metadata_watermark", "decode", "prepare", "inference"), 0.0
    )
    t["verdict_line"] = 0.0
    sizes = []
    inputs, video = [], []

    def clock(name: str, fn):
        s = time.perf_counter()
        out = fn()
        t[name] += time.perf_counter() - s
        return out

    for p in files:
        src = clock("read", lambda p=p: load_file(p))
        clock("hash", lambda p=p: file_sha256(p))
        prov = clock("c2pa", lambda p=p, src=src: inspect_provenance(p, context=ctx, source=src))
        if p.suffix == ".mp4":
            px = clock("decode", lambda p=p, src=src: read_video(p, num_frames=8, source=src))
            px = px.frames
        else:
            px = clock("decode", lambda p=p, src=src: read_image(p, source=src))
            clock(
                "metadata_watermark", lambda p=p, px=px, src=src: image_signals(p, px, source=src)
            )
        x = clock("prepare", lambda px=px: spec.prepare(px))
        inputs.append(x)
        video.append(p.suffix == ".mp4")
        sizes.append(len(pickle.dumps({"prov": prov.to_json(), "x": x}, protocol=5)))
    scores = clock(
        "inference",
        lambda: score_prepared(loaded[0].det, inputs, video=video, batch_size=32),
    )
    policy = Fusion(rule="mean-logit", band=(0.2, 0.8), domains={}, calibrated={})
    for p, sc in zip(files, scores, strict=True):
        rec = {"path": str(p), "kind": "image", "scores": {"det": sc.to_json()}}
        clock("verdict_line", lambda rec=rec: result_line(rec, policy))
    ms = {k: round(1000 * v / len(files), 3) for k, v in t.items()}
    ms["record_bytes"] = round(sum(sizes) / len(sizes))
    return ms


def _r(x: float | None) -> float | None:
    return round(x, 3) if x is not None else None


def _model(stages: dict[str, float], driver_lines_per_s: float, driver: dict[str, float]) -> dict:
    """Files/s at 1, 10 and 100 nodes of 16 cores + 1 H200: the slowest stage bounds it."""
    from deepaudit.audit.scan_ray import COUNT_CAP, rows_per_block

    cpu_ms = sum(
        stages[k] for k in ("read", "hash", "c2pa", "metadata_watermark", "decode", "prepare")
    )
    gpu_per_node = H200_RESNET50_PER_S  # one crop per image file
    cpu_per_node = NODE_CORES * 1000.0 / cpu_ms
    out = {}
    for nodes in (1, 10, 100):
        tasks = nodes * NODE_CORES - 1  # less the one actor's core where GPUs are absent
        block = rows_per_block(COUNT_CAP, tasks)  # a job of millions: the count is capped
        limits = {
            "cpu_stages": round(nodes * cpu_per_node),
            "detector_gpu": round(nodes * gpu_per_node),
            "results_writing": round(driver_lines_per_s),
            # the driver's own CPU per file (Ray Data's executor per block through the
            # stages, the results loop per file), one core
            "driver": round(
                1000.0
                / (driver["executor_ms_per_block"] / block + driver["results_loop_ms_per_row"])
            ),
        }
        bound = min(limits, key=limits.get)
        out[f"{nodes}_nodes"] = {
            "limits_files_per_s": limits,
            "bound_by": bound,
            "rows_per_block": block,
        }
    out["cpu_ms_per_file"] = round(cpu_ms, 3)
    out["assumes"] = (
        f"{NODE_CORES} cores and 1 H200 per node ({H200_RESNET50_PER_S:.0f} resnet50 crops/s, "
        "docs/scan.md); CPU stages scale with cores; one driver writes every line"
    )
    return out


def _driver_lines_per_s(n: int = 20000) -> float:
    """Lines/s one process appends to results.jsonl, flushed per batch of 32."""
    line = json.dumps({"path": "/data/inbox/x" * 3, "verdict": "no-evidence", "pad": "x" * 900})
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "r.jsonl", "w") as fh:
        s = time.perf_counter()
        for i in range(n):
            fh.write(line + "\n")
            if i % 32 == 31:
                fh.flush()
        return n / (time.perf_counter() - s)


def _driver_ms(rows_per_block: int) -> dict[str, float]:
    """The driver's CPU per block (Ray Data's streaming executor moving blocks through three
    trivial stages, as a file block goes through listing, the CPU stage and the actors, warm)
    and per row (the results loop: a block's columns, one write per line), on this machine's
    running Ray instance: what one driver pays per file at scale."""
    import pyarrow as pa
    import ray.data

    def pipe(n_blocks: int) -> None:
        ds = ray.data.range(n_blocks * rows_per_block, override_num_blocks=n_blocks)
        ds.context.issue_detectors_config.detectors = []  # no advice on the trivial stages
        ds = ds.map_batches(lambda b: b, batch_size=None)
        ds = ds.map_batches(lambda b: b, batch_size=None, memory=1)  # not fused: three stages
        ds = ds.map_batches(lambda b: b, batch_size=None, memory=2)
        for _ in ds.iter_batches(batch_size=None):
            pass

    pipe(20)  # workers started
    n_blocks = 200
    c = time.process_time()
    pipe(n_blocks)
    per_block = 1000 * (time.process_time() - c) / n_blocks
    line = json.dumps({"path": "/data/x.jpg", "verdict": "no-evidence", "pad": "x" * 900}) + "\n"
    table = pa.table({k: [line] * 32 for k in ("path", "note", "route", "line", "engine")})
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "r.jsonl", "w") as fh:
        c = time.process_time()
        for _ in range(300):
            cols = table.to_pydict()
            for row in zip(*cols.values(), strict=True):
                fh.write(row[3])
            fh.flush()
        per_row = 1000 * (time.process_time() - c) / (300 * 32)
    return {
        "executor_ms_per_block": round(per_block, 3),
        "results_loop_ms_per_row": round(per_row, 4),
    }


def _timed(fn) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds (every thread: for a Ray driver, its
    streaming executor too) of ``fn()``."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def _best(fn, k: int = 2) -> tuple[float, float]:
    """The fastest of ``k`` runs of ``fn`` (other jobs on a shared machine only slow it)."""
    return min((_timed(fn) for _ in range(k)), key=lambda t: t[0])


def _two_sizes(n_small: int, small: float, n_big: int, big: float) -> dict:
    """From whole runs over ``n_small`` and ``n_big`` files: the per-file rate between them
    (what a long scan sees) and the fixed start it implies (seconds at zero files)."""
    dt = big - small
    rate = (n_big - n_small) / dt if dt > 0 else None
    return {"steady_files_per_s": rate, "fixed_s": small - n_small / rate if rate else None}


def _files_for(ratio: float, local: dict, ray: dict) -> int | None:
    """Files from which a whole Ray run reaches ``ratio`` of the local scan's rate, by the
    two-size model of each (None where its steady rate never gets there)."""
    try:
        fl, sl = local["fixed_s"], local["steady_files_per_s"]
        fr, sr = ray["fixed_s"], ray["steady_files_per_s"]
        # (fl + n/sl) / (fr + n/sr) >= ratio  <=>  n (1/sl - ratio/sr) >= ratio fr - fl
        gain = 1 / sl - ratio / sr
        need = ratio * fr - fl
    except (TypeError, ZeroDivisionError):
        return None
    if need <= 0:
        return 0
    return int(need / gain) + 1 if gain > 0 else None


def run(*, quick: bool = False) -> dict:
    import ray

    from benchmarks.scan import make_files
    from deepaudit.audit.ray_kept import stop_kept_actors
    from deepaudit.audit.scan import run_scan
    from deepaudit.audit.scan_ray import RayScanStats, run_scan_ray
    from deepaudit.detectors import create_detector
    from deepaudit.devices import cpu_flags

    cores = os.cpu_count() or 1
    model, size = ("resnet10t", 64) if quick else ("resnet18", 224)
    n, clips, side = (96, 2, 512) if quick else (240, 4, 1024)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private instance on this machine
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # two folders, as a user scans: the job of the ratio (n photos and the clips) and one
        # with four times the photos (the job's files hard-linked in, so the same bytes)
        data = root / "large"
        photos = make_files(data, LARGE * n, side, clips, resized=True)
        small = root / "job"
        for p in photos[:n] + photos[LARGE * n :]:
            dest = small / p.relative_to(data)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(p, dest)
        job, large = [small], [data]
        n_job, n_large = n + clips, LARGE * n + clips
        det_dir = root / "det"
        create_detector("timm", model=model, input_size=size, device="cpu").save_pretrained(det_dir)
        kw = {
            "detectors": [det_dir],
            "device": "cpu",
            "engine": "torch",  # no per-process engine timing in the figures
            "report": False,
            "restart": True,
        }

        local_job = _best(lambda: run_scan(job, root / "local", **kw))
        local_large = _best(lambda: run_scan(large, root / "local", **kw))
        local = _two_sizes(n_job, local_job[0], n_large, local_large[0])

        scaling = {}
        cold = ray_job = ray_large = kept_job = kept_large = None
        ray_model: dict = {}
        driver: dict[str, float] = {}
        used: list[RayScanStats] = []
        for cpus in range(1, cores + 1):
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
            try:
                # the first run on a fresh instance pays Ray's worker start: cold, once
                first = _timed(lambda: run_scan_ray(job, root / "ray", address="local", **kw))
                k = 2 if cpus == cores else 1
                used.clear()
                ray_job = _best(
                    lambda: run_scan_ray(job, root / "ray", address="local", stats=used, **kw), k
                )
                ray_large = _best(
                    lambda: run_scan_ray(large, root / "ray", address="local", **kw), k
                )
                if cpus == cores:
                    cold = n_job / first[0]
                    driver = _driver_ms(used[0].rows_per_block)
                    # detector actors kept loaded between jobs (--keep-actors): the first
                    # run starts them, the next ones find them
                    kept = {**kw, "address": "local", "keep_actors": 10.0}
                    try:
                        run_scan_ray(job, root / "ray-kept", **kept)
                        kept_job = _best(
                            lambda kept=kept: run_scan_ray(job, root / "ray-kept", **kept)
                        )
                        kept_large = _best(
                            lambda kept=kept: run_scan_ray(large, root / "ray-kept", **kept)
                        )
                    finally:
                        stop_kept_actors()
            finally:
                ray.shutdown()
            ray_model = _two_sizes(n_job, ray_job[0], n_large, ray_large[0])
            scaling[str(cpus)] = {
                "files_per_s": round(n_job / ray_job[0], 2),
                f"files_per_s_{n_large}_files": round(n_large / ray_large[0], 2),
                "steady_files_per_s": _r(ray_model["steady_files_per_s"]),
                "rows_per_block": used[0].rows_per_block,
            }
        driver_ms = 1000 * (ray_large[1] - ray_job[1]) / (n_large - n_job)
        stages = _stages([*photos[:n], *photos[LARGE * n :]], det_dir)
        lines = _driver_lines_per_s()
    local_fps, ray_fps = n_job / local_job[0], n_job / ray_job[0]
    kept_model = _two_sizes(n_job, kept_job[0], n_large, kept_large[0])
    steady_l, steady_r = local["steady_files_per_s"], ray_model["steady_files_per_s"]
    return {
        "cpu_flags": cpu_flags(),
        "cores": cores,
        "load_average_1m": {
            "before": round(load_before[0], 2),
            "after": round(os.getloadavg()[0], 2),
        },
        "files": n_job,
        "files_large": n_large,
        "photo_side": side,
        "detector": f"timm {model} at {size}², CPU",
        "local_files_per_s": round(local_fps, 2),
        "ray_files_per_s": round(ray_fps, 2),
        "ray_cold_files_per_s": round(cold, 2),
        "overhead_ratio": round(ray_fps / local_fps, 3),
        "overhead_ratio_large": round(local_large[0] / ray_large[0], 3),
        "overhead_goal": 0.8,
        "local_steady_files_per_s": _r(steady_l),
        "ray_steady_files_per_s": _r(steady_r),
        "overhead_ratio_steady": _r(steady_r / steady_l if steady_r and steady_l else None),
        "fixed_start_s": {
            "local": _r(local["fixed_s"]),
            "ray": _r(ray_model["fixed_s"]),
            "ray_kept_actors": _r(kept_model["fixed_s"]),
        },
        "files_for_ratio_0.8": _files_for(0.8, local, ray_model),
        "kept_actors_files_per_s": round(n_job / kept_job[0], 2),
        "kept_actors_steady_files_per_s": _r(kept_model["steady_files_per_s"]),
        "overhead_ratio_steady_kept_actors": _r(
            kept_model["steady_files_per_s"] / steady_l
            if kept_model["steady_files_per_s"] and steady_l
            else None
        ),
        "overhead_ratio_kept_actors": round(local_job[0] / kept_job[0], 3),
        "overhead_ratio_kept_actors_large": round(local_large[0] / kept_large[0], 3),
        "files_for_ratio_0.8_kept_actors": _files_for(0.8, local, kept_model),
        "scaling_by_ray_cpus": scaling,
        "stages_ms_per_file": stages,
        "driver_cpu_ms_per_file_in_scan": round(driver_ms, 3),
        "driver": driver,
        "driver_write_lines_per_s": round(lines),
        "model": _model(stages, lines, driver),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Small sizes, about a minute.")
    args = parser.parse_args(argv)
    json.dump(run(quick=args.quick), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
