"""CLI commands: conversions, commissions, payouts and conversion sources.

    partnerflow conversions import FILE [--source csv]
    partnerflow commissions compute
    partnerflow commissions dry-run RULES --start 2026-01-01 --end 2026-02-01
    partnerflow payouts run [--period-end ISO] [--auto-approve-below MINOR]
    partnerflow payouts resolve PAYOUT_ID --paid|--failed --by NAME [--note TEXT]
    partnerflow sources add NAME        (prints the new API key once)
    partnerflow fx add DAY BASE QUOTE RATE
"""

from __future__ import annotations

import json

import typer

from partnerflow.cli import app

# Function-local imports: the CLI starts fast and loads a command's stage only when it runs.

conversions_app = typer.Typer(no_args_is_help=True, help="Conversions (sales, leads, refunds).")
commissions_app = typer.Typer(no_args_is_help=True, help="Commissions.")
payouts_app = typer.Typer(no_args_is_help=True, help="Payout batches.")
sources_app = typer.Typer(no_args_is_help=True, help="Systems allowed to post conversions.")
fx_app = typer.Typer(no_args_is_help=True, help="Exchange rates used for payouts.")
app.add_typer(conversions_app, name="conversions")
app.add_typer(commissions_app, name="commissions")
app.add_typer(payouts_app, name="payouts")
app.add_typer(sources_app, name="sources")
app.add_typer(fx_app, name="fx")


def _show(result) -> None:
    typer.echo(json.dumps(result, indent=2, default=str))


@conversions_app.command("import")
def conversions_import(file: str,
                       source: str = typer.Option("csv", help="Source name (unique per external id).")) -> None:
    """Import a CSV of conversions; prints created/duplicates/unattributed and bad rows by line."""
    from partnerflow.tasks.payouts.conversions import import_csv

    report = import_csv(file, source).as_dict()
    _show(report)
    if report["errors"]:
        raise typer.Exit(1)


@commissions_app.command("compute")
def commissions_compute() -> None:
    """Compute commissions for new conversions, apply reversals, release locked ones."""
    from partnerflow.tasks.payouts.commissions import compute_commissions

    _show(compute_commissions())


@commissions_app.command("dry-run")
def commissions_dry_run(rules: str, start: str = typer.Option(...), end: str = typer.Option(...)) -> None:
    """Compare proposed rules (file or JSON) with what was computed for [start, end). Changes nothing."""
    from partnerflow.tasks.payouts.commissions import dry_run
    from partnerflow.tasks.payouts.steps import parse_time

    _show(dry_run(rules, parse_time(start), parse_time(end)))


@payouts_app.command("run")
def payouts_run(period_end: str | None = typer.Option(None, help="ISO date-time; default now."),
                auto_approve_below: int | None = typer.Option(None, help="Auto-approve a batch below this total "
                                                                             "(minor units); lowers the team's "
                                                                             "PARTNERFLOW_PAYOUT_APPROVAL_ABOVE_MINOR, "
                                                                             "never raises it.")) -> None:
    """Run a payout batch now on the stack (above the limit its approval form waits in the Prefect UI)."""
    from partnerflow.cli.runs import start_deployment

    result = start_deployment("run-payout-batch/payout-batch",
                              {"period_end": period_end, "auto_approve_below_minor": auto_approve_below})
    if result is not None:
        _show(result)


@payouts_app.command("resolve")
def payouts_resolve(payout_id: int,
                    paid: bool = typer.Option(None, "--paid/--failed",
                                              help="--paid: the money reached the partner; --failed: it did not "
                                                   "(its commissions go back to the balance)."),
                    by: str = typer.Option(..., "--by", help="Who decides (kept in the audit log)."),
                    note: str = typer.Option("", help="Why, for the audit log.")) -> None:
    """Record a person's answer for a payout that needs review (see the team mail for the evidence)."""
    from partnerflow.tasks.payouts.outcomes import resolve_payout

    if paid is None:
        typer.secho("say what happened: --paid or --failed", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    try:
        payout = resolve_payout(payout_id, paid=paid, actor=by, note=note)
    except ValueError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"payout {payout.id} recorded {payout.status} by {by}")


@sources_app.command("add")
def sources_add(name: str) -> None:
    """Register a conversion source and print its API key (shown this once; only a hash is stored)."""
    from partnerflow.tasks.payouts.conversions import add_source

    try:
        key = add_source(name)
    except ValueError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"source {name} added. API key (send as X-API-Key; it will not be shown again):")
    typer.echo(key)


@fx_app.command("add")
def fx_add(day: str, base: str, quote: str, rate: str) -> None:
    """Record 1 BASE = RATE QUOTE on DAY (YYYY-MM-DD)."""
    from datetime import date

    from partnerflow.tasks.payouts.balances import add_fx_rate

    try:
        value = add_fx_rate(date.fromisoformat(day), base, quote, rate)
    except ValueError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"1 {base.upper()} = {value} {quote.upper()} on {day}")
