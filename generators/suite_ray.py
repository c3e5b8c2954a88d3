"""``deepaudit generate --ray``: a suite's batches as Ray tasks, one writer for the manifest.

The batches are the spec's own (:func:`~deepaudit.generators.suite.suite_batches`), so each
task generates exactly what the local run generates for that batch, with the same seeds and
the same code (:func:`~deepaudit.generators.suite.generate_batch`). A task saves its items in
a scratch folder on its node and returns the files' bytes with their manifest items; the
driver alone writes files and manifest lines, in the order of the spec (a finished batch
waits for the ones before it), so the folder is the local run's byte for byte and needs no
shared storage. A killed run resumes as the local one does: what the manifest lists is done.
Each worker process keeps the generators it built, so a model is loaded once per process.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepaudit.cluster import connect_ray
from deepaudit.generators.suite import (
    GeneratedBatch,
    GenerateReport,
    SuiteSpec,
    build_generators,
    entry_sources,
    generate_batch,
    item_id,
    prepare_generators,
    record_batch,
    signing_credentials,
    suite_batches,
    write_suite_info,
)

__all__ = ["run_suite_ray"]

logger = logging.getLogger(__name__)

# generators and signers built in this worker process, by (spec file, device)
_BUILT: dict[tuple[str, str], tuple[dict[str, Any], Any]] = {}


def run_suite_ray(
    spec: SuiteSpec,
    out_dir: str | os.PathLike[str],
    *,
    address: str = "auto",
    device: str = "auto",
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> GenerateReport:
    """:func:`~deepaudit.generators.suite.run_suite` with its batches on a Ray cluster.

    ``workers``: batches in flight at a time (default: the cluster's GPUs, or its CPUs)."""
    import ray

    from deepaudit.manifest import ManifestWriter

    connect_ray(address, num_cpus=workers)
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if device != "cpu" else 0
    slots = workers or max(1, gpus or int(resources.get("CPU", 1)))
    task = ray.remote(num_cpus=0 if gpus else 1, num_gpus=1 if gpus else 0, max_retries=2)(
        _generate_on_node
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # the driver builds the generators too: a broken spec fails here, before any task
    gens = build_generators(spec, "cpu")
    report = GenerateReport(out)
    started = time.perf_counter()
    cwd = os.getcwd()
    with ManifestWriter(out) as writer:
        # generators that fit first (a subject LoRA) do it here, into ``out``: on several
        # nodes their tasks read it from there, so ``out`` must then be shared storage
        prepare_generators(spec, gens, out, writer)
        done = sum(1 for e in spec.entries for i in range(e.count) if item_id(e, i) in writer)
        report.skipped = done
        if progress:
            progress(done, spec.total)
        pending: dict[Any, int] = {}  # task → its batch number
        finished: dict[int, tuple[GeneratedBatch, dict[str, bytes]]] = {}
        next_to_write = 0
        number = 0
        batches = iter(suite_batches(spec))
        exhausted = False
        while True:
            while not exhausted and len(pending) + len(finished) < 2 * slots:
                try:
                    e, idx = next(batches)
                except StopIteration:
                    exhausted = True
                    break
                todo = [i for i in idx if item_id(e, i) not in writer]
                if todo:
                    ref = task.remote(spec, e.name, idx, todo, device, cwd)
                    pending[ref] = number
                    number += 1
            if not pending and not finished:
                break
            if pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    finished[pending.pop(ref)] = ray.get(ref)
            while next_to_write in finished:  # in spec order: the local run's manifest
                batch, files = finished.pop(next_to_write)
                _write_files(out, files)
                record_batch(batch, writer, report, out)
                done += batch.generated
                if progress and batch.generated:
                    progress(done, spec.total)
                next_to_write += 1
    report.seconds = time.perf_counter() - started
    write_suite_info(spec, gens, out)
    return report


def _write_files(out: Path, files: dict[str, bytes]) -> None:
    """Each file through a temporary name: a killed driver leaves no half-written medium."""
    for rel, data in files.items():
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        part.write_bytes(data)
        os.replace(part, dest)


def _generate_on_node(
    spec: SuiteSpec, entry: str, idx: list[int], todo: list[int], device: str, cwd: str
) -> tuple[GeneratedBatch, dict[str, bytes]]:
    """One batch, generated and saved in a scratch folder; its files come back as bytes."""
    if os.path.isdir(cwd) and os.getcwd() != cwd:
        os.chdir(cwd)  # the spec's relative paths are the driver's
    key = (str(spec.path), device)
    if key not in _BUILT:
        _BUILT[key] = (build_generators(spec, device), signing_credentials(spec))
    gens, creds = _BUILT[key]
    e = next(x for x in spec.entries if x.name == entry)
    inits, reals = entry_sources(e, gens[entry])
    scratch = Path(tempfile.mkdtemp(prefix="deepaudit-gen-"))
    try:
        batch = generate_batch(spec, e, gens[entry], idx, todo, inits, reals, scratch, creds)
        files = {
            p.relative_to(scratch).as_posix(): p.read_bytes()
            for p in sorted(scratch.rglob("*"))
            if p.is_file()
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return batch, files
