"""``deepaudit scan --ray``: the local scan's per-file work on a Ray cluster, with Ray Data.

One streaming Ray Data pipeline for the whole job, so the detector actors load their models
once, Ray's backpressure bounds what is in flight, and the driver never holds a list of files:

1. a walk task walks the folders (:func:`deepaudit.walk.walk_shards`, the walker's rules,
   loops and second routes included) and streams them out, a few folders per block;
2. listing tasks list each folder's files by the same rules (:func:`deepaudit.walk.list_shard`)
   and cut them into blocks of :func:`rows_per_block` files: as many blocks as the CPU tasks
   can overlap, as few as keep the driver's per-block cost small (docs/scale.md);
3. one CPU stage runs :func:`deepaudit.audit.scan.examine_file` per file — hashing, C2PA,
   metadata, watermark, decoding and the detectors' inputs — or passes on a file unchanged
   since the earlier run (:func:`deepaudit.audit.scan.is_unchanged`: size, mtime, SHA-256),
   whose record it finds in the earlier run's records, put in the object store in parts;
4. an actor pool scores whole blocks: each actor loads the detectors once for the job (one
   GPU each where the cluster has GPUs, CPU otherwise) and makes every record final
   (:func:`deepaudit.audit.scan.result_line`: fusion, verdict, reasons);
5. the driver appends each line to ``results.jsonl`` as blocks come, flushed per block, so a
   killed driver loses only lines in flight and the rerun redoes exactly those.

A worker that dies (killed for memory, a crash in a decoder) costs no files: Ray retries its
block once (a CPU task again, an actor restarted); a block that kills its worker twice is let
go, and the driver, which counts every folder's files against the listing's tally, writes
those files as error rows. The summary, the CSV and the report are the local scan's
(:func:`finish_scan`). A second route to the same file through another folder (a hard link,
a linked file) is dropped by the driver, which keeps only such files' inode numbers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import pickle
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from deepaudit.audit.gpu_decode import GpuDecode
from deepaudit.audit.results import ScanSummary
from deepaudit.audit.scan import (
    OUTPUT_NAMES,
    ScanOptions,
    ScanPlan,
    examine_file,
    finish_scan,
    is_unchanged,
    load_scan_detectors,
    localize_record,
    prepare_scan,
    result_line,
    score_records,
    write_heatmap,
)
from deepaudit.audit.verdict import DEFAULT_BAND, Fusion
from deepaudit.c2pa_layer import SIDECAR_SUFFIX, asset_of_sidecar
from deepaudit.cluster import connect_ray
from deepaudit.errors import MediaError, error_record
from deepaudit.walk import WalkShard, list_shard, walk_files, walk_shards

__all__ = [
    "ACTOR_MEMORY",
    "MAX_ROWS_PER_BLOCK",
    "MIN_ROWS_PER_BLOCK",
    "RayScanStats",
    "rows_per_block",
    "run_scan_ray",
]

logger = logging.getLogger(__name__)

# bytes of memory a detector actor reserves (Ray's scheduling resource)
ACTOR_MEMORY = 1024 * 1024 * 1024
# A CPU detector actor keeps a core of its own only where the cluster has this many per actor:
# per file the CPU stages (read, hash, C2PA, metadata, decode) cost ~4x a small detector's
# CPU inference (benchmarks/scale.py), so on 2 cores a core kept for the actor sat idle most
# of the time while the CPU tasks had one core (steady Ray/local 0.77; sharing both: see
# docs/scale.md)
ACTOR_CORE_SHARE = 4
# Files per block. The driver's streaming executor spends ~10-20 ms of its CPU on every
# block through the stages (docs/scale.md), so a block must hold enough files to make that
# small against their work; and each CPU task wants a few blocks, so the stages overlap and
# the last block's wait is short. Hence BLOCKS_PER_TASK blocks per CPU task over the files
# the driver counts first (at most COUNT_CAP), between MIN and MAX_ROWS_PER_BLOCK.
MIN_ROWS_PER_BLOCK = 32
MAX_ROWS_PER_BLOCK = 1024
BLOCKS_PER_TASK = 4
COUNT_CAP = 65536
# folders per block out of the walk task: the listing tasks share the folders
FOLDERS_PER_BLOCK = 16
# records of an earlier run per object-store part (the CPU tasks fetch the parts they need)
PREV_PART = 4096
# row notes: what a row is when it carries no file to write
_WALK_ERROR, _SIDECAR, _UNCHANGED = "walk-error", "sidecar", "unchanged"
# a folder's tally (its rows, from its listing task) and the walk's (folders, error rows)
_TALLY, _WALKED = "tally", "walked"
_NOT_FILES = (_TALLY, _WALKED)


def rows_per_block(files: int, tasks: int) -> int:
    """Files per block for ``files`` files over ``tasks`` CPU tasks (see BLOCKS_PER_TASK).

    Never fewer than one file per task (up to MAX_ROWS_PER_BLOCK): the driver's blocks per
    second then stay at the files per second of one task, however large the cluster."""
    per = math.ceil(files / (BLOCKS_PER_TASK * max(1, tasks)))
    floor = max(MIN_ROWS_PER_BLOCK, min(tasks, MAX_ROWS_PER_BLOCK))
    return int(min(MAX_ROWS_PER_BLOCK, max(floor, per)))


@dataclass(frozen=True)
class RayScanStats:
    """Where the scan ran: cluster resources and the pool it used (for the summary's log)."""

    nodes: int
    cpus: float
    gpus: float
    actors: int
    gpu_actors: bool
    rows_per_block: int


@dataclass
class _Tally:
    """What the driver has seen, against what the walk and the listing said there was."""

    rows: int = 0  # every row but the tallies: files, sidecars, errors, second routes
    folders: int = 0
    expected: int = 0
    walked: tuple[int, int] | None = None  # (folders, walk-error rows) once the walk is done

    @property
    def complete(self) -> bool:
        return self.walked is not None and (
            self.folders == self.walked[0] and self.rows == self.expected + self.walked[1]
        )


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
    keep_actors: float = 0.0,
) -> ScanSummary:
    """:func:`deepaudit.audit.scan.run_scan` on Ray (see the module docstring).

    ``workers``: CPU tasks at a time (default: the cluster's CPUs less the actors');
    ``actors``: detector actors (default: one per GPU, or one CPU actor); ``batch_size``:
    files per forward pass. ``stats``, when given, receives where the scan ran.
    ``keep_actors``: minutes the detector actors stay loaded after the job, for the next scan
    with the same detectors (:mod:`deepaudit.audit.ray_kept`); 0: they end with the job."""
    import ray

    connect_ray(address, num_cpus=workers)
    resources = ray.cluster_resources()
    gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 1))
    gpu_actors = gpus >= 1 and device != "cpu"
    n_actors = actors or (int(gpus) if gpu_actors else 1)
    # the driver needs the detectors' identity and input specs only, not their networks: the
    # actors load those (describe_scan_detectors: from a cache after the first time)
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
        describe_only=True,
    )
    summary = plan.summary
    # each actor decodes on its own node, in the CPU stage: the batched decode is local-only
    summary.gpu_decode = GpuDecode("off", False, device, "not with --ray: nodes decode").to_json()
    # a CPU actor holds a core where the cluster has ACTOR_CORE_SHARE cores per actor; on a
    # smaller one it shares the cores with the CPU tasks, as the local scan's inference shares
    # them with its workers
    actor_cpus = 0 if gpu_actors or cpus < ACTOR_CORE_SHARE * n_actors else 1
    n_tasks = workers or max(1, int(cpus) - (n_actors * actor_cpus if detectors else 0))
    # a first count, capped, sizes the blocks; the walk itself streams on the cluster
    listed = walk_files(paths, exclude=[plan.out], skip_names=OUTPUT_NAMES)
    counted = sum(1 for _ in islice(listed, COUNT_CAP))
    block_rows = rows_per_block(counted, n_tasks)
    if stats is not None:
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        stats.append(
            RayScanStats(nodes, cpus, gpus, n_actors if detectors else 0, gpu_actors, block_rows)
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
    # the earlier run's records, in parts the CPU tasks fetch by path (the refs stay alive here)
    prev_refs = [ray.put(part) for part in _parts(plan.done)]
    plan.done.clear()
    kept: list[str] = []  # the names of detector actors that outlive the job
    lease = contextlib.nullcontext()
    if keep_actors > 0 and detectors:
        from deepaudit.audit.ray_kept import held, kept_actor_names

        kept = kept_actor_names(scorer, n_actors)
        lease = held(kept, keep_actors)  # they must not expire before their first block
    ds = _pipeline(
        paths,
        plan,
        scorer,
        prev_refs,
        n_tasks=n_tasks,
        n_actors=n_actors,
        gpu_actors=gpu_actors,
        actor_cpus=actor_cpus,
        block_rows=block_rows,
        kept=kept,
        keep_actors=keep_actors,
    )
    walk_errors: list[str] = []
    seen_routes: set[str] = set()
    replaced = False
    tally = _Tally()
    with lease, plan.results.open("a", encoding="utf-8") as fh, _quiet_ray_data():
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            cols = batch.to_pydict()
            for path, note, route, line, eng, heat in zip(
                cols["path"],
                cols["note"],
                cols["route"],
                cols["line"],
                cols["engine"],
                cols["heatmap"],
                strict=True,
            ):
                if note == _TALLY:
                    tally.folders += 1
                    tally.expected += int(route)
                    continue
                if note == _WALKED:
                    folders, errors = route.split(":")
                    tally.walked = (int(folders), int(errors))
                    continue
                tally.rows += 1
                if note == _WALK_ERROR:
                    walk_errors.append(path)
                elif note == _SIDECAR:
                    summary.sidecars_attached.append(path)
                elif route and route in seen_routes:
                    continue  # the same file reached through another folder
                elif note == _UNCHANGED:
                    summary.skipped_unchanged += 1
                    if route:  # its other routes are second routes in this run too
                        seen_routes.add(route)
                else:
                    if route:
                        seen_routes.add(route)
                    replaced |= note == "rescan"
                    if heat:
                        write_heatmap(plan.out, json.loads(line), heat)
                    fh.write(line)
                    summary.scanned += 1
                    if eng:
                        _record_engines(summary, json.loads(eng))
            fh.flush()
            if progress is not None:
                progress(summary.scanned + summary.skipped_unchanged, None)
        if not tally.complete:
            summary.scanned += _write_lost(paths, plan, fh, walk_errors)
    summary.walk_errors = walk_errors
    summary.sidecars_attached.sort()
    return finish_scan(plan, compact=replaced, csv=csv, report=report)


def _record_engines(summary: Any, engines: dict[str, Any]) -> None:
    for key, choice in engines.items():
        if key in summary.detectors:
            summary.detectors[key]["engine"] = choice


def _parts(done: dict[str, Any]) -> list[dict[str, Any]]:
    """The earlier run's records cut into parts by a hash of the path (see _part_of)."""
    if not done:
        return []
    parts: list[dict[str, Any]] = [{} for _ in range(math.ceil(len(done) / PREV_PART))]
    for path, prev in done.items():
        parts[_part_of(path, len(parts))][path] = prev
    return parts


def _part_of(path: str, n: int) -> int:
    return zlib.crc32(path.encode("utf-8", "surrogateescape")) % n


def _write_lost(
    paths: Sequence[str | os.PathLike[str]], plan: ScanPlan, fh: Any, walk_errors: list[str]
) -> int:
    """Error rows for the files whose blocks Ray let go after their workers died twice.

    Only after such a loss: the driver walks again and writes a row for each file that has
    none, so the scan still gives every file one row."""
    logger.warning("some files' workers died twice; writing them as error rows")
    fh.flush()
    with plan.results.open(encoding="utf-8") as rf:
        have = {json.loads(line)["path"] for line in rf if line.endswith("\n")}
    errors: list[str] = []
    lost = 0
    for p in walk_files(paths, errors=errors, exclude=[plan.out], skip_names=OUTPUT_NAMES):
        if str(p) in have or (
            p.suffix.lower() == SIDECAR_SUFFIX and asset_of_sidecar(p) is not None
        ):
            continue
        reason = "its Ray worker died twice while examining or scoring it (out of memory?)"
        rec = {"path": str(p), "kind": "other", "error": error_record(MediaError(p, reason))}
        fh.write(result_line(rec, plan.policy))
        lost += 1
    walk_errors.extend(e for e in errors if e not in walk_errors)
    return lost


def _pipeline(
    paths: Sequence[str | os.PathLike[str]],
    plan: ScanPlan,
    scorer: _Scorer,
    prev_refs: list[Any],
    *,
    n_tasks: int,
    n_actors: int,
    gpu_actors: bool,
    actor_cpus: int,
    block_rows: int,
    kept: Sequence[str] = (),
    keep_actors: float = 0.0,
):
    import ray.data
    from ray.data import TaskPoolStrategy

    # paths stay as the user gave them (rows match the local scan's): tasks work from the
    # driver's folder, which a real cluster mounts at the same place on every node
    here = {"cwd": os.getcwd()}
    roots = json.dumps([os.fspath(p) for p in paths])
    ds = ray.data.from_items([{"roots": roots, "exclude": str(plan.out)}])
    ctx = ds.context  # this dataset's settings (and its derived ones'), not the process's
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    # a block whose worker died twice is let go, not the job: the driver writes its files as
    # error rows (see _write_lost)
    ctx.max_errored_blocks = -1
    # the walk and the listing are light: no core of their own, one walk, n_tasks listings
    ds = ds.map_batches(_walk, fn_kwargs=here, batch_format="pyarrow", batch_size=None, num_cpus=0)
    ds = ds.repartition(target_num_rows_per_block=FOLDERS_PER_BLOCK)
    ds = ds.map_batches(
        _list_files,
        fn_kwargs=here,
        batch_format="pyarrow",
        batch_size=None,
        compute=TaskPoolStrategy(size=n_tasks),
        num_cpus=0,
    )
    ds = ds.repartition(target_num_rows_per_block=block_rows)
    with _quiet_ray_data():
        return _examine_and_score(
            ds,
            plan,
            scorer,
            prev_refs,
            here,
            n_tasks,
            n_actors,
            gpu_actors,
            actor_cpus,
            kept,
            keep_actors,
        )


@contextlib.contextmanager
def _quiet_ray_data() -> Iterator[None]:
    """Two Ray Data warnings that would reach every ``scan --ray`` user and ask nothing of
    them: Ray 2.60 deprecates ``ray_remote_args`` but names no parameter for the task
    retries the scan needs (``max_retries``, ``max_task_retries``), and a small job (one
    folder, one block) leaves CPU tasks idle by nature."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*is deprecated")
        warnings.filterwarnings("ignore", message="The maximum number of concurrent tasks for")
        yield


def _examine_and_score(
    ds: Any,
    plan: ScanPlan,
    scorer: _Scorer,
    prev_refs: list[Any],
    here: dict[str, str],
    n_tasks: int,
    n_actors: int,
    gpu_actors: bool,
    actor_cpus: int,
    kept: Sequence[str] = (),
    keep_actors: float = 0.0,
) -> Any:
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    ds = ds.map_batches(
        _examine_batch,
        fn_kwargs={"opts": plan.opts, "prev": prev_refs, **here},
        batch_format="pyarrow",
        batch_size=None,
        compute=TaskPoolStrategy(size=n_tasks),
        num_cpus=1,
        max_retries=1,  # a worker that dies (out of memory, a decoder crash): once more
    )
    if not scorer.detectors:
        return ds.map_batches(
            scorer, batch_format="pyarrow", batch_size=None, num_cpus=1, max_retries=1
        )
    if kept:  # named actors that outlive the job; light tasks hand them blocks
        from deepaudit.audit.ray_kept import score_with_kept, start_kept

        resources = {"num_cpus": actor_cpus, "num_gpus": 1 if gpu_actors else 0}
        resources |= {"memory": ACTOR_MEMORY}
        start_kept(kept, scorer, minutes=keep_actors, resources=resources)
        return ds.map_batches(
            score_with_kept,
            fn_kwargs={
                "names": list(kept),
                "scorer": scorer,
                "minutes": keep_actors,
                "resources": resources,
            },
            batch_format="pyarrow",
            batch_size=None,
            compute=TaskPoolStrategy(size=2 * n_actors),  # one waiting, one queued per actor
            num_cpus=0,
            max_retries=1,
        )
    return ds.map_batches(
        _ScoreActor,
        fn_constructor_kwargs={"scorer": scorer},
        batch_format="pyarrow",
        batch_size=None,  # a whole block; score_records cuts it into forward passes
        compute=ActorPoolStrategy(size=n_actors),
        num_gpus=1 if gpu_actors else 0,
        num_cpus=actor_cpus,
        # room for the models; also keeps Ray from fusing the CPU tasks into the actors,
        # which would leave the decoding to as few processes as there are actors
        memory=ACTOR_MEMORY,
        max_task_retries=1,  # an actor that dies is restarted and its block tried once more
    )


# --------------------------------------------------------------------------- cluster side


def _rows(rows: list[tuple[str, str, str]]) -> Any:
    import pyarrow as pa

    path, note, route = zip(*rows, strict=True) if rows else ((), (), ())
    return pa.table(
        {
            "path": pa.array(path, pa.string()),
            "note": pa.array(note, pa.string()),
            "route": pa.array(route, pa.string()),
        }
    )


def _walk(batch: Any, cwd: str) -> Iterator[Any]:
    """The walk's folders (and the files named directly) as they come, then its tally."""
    _enter(cwd)
    row = batch.to_pylist()[0]
    errors: list[str] = []
    folders = 0
    out: list[tuple[str, str, str]] = []
    for shard in walk_shards(json.loads(row["roots"]), errors=errors, exclude=[row["exclude"]]):
        folders += 1
        out.append((shard.path, "", "folder" if shard.folder else "file"))
        if len(out) >= FOLDERS_PER_BLOCK:
            yield _rows(out)
            out = []
    n_errors = len(errors)
    out.extend((e, _WALK_ERROR, "") for e in errors)
    out.append(("", _WALKED, f"{folders}:{n_errors}"))
    yield _rows(out)


def _list_files(batch: Any, cwd: str) -> Iterator[Any]:
    """Each shard's files, as they come, then the shard's tally (its number of rows)."""
    _enter(cwd)
    cols = batch.to_pydict()
    out: list[tuple[str, str, str]] = []
    for path, note, kind in zip(cols["path"], cols["note"], cols["route"], strict=True):
        if note:  # the walk's errors and tally pass on
            out.append((path, note, kind))
            continue
        shard = WalkShard(path, kind == "folder")
        errors: list[str] = []
        n = 0
        for p in list_shard(shard, errors=errors, skip_names=OUTPUT_NAMES):
            sidecar = p.suffix.lower() == SIDECAR_SUFFIX and asset_of_sidecar(p) is not None
            route = "" if shard.folder and not _many_routes(p) else _route(p)
            out.append((str(p), _SIDECAR if sidecar else "", route))
            n += 1
            if len(out) >= MAX_ROWS_PER_BLOCK:
                yield _rows(out)
                out = []
        out.extend((e, _WALK_ERROR, "") for e in errors)
        out.append((path, _TALLY, str(n + len(errors))))
    yield _rows(out)


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


def _examine_batch(batch: Any, opts: ScanOptions, prev: list[Any], cwd: str) -> Any:
    """The local scan's worker step on each file of a block; a file unchanged since the
    earlier run is passed on as such, and nothing about a file stops the block."""
    import pyarrow as pa
    import ray

    _enter(cwd)
    cols = batch.to_pydict()
    parts: dict[int, dict[str, Any]] = {}
    recs: list[bytes] = []
    notes: list[str] = []
    for path, note in zip(cols["path"], cols["note"], strict=True):
        rec: dict[str, Any] | None = None
        if not note and prev:
            k = _part_of(path, len(prev))
            if k not in parts:
                parts[k] = ray.get(prev[k])
            before = parts[k].get(path)
            if before is not None:
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
        heatmaps: list[bytes] = []  # written by the driver, as the lines are
        for path, rec in zip(cols["path"], recs, strict=True):
            heatmaps.append(b"")
            if rec is None:
                lines.append("")
                continue
            try:
                png = localize_record(rec, loaded or [], self.policy)
                heatmaps[-1] = png or b""
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
                "heatmap": heatmaps,
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
