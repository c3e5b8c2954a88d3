"""``deepaudit env`` and ``deepaudit runs``: the machine and the tracked runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from deepaudit.cli.console import EXIT_FINDINGS, JsonOpt, print_json, stderr, stdout

__all__ = ["env", "runs"]


def env(as_json: JsonOpt = False) -> None:
    """Versions, CPU/GPU, default device and tracking store (for bug reports)."""
    from deepaudit.devices import describe_environment
    from deepaudit.tracking import default_tracking_uri

    data = describe_environment()
    data["tracking_uri"] = default_tracking_uri()
    data["hf_hub_offline"] = os.environ.get("HF_HUB_OFFLINE")
    if as_json:
        print_json(data)
        return
    out = stdout()
    for key, value in data.items():
        if key == "versions":
            for dist, ver in value.items():
                out.print(f"  {dist:<24} {ver or 'not installed'}", markup=False)
        else:
            out.print(f"{key:<16} {value}", markup=False)


def runs(
    experiment: Annotated[str | None, typer.Option(help="Only this experiment.")] = None,
    limit: Annotated[int, typer.Option(help="Newest N runs.", min=1)] = 20,
    tracking_uri: Annotated[
        str | None, typer.Option(help="mlflow store (default: $MLFLOW_TRACKING_URI, ./mlflow.db).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List tracked runs with their status and latest metrics."""
    from deepaudit.tracking import Tracker, default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        records = []
    else:
        try:
            records = Tracker(uri).list_runs(experiment, max_results=limit)
        except Exception as exc:  # mlflow's own errors: bad URI, unreachable server
            stderr().print(f"error: {uri}: {str(exc).splitlines()[0]}", markup=False)
            raise typer.Exit(EXIT_FINDINGS) from None
    if as_json:
        print_json({"tracking_uri": uri, "runs": [r.to_json() for r in records]})
        return
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False, title=uri)
    for col in ("run", "experiment", "name", "status", "metrics"):
        table.add_column(col, overflow="fold")
    for r in records:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(r.metrics.items())[:6])
        table.add_row(r.run_id[:8], r.experiment, r.name or "", r.status, metrics)
    stdout().print(table)
    if not records:
        stdout().print("no runs yet", markup=False)
