"""CLI commands: compliance (`partnerflow compliance ...`, `partnerflow findings ...`)."""

from __future__ import annotations

import json

import typer

from partnerflow.cli import app

# Function-local imports: each command imports what it needs, so `partnerflow --help` starts fast.

compliance_app = typer.Typer(no_args_is_help=True, help="Compliance checks and partner pages.")
findings_app = typer.Typer(no_args_is_help=True, help="Compliance findings.")
app.add_typer(compliance_app, name="compliance")
app.add_typer(findings_app, name="findings")


@compliance_app.command("check")
def compliance_check(partner: int = typer.Option(None, "--partner", help="Check only this partner id.")) -> None:
    """Run the compliance checks now (all active partners, or one)."""
    from partnerflow.flows.compliance import check_compliance

    result = check_compliance(partner_id=partner)
    typer.echo(json.dumps(result, indent=2, default=str))


@compliance_app.command("rescreen")
def compliance_rescreen(force: bool = typer.Option(False, help="Screen again even against an unchanged list.")) -> None:
    """Re-screen partners against the sanctions list (PARTNERFLOW_SANCTIONS_LIST)."""
    from partnerflow.flows.compliance import rescreen_sanctions

    typer.echo(json.dumps(rescreen_sanctions(force=force), indent=2, default=str))


@compliance_app.command("add-page")
def compliance_add_page(partner: int = typer.Option(..., "--partner"), url: str = typer.Argument(...)) -> None:
    """Register a partner's promotional page for disclosure and brand checks."""
    from partnerflow.tasks.compliance.pages import register_pages

    added = register_pages(partner, [url])
    typer.echo(f"{'added' if added else 'already registered'}: {url}")


@findings_app.command("list")
def findings_list(
    status: str = typer.Option(
        "active", help="active (open+acknowledged), open, acknowledged, resolved, dismissed, all"),
    partner: int = typer.Option(None, "--partner"),
) -> None:
    """List findings, newest first."""
    from partnerflow.models.compliance import ACTIVE_STATUSES
    from partnerflow.tasks.compliance.findings import list_findings

    rows = list_findings(status, partner)
    if not rows:
        typer.echo("no findings")
    for f in rows:
        hold = " HOLDS PAYOUTS" if f.blocking and f.status in ACTIVE_STATUSES else ""
        typer.echo(f"#{f.id} partner {f.partner_id} {f.severity:8} {f.status:12} {f.rule}{hold}: {f.title}"
                   + (f" <{f.url}>" if f.url else ""))


@findings_app.command("set")
def findings_set(
    finding_id: int = typer.Argument(...),
    action: str = typer.Argument(..., help="withhold_payouts | suspend_partner | notify_partner | dismiss | resolve"),
    by: str = typer.Option(..., "--by", help="Your name (recorded in the audit log)."),
    reason: str = typer.Option("", "--reason"),
) -> None:
    """Act on one finding (dismiss and resolve need --reason)."""
    from partnerflow.tasks.compliance.actions import apply_action

    try:
        apply_action(action, [finding_id], actor=by, reason=reason)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"finding #{finding_id}: {action} done")
