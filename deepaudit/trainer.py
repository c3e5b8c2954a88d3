"""The one training skeleton: exact resume, a time budget, checkpoints, tracking, export.

Every trainer of deepaudit (pixel/latent diffusion, video diffusion, network detectors) is
a loop of optimizer steps around the same chores, so the chores live here once. A trainer
describes what it owns in a :class:`TrainState` and what one step does; :class:`Trainer`
runs the steps and takes care of the rest:

- resume: a checkpoint folder made with another config is refused with a one-line error;
  one made with the same config puts back *everything* a step reads — weights, optimizer
  and grad-scaler state, the trainer's own random generators, Python's ``random``, NumPy's
  global generator, torch's CPU (and CUDA) generators, counters — so a run killed anywhere
  (even ``kill -9``) and rerun ends with the same bits as a run never interrupted;
- checkpoints every ``checkpoint_every`` steps, through the atomic folder swap of
  :mod:`deepaudit.checkpoints`; tensors go to safetensors and ``torch.save`` (read back with
  ``weights_only=True``: never unpickled), everything else to JSON;
- Ctrl-C finishes the current step, saves a checkpoint and stops (a second Ctrl-C stops at
  once); an error inside a step saves nothing, because a half-done step is not a state an
  uninterrupted run ever had;
- a budget in minutes (``steps`` stay the reproducible budget; minutes are for demos);
- export at the end, then the checkpoint goes; the mlflow run is a ``with`` block.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from deepaudit.checkpoints import (
    discard_checkpoint,
    find_checkpoint,
    load_module_state,
    save_module_state,
    write_checkpoint,
)
from deepaudit.errors import DeepauditError

__all__ = ["RUN_MARKER", "StepFn", "TrainState", "Trainer", "tracked_run"]

logger = logging.getLogger(__name__)

_FORMAT = "deepaudit-checkpoint/2"
RUN_MARKER = "mlflow-run-id.txt"  # beside the checkpoint folder: the unfinished job's run
T = TypeVar("T")
StepFn = Callable[[int], Mapping[str, float]]  # step index (0-based) -> metrics of that step
ProgressFn = Callable[[int, int, Mapping[str, float]], None]  # (steps done, total, metrics)


@dataclass(eq=False)
class TrainState:
    """What a trainer owns; a checkpoint holds all of it and a resume puts all of it back.

    The dictionaries are filled by the trainer; :class:`Trainer` saves and restores them in
    place (module weights are copied into the modules, generators are re-seeded, ...).
    """

    modules: dict[str, Any] = field(default_factory=dict)  # torch modules -> safetensors
    stateful: dict[str, Any] = field(default_factory=dict)  # optimizers, grad scalers
    generators: dict[str, Any] = field(default_factory=dict)  # torch / numpy Generators
    tensors: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # e.g. best weights
    values: dict[str, Any] = field(default_factory=dict)  # JSON: counters, history, ...
    step: int = 0  # optimizer steps done
    stop: bool = False  # a step sets it to end training early (early stopping)


class Trainer:
    """Runs a step function ``total`` times around resume, budget and checkpoints.

    ``checkpoint``: the checkpoint folder (None: no checkpoints). ``config``: JSON that
    decides the weights; a checkpoint made with another config is refused. ``finished``: a
    file whose presence (with no checkpoint) means the output already holds a trained model.
    ``writer``: False on the ranks of a distributed run that read checkpoints but do not
    write them. ``graceful``: catch the first Ctrl-C and stop after the step (off under DDP,
    where all ranks must stop at the same step). ``where``: what error messages name (the
    checkpoint's parent folder by default).
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None,
        state: TrainState,
        *,
        config: Mapping[str, Any],
        total: int,
        checkpoint_every: int = 1,
        minutes: float | None = None,
        resume: bool = True,
        finished: str | os.PathLike[str] | None = None,
        writer: bool = True,
        graceful: bool = True,
        log_every: int = 20,
        where: str | os.PathLike[str] | None = None,
    ) -> None:
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.state = state
        self.config = json.loads(json.dumps(config))  # as it will read back from disk
        self.total = int(total)
        self.checkpoint_every = int(checkpoint_every)
        self.minutes = minutes
        self.resume = resume
        self.finished = Path(finished) if finished is not None else None
        self.writer = writer
        self.graceful = graceful
        self.log_every = int(log_every)
        self.where = where or (self.checkpoint.parent if self.checkpoint else "training")
        self.run: Any = None  # the open mlflow run while inside tracking()
        self.resumed_from: int | None = None  # the step a checkpoint put back, if any
        self.last_metrics: dict[str, float] = {}
        self._restored = False
        self._stop_requested = False
        self._saved_at: int | None = None

    # -- the tracked run -------------------------------------------------------------------
    @contextmanager
    def tracking(self, tracker: Any, experiment: str, **options: Any) -> Iterator[Any]:
        """:func:`tracked_run` (``options``: run_name, tags, params) that :meth:`fit` and
        :meth:`export` log to: the steps' metrics every ``log_every`` steps, the final ones."""
        marker = self.checkpoint.with_name(RUN_MARKER) if self.checkpoint else None
        options.setdefault("resume_marker", marker if self.writer else None)
        with tracked_run(tracker, experiment, **options) as run:
            self.run = run
            try:
                yield run
            finally:
                self.run = None

    # -- resume ------------------------------------------------------------------------------
    def restore(self) -> bool:
        """Load the checkpoint into the state if there is one (once); True when resumed."""
        if self._restored:
            return self.resumed_from is not None
        self._restored = True
        found = find_checkpoint(self.checkpoint) if self.checkpoint and self.resume else None
        if found is None:
            if self.finished is not None and self.finished.is_file():
                raise DeepauditError(
                    f"{self.finished.parent}: already holds a trained model; choose another "
                    "output folder"
                )
            return False
        self._check_config(found)
        _load_state(found, self.state)
        self.resumed_from = self._saved_at = self.state.step
        logger.info("resuming %s at step %d of %d", found, self.state.step, self.total)
        return True

    def _check_config(self, ckpt: Path) -> None:
        try:
            progress = json.loads((ckpt / "progress.json").read_text())
            saved = json.loads((ckpt / "config.json").read_text())
        except (OSError, json.JSONDecodeError):
            progress, saved = {}, None
        if progress.get("format") != _FORMAT:
            raise DeepauditError(
                f"{ckpt}: not a checkpoint this deepaudit can resume (older format or "
                "damaged); delete the folder to start over"
            )
        if saved != self.config:
            keys = sorted(
                k
                for k in set(saved) | set(self.config)
                if saved.get(k, _MISSING) != self.config.get(k, _MISSING)
            )
            raise DeepauditError(
                f"{ckpt}: checkpoint was made with another config (differs in "
                f"{', '.join(keys)}); rerun with the same settings, or use another output "
                "folder or delete the checkpoint folder to start over"
            )

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, step: StepFn, *, progress: ProgressFn | None = None) -> TrainState:
        """Run ``step`` until ``total`` steps are done, the budget is spent or a step stops.

        ``step(i)`` does optimizer step ``i`` and returns its metrics (maybe none); metrics
        named ``*loss`` must be finite. ``progress`` is called after each step.
        """
        self.restore()
        st = self.state
        started = time.monotonic()
        with self._graceful_interrupt():
            while st.step < self.total and not st.stop:
                if self.minutes is not None and time.monotonic() - started > self.minutes * 60:
                    logger.info("time budget of %g min reached at step %d", self.minutes, st.step)
                    break
                metrics = step(st.step)  # an error in here leaves the last checkpoint as it was
                st.step += 1
                self._check_finite(metrics)
                self.last_metrics = dict(metrics) or self.last_metrics
                try:
                    self._after_step(metrics, progress)
                except DeepauditError:
                    raise
                except BaseException as exc:  # the step is whole: keep it, then stop
                    logger.info("stopped by %s after step %d", type(exc).__name__, st.step)
                    self.save()
                    raise
        return st

    def _after_step(self, metrics: Mapping[str, float], progress: ProgressFn | None) -> None:
        st = self.state
        if progress is not None:
            progress(st.step, self.total, metrics)
        last = st.step == self.total or st.stop
        if self.run is not None and metrics and (last or st.step % self.log_every == 0):
            self.run.log_metrics(metrics, step=st.step)
        if self._stop_requested:
            self.save()
            raise KeyboardInterrupt
        due = self.checkpoint_every > 0 and st.step % self.checkpoint_every == 0
        if (due or st.stop) and st.step < self.total:
            self.save()

    def _check_finite(self, metrics: Mapping[str, float]) -> None:
        for key, value in metrics.items():
            if key.endswith("loss") and not math.isfinite(value):
                raise DeepauditError(
                    f"{self.where}: training diverged ({key} {value}) at step {self.state.step}; "
                    "lower the learning rate"
                )

    @contextmanager
    def _graceful_interrupt(self) -> Iterator[None]:
        if not self.graceful or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(signum: int, frame: Any) -> None:
            if self._stop_requested:  # the second Ctrl-C: stop now
                raise KeyboardInterrupt
            self._stop_requested = True
            logger.warning("stopping after this step (Ctrl-C again to stop at once)")

        signal.signal(signal.SIGINT, on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
            self._stop_requested = False

    # -- checkpoints and export ---------------------------------------------------------------
    def save(self) -> None:
        """Write a checkpoint of the state now (a whole step must have just ended)."""
        st = self.state
        if self.checkpoint is None or not self.writer or st.step in (0, self._saved_at):
            return
        with write_checkpoint(self.checkpoint) as tmp:
            _save_state(tmp, st)
            (tmp / "config.json").write_text(json.dumps(self.config, indent=1))
        self._saved_at = st.step

    def export(self, write: Callable[[], T]) -> T:
        """``write()`` the final model, then delete the checkpoint (only once it is written);
        the run gets ``steps_done`` and the last step's metrics as ``final_<name>``."""
        result = write()
        if self.checkpoint is not None and self.writer:
            discard_checkpoint(self.checkpoint)
        if self.run is not None:
            final = {f"final_{k}": v for k, v in self.last_metrics.items()}
            self.run.log_metrics({**final, "steps_done": self.state.step})
        return result


_MISSING = object()


@contextmanager
def tracked_run(
    tracker: Any,
    experiment: str,
    *,
    run_name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    resume_marker: str | os.PathLike[str] | None = None,
) -> Iterator[Any]:
    """``tracker.start_run(...)`` as a ``with`` block, or a block yielding None without one.

    ``resume_marker``: a file that holds the run's id while the job is unfinished. A job
    killed (even with ``kill -9``) or failed leaves it behind, and its rerun reopens that run
    instead of starting another, so one training job is one mlflow run; the file goes when
    the block ends without an error.
    """
    if tracker is None:
        yield None
        return
    marker = Path(resume_marker) if resume_marker is not None else None
    resume_id = _run_to_resume(tracker, marker)
    with tracker.start_run(
        experiment, run_name=run_name, tags=tags, params=params, resume_run_id=resume_id
    ) as run:
        if marker is not None:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(run.run_id + "\n")
        yield run
    if marker is not None:
        marker.unlink(missing_ok=True)


def _run_to_resume(tracker: Any, marker: Path | None) -> str | None:
    """The run id a marker names, if the tracker still has that run."""
    if marker is None or not marker.is_file():
        return None
    run_id = marker.read_text().strip()
    try:
        tracker.get_run(run_id)
    except Exception:  # another store, or the run was deleted: start a new one
        logger.info(
            "%s: run %s not found in the tracking store; starting a new run", marker, run_id
        )
        return None
    logger.info("resuming mlflow run %s", run_id)
    return run_id


# -- what a checkpoint folder holds ------------------------------------------------------------
# <module>.safetensors and <tensors>.safetensors   weights (safetensors)
# state.pt      optimizer/scaler state dicts, torch generator states (weights_only)
# progress.json step, stop, values, numpy generator states, Python and NumPy global RNG
# config.json   the config the checkpoint was made with


def _save_state(folder: Path, st: TrainState) -> None:
    import numpy as np
    import torch
    from safetensors.torch import save_file

    for name, module in st.modules.items():
        save_module_state(folder / f"{name}.safetensors", module)
    for name, tensors in st.tensors.items():
        if tensors is not None:
            flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
            save_file(flat, folder / f"{name}.safetensors")
    torch_gens = {k: g.get_state() for k, g in st.generators.items() if _is_torch(g)}
    numpy_gens = {k: g.bit_generator.state for k, g in st.generators.items() if not _is_torch(g)}
    blob = {
        "stateful": {k: obj.state_dict() for k, obj in st.stateful.items()},
        "generators": torch_gens,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if _cuda_in_use() else [],
    }
    torch.save(blob, folder / "state.pt")
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    progress = {
        "format": _FORMAT,
        "step": st.step,
        "stop": st.stop,
        "values": st.values,
        "numpy_generators": numpy_gens,
        "numpy_global": [kind, keys.tolist(), pos, has_gauss, gauss],
        "python_random": [version, list(internal), gauss_next],
        "tensors": sorted(k for k, v in st.tensors.items() if v is not None),
    }
    (folder / "progress.json").write_text(json.dumps(progress))


def _load_state(folder: Path, st: TrainState) -> None:
    import numpy as np
    import torch
    from safetensors.torch import load_file

    progress = json.loads((folder / "progress.json").read_text())
    blob = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    for name, module in st.modules.items():
        load_module_state(folder / f"{name}.safetensors", module)
    for name in st.tensors:
        saved = name in progress["tensors"]
        st.tensors[name] = load_file(folder / f"{name}.safetensors") if saved else None
    for name, obj in st.stateful.items():
        obj.load_state_dict(blob["stateful"][name])
    for name, gen in st.generators.items():
        if _is_torch(gen):
            gen.set_state(blob["generators"][name])
        else:
            gen.bit_generator.state = progress["numpy_generators"][name]
    torch.set_rng_state(blob["torch_rng"])
    if blob["cuda_rng"] and _cuda_in_use():
        if len(blob["cuda_rng"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(blob["cuda_rng"])
        else:
            logger.warning("%s: CUDA generators not restored (another GPU count)", folder)
    kind, keys, pos, has_gauss, gauss = progress["numpy_global"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = progress["python_random"]
    random.setstate((version, tuple(internal), gauss_next))
    st.values.clear()
    st.values.update(progress["values"])
    st.step = int(progress["step"])
    st.stop = bool(progress["stop"])


def _cuda_in_use() -> bool:
    """CUDA is there and this process uses it (checkpoints of CPU runs leave GPUs alone)."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_initialized()


def _is_torch(gen: Any) -> bool:
    return hasattr(gen, "get_state") and hasattr(gen, "set_state")
