"""Starting a deployment from the command line: flows that may ask a person run as deployments.

A flow run waiting for a person is suspended on the Prefect server and holds no process, so the
command returns once the run finishes or starts waiting, and says where to answer the form.
"""

from __future__ import annotations

import os
import time
from typing import Any

import typer
from prefect import get_client
from prefect.deployments import run_deployment


def start_deployment(name: str, parameters: dict[str, Any], *, wait_seconds: float = 600) -> Any:
    """Run deployment `name` ("flow/deployment") on the stack; return its result, or None while it waits."""
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        typer.secho("No Prefect server is configured: start the stack with `partnerflow up` (or set "
                    "PREFECT_API_URL to your Prefect server) so a runner or worker can run this deployment.",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    run = run_deployment(name, parameters=parameters, timeout=0)
    ui = api.removesuffix("/api")
    typer.echo(f"started {name}: flow run {run.name} ({ui}/runs/flow-run/{run.id})")
    deadline = time.monotonic() + wait_seconds
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(run.id).state
            if state and state.is_paused():
                typer.echo(f"waiting for a person: answer the form at {ui}/runs/flow-run/{run.id} (press Resume)")
                return None
            if state and state.is_final():
                if not state.is_completed():
                    typer.secho(f"{name} ended {state.name}: {state.message or ''}", fg=typer.colors.RED, err=True)
                    raise typer.Exit(1)
                return state.result()
            time.sleep(1)
    typer.echo(f"{name} is still running; follow it at {ui}/runs/flow-run/{run.id}")
    return None
