"""CLI commands for the whole stack: status, up, demo."""

from __future__ import annotations

import json

import typer

from partnerflow.cli import app


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Counts per lifecycle stage, messages sent, contracts signed, payouts paid."""
    from partnerflow.config import check_settings, get_settings
    from partnerflow.models.engine import check_database
    from partnerflow.status import collect_status

    check_settings(get_settings())
    check_database()
    data = collect_status()
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    typer.echo("Partners by stage:")
    for stage, count in data["partners_by_stage"].items():
        typer.echo(f"  {stage:<12} {count}")
    for key in ("prospects", "applications", "messages_sent", "contracts_signed", "payouts_paid"):
        typer.echo(f"{key.replace('_', ' ').capitalize():<18} {data[key]}")
