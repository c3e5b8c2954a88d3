"""Detector actors that outlive a scan: ``deepaudit scan --ray ADDRESS --keep-actors MINUTES``.

Every ``scan --ray`` job otherwise starts its detector actors: a new process per actor that
imports torch and timm and loads the detectors, 4-8 s on a CPU node (docs/scale.md), which a
short scan on a long-lived cluster feels more than anything else. With ``--keep-actors`` the
actors are *named* after what they hold and *detached* from the job, so the next scan with the
same detectors on the same cluster finds them loaded (``get_if_exists``), like a model server.

- The name is a hash of the detector folders' files (path, size, mtime), the device, the
  precision, the engine and the threads: a detector retrained in place gets new actors; the
  old ones expire.
- An actor ends itself (``ray.kill(..., no_restart=True)``) once it has scored nothing for the
  minutes the last scan asked for; a job that starts resets the clock. Until then it holds
  its resources (a GPU on GPU nodes).
- The scan's pipeline is the same up to the detectors; its last stage is light tasks (no CPU
  of their own) that hand each block to one of the actors and wait for it, so backpressure,
  retries (a killed actor is restarted and its block tried again) and the rows are as without
  ``--keep-actors``.
- :func:`stop_kept_actors` ends them at once (or let them expire).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["NAMESPACE", "KeptDetectors", "kept_actor_names", "start_kept", "stop_kept_actors"]

NAMESPACE = "deepaudit"
_PREFIX = "deepaudit-detectors-"


def kept_actor_names(scorer: Any, n: int) -> list[str]:
    """The names of ``n`` actors holding ``scorer``'s detectors loaded its way (a scan's
    ``_Scorer``: detector folders, device, precision, engine, threads)."""
    from deepaudit.audit.scan import detector_files

    # not the folders' engine/ caches: the ONNX engine writes there on first use, and the
    # next scan must still find the actors
    files = [f for d in scorer.detectors for f in detector_files(d)]
    setup = [scorer.device, scorer.precision, scorer.engine, scorer.threads]
    digest = hashlib.sha256(json.dumps([files, setup], sort_keys=True).encode()).hexdigest()
    return [f"{_PREFIX}{digest[:16]}-{i}" for i in range(n)]


class KeptDetectors:
    """A detached Ray actor: the detectors loaded once, scoring blocks for any scan."""

    def __init__(self, scorer: Any, minutes: float) -> None:
        from deepaudit.audit.scan import load_scan_detectors

        self.loaded = load_scan_detectors(
            scorer.detectors, scorer.device, scorer.precision, scorer.engine, os.cpu_count() or 1
        )
        for ld in self.loaded:
            ld.det.inference_threads = scorer.threads
        self.minutes = minutes
        self.last = time.monotonic()
        self.busy = 0
        threading.Thread(target=self._expire, daemon=True).start()

    def keep(self, minutes: float) -> int:
        """A job starts: reset the idle clock and keep at least ``minutes``; the pid."""
        self.minutes = max(self.minutes, minutes)
        self.last = time.monotonic()
        return os.getpid()

    def score(self, scorer: Any, batch: Any) -> Any:
        """Score a block with the loaded detectors; ``scorer`` brings the job's fusion policy
        and batch size."""
        self.busy += 1
        try:
            return scorer(batch, self.loaded)
        finally:
            self.busy -= 1
            self.last = time.monotonic()

    def _expire(self) -> None:
        import ray

        while True:
            time.sleep(min(5.0, self.minutes * 15 + 0.1))
            if not self.busy and time.monotonic() - self.last > self.minutes * 60:
                ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
                return


def start_kept(
    names: Sequence[str], scorer: Any, *, minutes: float, resources: dict[str, Any]
) -> list[Any]:
    """The actors of these names, started where missing with ``resources`` (num_cpus,
    num_gpus, memory; not waited for: the scan's CPU stage runs while they load), each told
    to stay ``minutes`` after its last block."""
    import ray

    cls = ray.remote(KeptDetectors)
    handles = []
    for name in names:
        actor = cls.options(
            name=name,
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,  # killed (OOM, a crash): Ray starts it again ...
            max_task_retries=1,  # ... and the block it was scoring is tried once more
            **resources,
        ).remote(scorer, minutes)
        actor.keep.remote(minutes)
        handles.append(actor)
    return handles


_HANDLES: dict[str, Any] = {}


def score_with_kept(batch: Any, names: list[str], scorer: Any) -> Any:
    """A light task's work: one of the named actors scores the block; this waits for it."""
    import ray

    name = random.choice(names)
    actor = _HANDLES.get(name)
    if actor is None:
        actor = _HANDLES[name] = ray.get_actor(name, namespace=NAMESPACE)
    return ray.get(actor.score.remote(scorer, batch))


def stop_kept_actors(names: Sequence[str] | None = None) -> int:
    """End kept detector actors now (these names, or every one on the cluster); how many."""
    import ray
    from ray.util import list_named_actors

    if names is None:
        names = [
            a["name"]
            for a in list_named_actors(all_namespaces=True)
            if a.get("namespace") == NAMESPACE and a["name"].startswith(_PREFIX)
        ]
    stopped = 0
    for name in names:
        try:
            ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
            stopped += 1
        except ValueError:  # already gone
            continue
    return stopped
