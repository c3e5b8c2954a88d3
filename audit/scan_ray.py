"""``deepaudit scan --ray``: the local scan's per-file work on a Ray cluster, with Ray Data.

One streaming Ray Data pipeline per window of folders, so Ray's backpressure bounds what is
in flight and the driver never holds a list of files:

1. the driver walks folders only (:func:`deepaudit.walk.walk_shards`), a window at a time;
2. listing tasks list each folder's files by the walker's rules
   (:func:`deepaudit.walk.list_shard`) and attach what an earlier run recorded for them;
3. CPU tasks run :func:`deepaudit.audit.scan.examine_file` per file — hashing, C2PA,
   metadata, watermark, decoding and the detectors' inputs — or skip a file unchanged since
   the earlier run (:func:`deepaudit.audit.scan.is_unchanged`: size, mtime and SHA-256);
   the earlier run's records (read on the driver, as the local scan does) travel to the
   tasks with their folder;
4. an actor pool scores them: each actor loads the detectors once (one GPU each where the
   cluster has GPUs, one CPU otherwise) and makes every record final
   (:func:`deepaudit.audit.scan.result_line`: fusion, verdict, reasons);
5. the driver appends each line to ``results.jsonl`` as it comes, flushed per batch, so a
   killed driver loses only lines in flight and the rerun redoes exactly those.

The summary, the CSV and the report are the local scan's (:func:`finish_scan`). A file that
cannot be read is an error row, as in the local scan; a second route to the same file
through another folder (a hard link, a linked file) is dropped by the driver, which keeps
only such files' inode numbers.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from deepaudit.audit.results import ScanSummary
from deepaudit.audit.scan import (
    OUTPUT_NAMES,
    ScanOptions,
    examine_file,
    finish_scan,
    is_unchanged,
    load_scan_detectors,
    prepare_scan,
    result_line,
    score_records,
)
from deepaudit.audit.verdict import DEFAULT_BAND, Fusion
from deepaudit.c2pa_layer import SIDECAR_SUFFIX, asset_of_sidecar
from deepaudit.cluster import connect_ray
from deepaudit.errors import error_record
from deepaudit.walk import WalkShard, list_shard, walk_shards

__all__ = ["ACTOR_MEMORY", "ROWS_PER_BLOCK", "RayScanStats", "rows_per_block", "run_scan_ray"]

logger = logging.getLogger(__name__)

# folders per pipeline run: the driver holds one window of folder names, never file names
WINDOW = 4096
# bytes of memory a detector actor reserves (Ray's scheduling resource)
ACTOR_MEMORY = 1024 * 1024 * 1024
# files per block out of the listing: at least ROWS_PER_BLOCK (small blocks spread the CPU
# stage over the tasks), one per cluster CPU on big clusters, at most MAX_ROWS_PER_BLOCK. The
# driver schedules every block through every stage, ~15 ms of its CPU per block here, so
# blocks grow with the cluster or the driver becomes the bottleneck (docs/scale.md)
ROWS_PER_BLOCK = 8
MAX_ROWS_PER_BLOCK = 1024
# row notes: what a row is when it carries no file to write
_WALK_ERROR, _SIDECAR, _UNCHANGED = "walk-error", "sidecar", "unchanged"


def rows_per_block(cpus: float) -> int:
    """Files per block on a cluster of ``cpus`` CPUs (see ROWS_PER_BLOCK)."""
    return int(min(MAX_ROWS_PER_BLOCK, max(ROWS_PER_BLOCK, cpus)))


@dataclass(frozen=True)
class RayScanStats:
    """Where the scan ran: cluster resources and the pool it used (for the summary's log)."""

    nodes: int
    cpus: float
    gpus: float
    actors: int
    gpu_actors: bool
    rows_per_block: int


def run_scan_ray(
    paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    address: str = "auto",
    detectors: Sequence[str | os.PathLike[str]] = (),
    trust_anchors: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    actors: int | None = None,
    frames: int = 8,
    batch_size: int = 32,
    csv: bool = False,
    report: bool = True,
    watermark: bool = True,
    progress: Callable[[int, int | None], None] | None = None,
    device: str = "auto",
    restart: bool = False,
    precision: str = "auto",
    default_trust: bool = True,
    fusion: str = "mean-logit",
    band: tuple[float, float] = DEFAULT_BAND,
    engine: str = "auto",
    legacy_anchors: str | os.PathLike[str] | None = None,
    stats: list[RayScanStats] | None = None,
) -> ScanSummary:
    """:func:`deepaudit.audit.scan.run_scan` on Ray (see the module docstring).

    ``workers``: CPU tasks at a time (default: the cluster's CPUs less the actors');
    ``actors``: detector actors (default: one per GPU, or one CPU actor). ``stats``, when
    given, receives where the scan ran."""
    import ray

    connect_ray(address, num_cpus=workers)
    resources = ray.cluster_resources()
    gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 1))
    gpu_actors = gpus >= 1 and device != "cpu"
    n_actors = actors or (int(gpus) if gpu_actors else 1)
    # the driver loads the detectors on its CPU for their identity and the resume check only
    plan = prepare_scan(
        out_dir,
        detectors=detectors,
        trust_anchors=trust_anchors,
        frames=frames,
        watermark=watermark,
        device="cpu",
        restart=restart,
        precision="fp32" if gpu_actors else precision,
        default_trust=default_trust,
        fusion=fusion,
        band=band,
        engine=engine,
        legacy_anchors=legacy_anchors,
    )
    summary = plan.summary
    # a CPU actor holds a core where the cluster has one to spare; on a smaller one it shares
    # the cores with the CPU tasks, as the local scan's inference shares them with its workers
    actor_cpus = 0 if gpu_actors or cpus < n_actors + 1 else 1
    n_tasks = workers or max(1, int(cpus) - (n_actors * actor_cpus if detectors else 0))
    if stats is not None:
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        stats.append(
            RayScanStats(
                nodes, cpus, gpus, n_actors if detectors else 0, gpu_actors, rows_per_block(cpus)
            )
        )
    scorer = _Scorer(
        detectors=[str(Path(d).resolve()) for d in detectors],
        device=("cuda" if device == "auto" else device) if gpu_actors else "cpu",
        precision=precision,
        engine=engine,
        policy=plan.policy,
        batch_size=batch_size,
        threads=max(1, actor_cpus),
    )
    walk_errors: list[str] = []
    by_folder: dict[str, dict[str, Any]] = defaultdict(dict)
    for path, prev in plan.done.items():
        by_folder[str(Path(path).parent)][path] = prev
    plan.done.clear()  # handed to the listing tasks folder by folder
    seen_routes: set[str] = set()
    replaced = False
    written = 0
    shards = walk_shards(paths, errors=walk_errors, exclude=[plan.out])
    with plan.results.open("a", encoding="utf-8") as fh:
        while window := list(islice(shards, WINDOW)):
            rows = [_shard_row(s, by_folder) for s in window]
            ds = _pipeline(
                rows,
                plan.opts,
                scorer,
                n_tasks,
                n_actors,
                gpu_actors,
                actor_cpus,
                rows_per_block(cpus),
            )
            for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                cols = batch.to_pydict()
                for path, note, route, line, eng in zip(
                    cols["path"],
                    cols["note"],
                    cols["route"],
                    cols["line"],
                    cols["engine"],
                    strict=True,
                ):
                    if note == _WALK_ERROR:
                        walk_errors.append(path)
                    elif note == _SIDECAR:
                        summary.sidecars_attached.append(path)
                    elif note == _UNCHANGED:
                        summary.skipped_unchanged += 1
                    elif route and route in seen_routes:
                        continue  # the same file reached through another folder
                    else:
                        if route:
                            seen_routes.add(route)
                        replaced |= note == "rescan"
                        fh.write(line)
                        written += 1
                        if eng:
                            _record_engines(summary, json.loads(eng))
                fh.flush()
                if progress is not None:
                    progress(written + summary.skipped_unchanged, None)
    summary.scanned = written
    summary.walk_errors = walk_errors
    summary.sidecars_attached.sort()
    return finish_scan(plan, compact=replaced, csv=csv, report=report)


