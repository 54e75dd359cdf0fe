"""CLI commands: outreach — `partnerflow outreach load|enroll|send|stop`."""

from __future__ import annotations

import json

import typer

from partnerflow.cli import app

# Function-local imports: a command loads the tasks (and Prefect) only when it runs, so
# `partnerflow --help` and every other command start fast.

outreach_app = typer.Typer(no_args_is_help=True, help="Outreach sequences.")
app.add_typer(outreach_app, name="outreach")


def _show(result: dict) -> None:
    typer.echo(json.dumps(result, indent=2, default=str))


@outreach_app.command("load")
def load(folder: str | None = typer.Option(None, help="Folder of sequences (default: the shipped templates).")) -> None:
    """Load sequence files; a changed file becomes a new version."""
    from partnerflow.tasks.outreach.sequences import SequenceError, load_sequence_files
    from partnerflow.tasks.shared.mail import TemplateError

    try:
        _show(load_sequence_files(folder))
    except (SequenceError, TemplateError) as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


@outreach_app.command("enroll")
def enroll(sequence: str = typer.Option("partner-recruitment"),
           prospect: list[int] = typer.Option([], "--prospect", help="Prospect id; repeat. Default: all."),
           min_score: int | None = typer.Option(None, help="Only prospects scoring at least this.")) -> None:
    """Enroll prospects into a sequence."""
    from partnerflow.tasks.outreach.enrollment import enroll as do_enroll

    try:
        _show(do_enroll(sequence, prospect_ids=prospect or None, min_score=min_score))
    except ValueError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


@outreach_app.command("send")
def send(limit: int = typer.Option(5000, help="At most this many enrollments in this run.")) -> None:
    """Send the due steps now (the same flow the hourly deployment runs)."""
    from partnerflow.flows.outreach import send_due_outreach

    _show(send_due_outreach(limit=limit))


@outreach_app.command("stop")
def stop(enrollment: int | None = typer.Option(None, help="Enrollment id."),
         email: str | None = typer.Option(None, help="Stop every enrollment of this address."),
         suppress: bool = typer.Option(False, help="Also never mail this address again (needs --email)."),
         by: str = typer.Option("cli", help="Who stops it (audit log).")) -> None:
    """Stop an enrollment by hand."""
    from partnerflow.tasks.outreach.enrollment import stop_enrollment

    if (enrollment is None) == (email is None):
        typer.secho("give exactly one of --enrollment or --email", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    if suppress and not email:
        typer.secho("--suppress needs --email", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    stopped = stop_enrollment(enrollment_id=enrollment, email=email, actor=by, suppress_too=suppress)
    typer.echo(f"stopped {stopped} enrollment(s)")
