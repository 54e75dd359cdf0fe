"""CLI commands for the payout rails: apply a SEPA bank report, poll PayPal."""

from __future__ import annotations

import json

import typer

from partnerflow.cli import app

# Function-local imports: the CLI starts fast and loads a command's stage only when it runs.


@app.command("bank-report")
def bank_report(file: str) -> None:
    """Apply a SEPA bank report (pain.002 status report, camt.053/camt.054 statement) to SEPA payouts."""
    from partnerflow.tasks.payouts.reconcile import import_bank_report

    try:
        counts = import_bank_report(file)
    except (OSError, ValueError) as exc:
        typer.secho(f"cannot read {file}: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(counts, sort_keys=True))


@app.command("paypal-poll")
def paypal_poll() -> None:
    """Ask PayPal about payouts still processing and mark the settled ones paid or failed."""
    from partnerflow.tasks.payouts.reconcile import poll_paypal

    typer.echo(json.dumps(poll_paypal(), sort_keys=True))