def _record_engines(summary: Any, engines: dict[str, Any]) -> None:
    for key, choice in engines.items():
        if key in summary.detectors:
            summary.detectors[key]["engine"] = choice


def _shard_row(shard: WalkShard, by_folder: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A shard with what the earlier run recorded for its files (popped: each folder once)."""
    if shard.folder:
        prev = by_folder.pop(str(Path(shard.path)), {})
    else:
        folder = by_folder.get(str(Path(shard.path).parent), {})
        prev = {shard.path: folder[shard.path]} if shard.path in folder else {}
    return {"shard": shard.path, "folder": shard.folder, "prev": json.dumps(prev)}


def _pipeline(
    rows: list[dict[str, Any]],
    opts: ScanOptions,
    scorer: _Scorer,
    n_tasks: int,
    n_actors: int,
    gpu_actors: bool,
    actor_cpus: int,
    block_rows: int,
):
    import ray.data
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), n_tasks * 4)))
    # paths stay as the user gave them (rows match the local scan's): tasks work from the
    # driver's folder, which a real cluster mounts at the same place on every node
    here = {"cwd": os.getcwd()}
    ds = ds.flat_map(
        _list_files, fn_kwargs=here, compute=TaskPoolStrategy(size=n_tasks), num_cpus=1
    )
    # blocks of a few files: the CPU stage spreads over the tasks, and memory stays small
    ds = ds.repartition(target_num_rows_per_block=block_rows)
    ds = ds.map_batches(
        _examine_batch,
        fn_kwargs={"opts": opts, **here},
        batch_format="pyarrow",
        batch_size=None,
        compute=TaskPoolStrategy(size=n_tasks),
        num_cpus=1,
    )
    if not scorer.detectors:
        return ds.map_batches(scorer, batch_format="pyarrow", batch_size=None, num_cpus=1)
    return ds.map_batches(
        _ScoreActor,
        fn_constructor_kwargs={"scorer": scorer},
        batch_format="pyarrow",
        batch_size=scorer.batch_size,
        compute=ActorPoolStrategy(size=n_actors),
        num_gpus=1 if gpu_actors else 0,
        num_cpus=actor_cpus,
        # room for the models; also keeps Ray from fusing the CPU tasks into the actors,
        # which would leave the decoding to as few processes as there are actors
        memory=ACTOR_MEMORY,
    )


# --------------------------------------------------------------------------- cluster side


def _list_files(row: dict[str, Any], cwd: str) -> list[dict[str, Any]]:
    """One shard's files, each with what the earlier run recorded for it."""
    _enter(cwd)
    shard = WalkShard(row["shard"], bool(row["folder"]))
    prev = json.loads(row["prev"])
    errors: list[str] = []
    out = []
    for p in list_shard(shard, errors=errors, skip_names=OUTPUT_NAMES):
        note = ""
        if p.suffix.lower() == SIDECAR_SUFFIX and asset_of_sidecar(p) is not None:
            note = _SIDECAR  # read with its asset: no row of its own
        out.append(
            {
                "path": str(p),
                "note": note,
                "prev": json.dumps(prev.get(str(p))),
                "route": "" if shard.folder and not _many_routes(p) else _route(p),
            }
        )
    out.extend({"path": e, "note": _WALK_ERROR, "prev": "null", "route": ""} for e in errors)
    return out


def _enter(cwd: str) -> None:
    if os.getcwd() != cwd and os.path.isdir(cwd):
        os.chdir(cwd)


def _many_routes(p: Path) -> bool:
    """Whether another folder may lead to the same file (a link, or a named file)."""
    try:
        return p.is_symlink() or p.stat().st_nlink > 1
    except OSError:
        return False


def _route(p: Path) -> str:
    try:
        st = p.stat()
    except OSError:
        return ""
    return f"{st.st_dev}:{st.st_ino}"


def _examine_batch(batch: Any, opts: ScanOptions, cwd: str) -> Any:
    """The local scan's worker step on each file; a file unchanged since the earlier run is
    passed on as such, and nothing about a file stops the batch."""
    import pyarrow as pa

    _enter(cwd)

    cols = batch.to_pydict()
    recs: list[bytes] = []
    notes: list[str] = []
    for path, note, prev in zip(cols["path"], cols["note"], cols["prev"], strict=True):
        before = json.loads(prev)
        rec: dict[str, Any] | None = None
        if not note and before is not None:
            note = _UNCHANGED if is_unchanged(Path(path), tuple(before)) else "rescan"
        if note in ("", "rescan"):
            try:
                rec = examine_file(path, opts)
            except Exception as exc:  # examine_file's own guard missed it: still one row
                rec = {"path": path, "kind": "other", "error": error_record(exc, Path(path))}
        notes.append(note)
        recs.append(pickle.dumps(rec, protocol=5) if rec is not None else b"")
    return pa.table(
        {
            "path": cols["path"],
            "note": notes,
            "route": cols["route"],
            "rec": pa.array(recs, type=pa.binary()),
        }
    )


@dataclass(frozen=True)
class _Scorer:
    """What a detector actor needs to score records and make them final."""

    detectors: list[str]
    device: str
    precision: str
    engine: str
    policy: Fusion
    batch_size: int
    threads: int

    def __call__(self, batch: Any, loaded: list[Any] | None = None) -> Any:
        import pyarrow as pa

        cols = batch.to_pydict()
        recs = [pickle.loads(r) if r else None for r in cols["rec"]]
        todo = [r for r in recs if r is not None]
        if loaded:
            score_records(todo, loaded, self.batch_size)
        lines = []
        for path, rec in zip(cols["path"], recs, strict=True):
            if rec is None:
                lines.append("")
                continue
            try:
                lines.append(result_line(rec, self.policy))
            except Exception as exc:  # never lose a file to one bad record
                bad = {"path": path, "kind": "other", "error": error_record(exc, Path(path))}
                lines.append(result_line(bad, self.policy))
        engines = {}
        for ld in loaded or ():
            choice = getattr(ld.det, "engine_choice", None)
            if choice is not None:
                engines[ld.key] = choice.to_json()
        eng = json.dumps(engines) if engines else ""
        return pa.table(
            {
                "path": cols["path"],
                "note": cols["note"],
                "route": cols["route"],
                "line": lines,
                "engine": [eng] * len(lines),
            }
        )


class _ScoreActor:
    """A Ray actor: loads the detectors once, then scores every batch it is given."""

    def __init__(self, scorer: _Scorer) -> None:
        self.scorer = scorer
        self.loaded = load_scan_detectors(
            scorer.detectors, scorer.device, scorer.precision, scorer.engine, os.cpu_count() or 1
        )
        for ld in self.loaded:
            ld.det.inference_threads = scorer.threads

    def __call__(self, batch: Any) -> Any:
        return self.scorer(batch, self.loaded)
