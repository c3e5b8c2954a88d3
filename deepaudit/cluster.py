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
