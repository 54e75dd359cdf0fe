"""CLI commands: contracting — `partnerflow apply`, `partnerflow applications list`."""

from __future__ import annotations

import typer

from partnerflow.cli import app

# Function-local imports: the command line starts fast, loading a command's modules only when it runs.

applications_app = typer.Typer(no_args_is_help=True, help="Partner applications.")
app.add_typer(applications_app, name="applications")


@app.command("apply")
def apply(
    legal_name: str = typer.Option(..., help="Legal name of the person or company."),
    email: str = typer.Option(...),
    contact_name: str = typer.Option("", help="Contact person (default: the legal name)."),
    country: str = typer.Option(..., help="Two-letter ISO country code."),
    website: str = typer.Option(""),
    channel: list[str] = typer.Option([], "--channel", help="Repeat for each channel (website, youtube, ...)."),
    partner_type: str = typer.Option("affiliate", help="affiliate | influencer | reseller | referral"),
    method: list[str] = typer.Option([], "--method", help="Promotional method; repeat for each."),
    tax_status: str = typer.Option("company", help="individual | company | non_profit | other"),
    agree: bool = typer.Option(False, "--agree", help="The applicant agrees to the program terms."),
) -> None:
    """Submit a partner application (as the web form does); starts contracting."""
    from partnerflow.tasks.contracting.applications import (
        ApplicationInvalid,
        DuplicateApplication,
        submit_application,
    )

    try:
        application, created = submit_application(
            {"legal_name": legal_name, "email": email, "contact_name": contact_name or legal_name, "country": country,
             "website": website, "channels": channel, "partner_type": partner_type, "promotional_methods": method,
             "tax_status": tax_status, "agreed_to_terms": agree}, actor="cli")
    except ApplicationInvalid as exc:
        for field, message in exc.errors.items():
            typer.secho(f"--{field.replace('_', '-')}: {message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except DuplicateApplication as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    if not created:
        typer.secho(f"duplicate: application {application.id} already exists for this email or domain",
                    fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(1)
    typer.echo(f"application {application.id} received (partner {application.partner_id})")


@applications_app.command("list")
def list_applications(status: str | None = typer.Option(None, help="Only this status."),
                      limit: int = typer.Option(50)) -> None:
    """Recent applications with their status and screening summary."""
    from sqlmodel import select

    from partnerflow.models import Application, session_scope
    from partnerflow.tasks.contracting.screening import worst

    with session_scope() as session:
        query = select(Application).order_by(Application.id.desc()).limit(limit)
        if status:
            query = query.where(Application.status == status)
        rows = session.exec(query).all()
        if not rows:
            typer.echo("no applications")
            return
        typer.echo(f"{'id':>5}  {'status':<17} {'type':<11} {'country':<7} {'screening':<9} name <email>")
        for a in rows:
            findings = (a.screening or {}).get("findings") or []
            typer.echo(f"{a.id:>5}  {a.status:<17} {a.partner_type:<11} {a.country:<7} {worst(findings):<9} "
                       f"{a.legal_name} <{a.email}>")
