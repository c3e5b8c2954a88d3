"""Experiment tracking with mlflow: a local sqlite store by default, any server when asked.

Without ``MLFLOW_TRACKING_URI`` runs go to ``./mlflow.db`` with artifacts in
``./mlartifacts`` (both under the working directory), so ``mlflow ui
--backend-store-uri sqlite:///mlflow.db`` shows them. A shared server is one environment
variable away. We talk to mlflow through ``MlflowClient`` only: no global active run, so
library code and user code cannot step on each other.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "RunRecord",
    "TrackedRun",
    "Tracker",
    "default_tracking_uri",
]

logger = logging.getLogger(__name__)

# Nothing leaves the machine unless a user points at a server.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
# With a tracking server mlflow writes "View run ... at URL" to stdout when a run ends: that
# would land inside our commands' --json output (library code does not print).
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

_MAX_PARAM_LEN = 6000  # mlflow's limit on a param value


def default_tracking_uri(workdir: str | os.PathLike[str] | None = None) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else a sqlite store ``mlflow.db`` in ``workdir``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    base = Path(workdir or os.getcwd()).resolve()
    return f"sqlite:///{base / 'mlflow.db'}"


def _default_artifact_root(tracking_uri: str) -> str | None:
    # With a sqlite store mlflow would put artifacts in ./mlruns of whatever the current
    # directory is; keep them next to the database instead.
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///") :])
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, prefix=f"{name}."))
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if len(text) > _MAX_PARAM_LEN:
            text = text[: _MAX_PARAM_LEN - 1] + "…"
        out[name] = text
    return out


@dataclass(frozen=True)
class RunRecord:
    """A finished or running mlflow run as deepaudit reads it back."""

    run_id: str
    experiment: str
    name: str | None
    status: str
    params: Mapping[str, str]
    metrics: Mapping[str, float]  # latest value of each metric
    tags: Mapping[str, str]
    artifact_uri: str
    start_time_ms: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "experiment": self.experiment,
            "name": self.name,
            "status": self.status,
            "params": dict(self.params),
            "metrics": dict(self.metrics),
            "tags": {k: v for k, v in self.tags.items() if not k.startswith("mlflow.")},
            "artifact_uri": self.artifact_uri,
            "start_time_ms": self.start_time_ms,
        }


class TrackedRun:
    """An open mlflow run: log params, metrics (per step) and artifacts to it."""

    def __init__(self, client: Any, run_id: str, experiment_id: str) -> None:
        self._client = client
        self.run_id = run_id
        self.experiment_id = experiment_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters; nested mappings become dotted names ("model.lr")."""
        from mlflow.entities import Param

        flat = [Param(k, v) for k, v in _flatten(params).items()]
        for i in range(0, len(flat), 100):  # mlflow's batch limit on params
            self._client.log_batch(self.run_id, params=flat[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float], *, step: int | None = None) -> None:
        """Log numeric metrics at a step; NaN/inf are skipped with a warning (mlflow refuses)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = []
        for key, value in metrics.items():
            number = float(value)
            if not math.isfinite(number):
                logger.warning("metric %s=%s is not finite; not logged", key, value)
                continue
            batch.append(Metric(key, number, now, step or 0))
        for i in range(0, len(batch), 1000):
            self._client.log_batch(self.run_id, metrics=batch[i : i + 1000])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self._client.set_tag(self.run_id, key, str(value))

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Copy a file or a whole folder into the run's artifacts."""
        p = Path(path)
        if p.is_dir():
            self._client.log_artifacts(self.run_id, str(p), artifact_path)
        else:
            self._client.log_artifact(self.run_id, str(p), artifact_path)

    def register_model(self, name: str, artifact_path: str) -> str:
        """Register the run's artifact folder as a new version of model ``name``; its version."""
        from mlflow.exceptions import MlflowException

        with contextlib.suppress(MlflowException):  # already registered: add a version
            self._client.create_registered_model(name)
        run = self._client.get_run(self.run_id)
        source = f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}"
        version = self._client.create_model_version(name, source, run_id=self.run_id)
        return str(version.version)

    def log_dict(self, data: Mapping[str, Any], name: str) -> None:
        """Store a JSON document as an artifact file ``name``."""
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / name
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
            parent = str(Path(name).parent) if Path(name).parent != Path(".") else None
            self._client.log_artifact(self.run_id, str(file), parent)


class Tracker:
    """Runs in one mlflow store (a tracking URI); experiments are created on first use."""

    def __init__(self, tracking_uri: str | None = None, *, artifact_root: str | None = None):
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.artifact_root = artifact_root or _default_artifact_root(self.tracking_uri)
        self._client = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def experiment_id(self, name: str) -> str:
        """The id of an experiment, created (with artifacts beside the store) if new."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = None
        if self.artifact_root is not None:
            location = f"{self.artifact_root.rstrip('/')}/{_slug(name)}"
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except Exception:  # another process created it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    @contextmanager
    def start_run(
        self,
        experiment: str,
        *,
        run_name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        resume_run_id: str | None = None,
    ) -> Iterator[TrackedRun]:
        """Open a run (or reopen ``resume_run_id``); it ends FINISHED, FAILED or KILLED."""
        client = self.client
        if resume_run_id is not None:
            run = client.get_run(resume_run_id)
            client.update_run(resume_run_id, status="RUNNING")
            tracked = TrackedRun(client, resume_run_id, run.info.experiment_id)
        else:
            exp_id = self.experiment_id(experiment)
            all_tags = {"deepaudit.version": _version()}
            all_tags.update({k: str(v) for k, v in (tags or {}).items()})
            run = client.create_run(exp_id, run_name=run_name, tags=all_tags)
            tracked = TrackedRun(client, run.info.run_id, exp_id)
        status = "FINISHED"
        try:
            if params and resume_run_id is None:
                tracked.log_params(params)
            yield tracked
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        except BaseException:
            status = "FAILED"
            raise
        finally:
            client.set_terminated(tracked.run_id, status=status)

    def get_run(self, run_id: str) -> RunRecord:
        run = self.client.get_run(run_id)
        exp = self.client.get_experiment(run.info.experiment_id)
        return _record(run, exp.name)

    def list_runs(
        self, experiment: str | None = None, *, max_results: int = 100
    ) -> list[RunRecord]:
        """Newest first; every experiment when ``experiment`` is None."""
        if experiment is None:
            exps = self.client.search_experiments()
        else:
            found = self.client.get_experiment_by_name(experiment)
            exps = [found] if found is not None else []
        if not exps:
            return []
        names = {e.experiment_id: e.name for e in exps}
        runs = self.client.search_runs(
            list(names), max_results=max_results, order_by=["attributes.start_time DESC"]
        )
        return [_record(r, names[r.info.experiment_id]) for r in runs]


def _record(run: Any, experiment: str) -> RunRecord:
    return RunRecord(
        run_id=run.info.run_id,
        experiment=experiment,
        name=run.info.run_name,
        status=run.info.status,
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        tags=dict(run.data.tags),
        artifact_uri=run.info.artifact_uri,
        start_time_ms=run.info.start_time,
    )


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "experiment"


def _version() -> str:
    from deepaudit import __version__

    return __version__
