"""The `partnerflow` command. Each area adds its commands from its own module here."""

from __future__ import annotations

import sys

import typer

from partnerflow.settings import ConfigError

# Function-local imports: each command imports what it needs, so `partnerflow --help` starts fast
# and a command never loads Prefect or a vendor library it does not use.

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Partner programs run as Prefect flows.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the Alembic migrations to PARTNERFLOW_DATABASE_URL."""
    from partnerflow import dbtools
    from partnerflow.models.engine import check_database

    check_database()
    dbtools.upgrade(revision)
    typer.echo("database is up to date")


def _register() -> None:
    # Imported for their side effect of adding commands to `app`.
    from partnerflow.cli import (  # noqa: F401
        compliance,
        contracting,
        discovery,
        keys,
        onboarding,
        outreach,
        payouts,
        payouts_reconcile,
        stack,
    )


def main() -> None:
    _register()
    try:
        app()
    except ConfigError as exc:
        typer.secho(f"configuration error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


__all__ = ["app", "main"]
