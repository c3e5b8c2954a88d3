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

import contextlib
import hashlib
import json
import os
import random
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from deepaudit.errors import DeepauditError

__all__ = [
    "NAMESPACE",
    "KeptDetectors",
    "held",
    "kept_actor_names",
    "start_kept",
    "stop_kept_actors",
]

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
        self.held_until = 0.0  # a running job's driver holds it until then (see held)
        self.busy = 0
        threading.Thread(target=self._expire, daemon=True).start()

    def keep(self, minutes: float, hold_s: float = 0.0) -> int:
        """A job starts, runs (``hold_s``: its driver holds the actor that long more) or ends
        (``hold_s`` 0): reset the idle clock and keep at least ``minutes``; the pid."""
        now = time.monotonic()
        self.minutes = max(self.minutes, minutes)
        self.last = now
        self.held_until = now + hold_s
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
            now = time.monotonic()
            idle = now - self.last > self.minutes * 60
            if not self.busy and now > self.held_until and idle:
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


_PING_S = 2.0  # how often a running job's driver holds its kept actors
_HOLD_S = 20.0  # how long one hold lasts: a driver that dies lets go this long after


@contextlib.contextmanager
def held(names: Sequence[str], minutes: float) -> Iterator[None]:
    """Keep the named actors from expiring while a job runs. They count idle time from their
    last block, and a job's first block can come later than ``minutes`` after they start (a
    slow CPU stage, a busy machine). A thread of the driver holds them every 2 s for 20 s
    more; at the job's end they are let go, to expire ``minutes`` after it. If the driver
    dies, its hold lapses within 20 s."""
    import ray

    stop = threading.Event()

    def ping() -> None:
        pending: dict[str, Any] = {}
        while True:
            for name in names:
                ref = pending.get(name)
                if ref is not None and not ray.wait([ref], timeout=0)[0]:
                    continue  # the last hold still waits behind a block: it is busy anyway
                with contextlib.suppress(Exception):  # restarting, or not started yet
                    actor = ray.get_actor(name, namespace=NAMESPACE)
                    pending[name] = actor.keep.remote(minutes, _HOLD_S)
            if stop.wait(_PING_S):
                return

    thread = threading.Thread(target=ping, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=_PING_S + 10)
        for name in names:  # let go: the idle clock starts at the job's end
            with contextlib.suppress(Exception):
                ray.get_actor(name, namespace=NAMESPACE).keep.remote(minutes)


_HANDLES: dict[str, Any] = {}


def score_with_kept(
    batch: Any,
    names: list[str],
    scorer: Any,
    minutes: float = 0.0,
    resources: dict[str, Any] | None = None,
) -> Any:
    """A light task's work: one of the named actors scores the block; this waits for it.

    An actor can end between the job's start and this block: it expired as the job began
    (its clock ran out while the job's ``keep`` was on its way) or was stopped. Then the
    actor is started again under its name (``minutes``, ``resources`` as the job's) and the
    block goes to it, for up to ~30 s while the old one's name is still taken."""
    import ray
    from ray.exceptions import ActorDiedError, ActorUnavailableError

    name = random.choice(names)
    deadline = time.monotonic() + 30
    while True:
        actor = _HANDLES.get(name)
        if actor is None:
            with contextlib.suppress(ValueError):  # no actor of that name (any more)
                actor = _HANDLES[name] = ray.get_actor(name, namespace=NAMESPACE)
        if actor is not None:
            try:
                return ray.get(actor.score.remote(scorer, batch))
            except (ActorDiedError, ActorUnavailableError):
                if resources is None or time.monotonic() > deadline:
                    raise
                _HANDLES.pop(name, None)
        elif resources is None or time.monotonic() > deadline:
            raise DeepauditError(f"detector actor {name} is gone and could not be started")
        with contextlib.suppress(Exception):  # its dying name may still be taken
            start_kept([name], scorer, minutes=minutes, resources=resources)
        time.sleep(0.5)


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
