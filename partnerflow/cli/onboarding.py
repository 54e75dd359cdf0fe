"""CLI commands: payout details (`partnerflow payout-details ...`): confirm a change, reopen the link."""

from __future__ import annotations

import typer

from partnerflow.cli import app

# Function-local imports: each command imports what it needs, so `partnerflow --help` starts fast.

details_app = typer.Typer(no_args_is_help=True, help="Partners' payout details: confirm a change, reopen the link.")
app.add_typer(details_app, name="payout-details")


@details_app.command("confirm")
def confirm(partner: int = typer.Option(..., "--partner"), by: str = typer.Option(..., "--by", help="Your name."),
            note: str = typer.Option("", help="How you checked the change with the partner.")) -> None:
    """Lift the payout hold after a change of payout details, once you have checked it with the partner."""
    from partnerflow.tasks.onboarding.details import confirm_payout_details

    if confirm_payout_details(partner, actor=by, note=note):
        typer.echo(f"Payout details of partner {partner} confirmed; their payouts are no longer held.")
    else:
        typer.echo(f"Partner {partner} has no payout details waiting for confirmation.")


@details_app.command("reopen")
def reopen(partner: int = typer.Option(..., "--partner"), by: str = typer.Option(..., "--by", help="Your name.")
           ) -> None:
    """Let the partner use their onboarding link once more (e.g. to change bank account)."""
    from partnerflow.tasks.onboarding.details import reopen_onboarding

    reopen_onboarding(partner, actor=by)
    typer.echo(f"The onboarding link of partner {partner} works once more; a change will hold their payouts.")
