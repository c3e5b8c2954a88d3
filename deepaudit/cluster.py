"""Joining a Ray cluster for ``scan --ray`` and ``generate --ray`` (docs/scale.md).

Only the connection lives here; the work is Ray Data (the scan) and Ray tasks (generation)
in their own layers.
"""

from __future__ import annotations

import logging

from deepaudit.errors import DeepauditError

__all__ = ["connect_ray"]


def connect_ray(address: str = "auto", *, num_cpus: int | None = None) -> None:
    """Join the cluster at ``address`` (``auto``: the one this machine belongs to, started
    with ``ray start``, or RAY_ADDRESS; ``HOST:PORT``: that head), or start a private
    one-machine instance with ``local``. Already connected: nothing to do."""
    try:
        import ray
    except ImportError:
        raise DeepauditError(
            "--ray needs Ray: pip install 'deepaudit[scale]' (ray[data])"
        ) from None
    # Ray Data's cluster-metrics poller logs a traceback every few seconds where the cluster
    # has no dashboard (test clusters, many private ones): not the user's news
    logging.getLogger("ray.data._internal.usage").setLevel(logging.INFO)
    if ray.is_initialized():
        return
    kwargs = {"log_to_driver": False, "configure_logging": False}
    try:
        if address == "local":
            ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise DeepauditError(
            f"--ray {address}: cannot reach a Ray cluster ({' '.join(str(exc).split())[:200]}); "
            "start one with `ray start --head`, or use --ray local"
        ) from None
    _cluster_messages_to_stderr()


def _cluster_messages_to_stderr() -> None:
    """Send what Ray prints on the driver for the cluster (the raylet's "a worker died")
    to stderr: Ray 2.60 prints it on stdout, where ``--json`` output goes. With
    ``log_to_driver=False`` these messages are all that Ray prints there."""
    try:
        from ray._private import worker
    except ImportError:  # another Ray layout: its messages stay where Ray puts them
        return
    original = worker.print_to_stdstream
    if getattr(original, "to_stderr", False):
        return

    def to_stderr(data: dict, ignore_prefix: bool) -> None:
        original({**data, "is_err": True}, ignore_prefix)

    to_stderr.to_stderr = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_stderr
