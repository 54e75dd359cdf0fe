"""CLI commands for the whole stack: status, up, demo."""

from __future__ import annotations

import json

import typer

from partnerflow.cli import app

# Function-local imports: a command imports what it needs, so `partnerflow --help` starts fast.


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Counts per lifecycle stage, messages sent, contracts signed, payouts paid."""
    from partnerflow import dbtools
    from partnerflow.models.engine import check_database
    from partnerflow.settings import check_settings, get_settings
    from partnerflow.status import collect_status

    check_settings(get_settings())
    check_database()
    dbtools.check_schema()
    data = collect_status()
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    typer.echo("Partners by stage:")
    for stage, count in data["partners_by_stage"].items():
        typer.echo(f"  {stage:<12} {count}")
    for key in ("prospects", "applications", "messages_sent", "contracts_signed", "payouts_paid"):
        typer.echo(f"{key.replace('_', ' ').capitalize():<18} {data[key]}")
    waiting = data["approvals_waiting"]
    typer.echo(f"Approvals waiting  {len(waiting)}" + (" (answer them in the Prefect UI):" if waiting else ""))
    for row in waiting:
        typer.echo(f"  {row['subject']:<24} asked {row['asked_at'][:16]}  expires {row['expires_at'][:16]}")


@app.command()
def up(prefect_port: int = typer.Option(4200, help="Port of the Prefect server and UI.")) -> None:
    """Start the embedded stack: Prefect server + UI, the web app, and every deployment served.

    SIGINT, SIGTERM and SIGHUP stop every process it started; when one of them dies, the rest stop too.
    """
    from partnerflow.deployments import all_deployments
    from partnerflow.settings import get_settings
    from partnerflow.stack import StackError, prepare, running_stack, stop_on_signals, supervise

    stop_on_signals()
    try:
        prepare()
        settings = get_settings()
        with running_stack(settings, prefect_port=prefect_port) as stack:
            _announce(stack, settings, all_deployments())
            supervise(stack)
    except StackError as exc:
        typer.secho(f"partnerflow up: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("stopped")


def _announce(stack, settings, deployments) -> None:
    typer.echo(f"Prefect UI      {stack.prefect_url}")
    typer.echo(f"Web app         {stack.web_url}  (apply at {stack.web_url}/apply)")
    typer.echo(f"Outbox          {settings.mail.outbox_dir.resolve()}")
    typer.echo(f"Logs            {stack.logs}")
    typer.echo("Deployments served:")
    for deployment in deployments:
        how = "scheduled" if deployment.schedules else "event-triggered" if deployment.triggers else "manual"
        typer.echo(f"  {deployment.flow_name}/{deployment.name}  ({how})")
    typer.echo("Press Ctrl-C to stop.", nl=True)


@app.command()
def deploy(pool: str = typer.Option("partnerflow", help="Prefect process work pool (created if missing)."),
           stage: str = typer.Option(None, help="Only this stage's deployments.")) -> None:
    """Deploy every deployment to a Prefect work pool on the server PREFECT_API_URL names.

    Also puts on that server the crash automations (dead runs marked Crashed, safe ones retried) and the
    limits every worker shares.
    Then start workers where the package and the PARTNERFLOW_* settings are: `prefect worker start --pool POOL`.
    """
    from partnerflow.deployments import deploy_to_pool
    from partnerflow.stack import StackError, prepare, prepare_server

    prepare()
    try:
        prepare_server()
    except StackError as exc:
        typer.secho(f"partnerflow deploy: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    ids = deploy_to_pool(pool, stage)
    typer.echo(f"{len(ids)} deployments on work pool {pool!r}; start workers with: prefect worker start --pool {pool}")


@app.command()
def demo(keep: bool = typer.Option(False, help="Keep the stack running after the demo until Ctrl-C.")) -> None:
    """Run one complete partner lifecycle on the embedded stack with sample data."""
    from partnerflow.demo import run_demo
    from partnerflow.stack import StackError

    try:
        run_demo(keep_running=keep)
    except StackError as exc:
        typer.secho(f"partnerflow demo: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
