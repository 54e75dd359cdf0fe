"""CLI commands: discovery — `partnerflow prospects import FILE`, `... enrich`, `... rescore`.

They run the same code as the flows, in this process, without a Prefect server.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from partnerflow.cli import app

# Function-local imports: a command loads the tasks (and Prefect) only when it runs, so
# `partnerflow --help` and every other command start fast.

prospects_app = typer.Typer(no_args_is_help=True, help="Candidate partners: import, enrich, score.")
app.add_typer(prospects_app, name="prospects")


def _prepare() -> None:
    from partnerflow.models.engine import check_database
    from partnerflow.settings import check_settings, get_settings

    check_settings(get_settings())
    check_database()


@prospects_app.command("import")
def import_cmd(
    file: Path = typer.Argument(..., help="CSV file (any common delimiter and encoding)."),
    source: str | None = typer.Option(None, help="Where the list came from (default: the file name)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Import candidates; bad rows are reported by line and the good ones imported."""
    from partnerflow.tasks.discovery.csvfile import ImportFileError
    from partnerflow.tasks.discovery.imports import import_file

    _prepare()
    try:
        report = import_file(file, source)
    except ImportFileError as exc:
        typer.secho(f"{file}: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps({k: v for k, v in report.items() if k != "prospect_ids"}, indent=2, default=str))
    else:
        typer.echo(f"{report['rows']} rows: {report['created']} new, {report['updated']} updated, "
                   f"{report['unchanged']} unchanged, {len(report['skipped'])} already partners, "
                   f"{len(report['errors'])} rejected")
        for kind, rows in (("rejected", report["errors"]), ("skipped", report["skipped"]),
                           ("warning", report["warnings"])):
            for row in rows:
                typer.echo(f"  line {row['line']}: {kind}: {row['reason']}")
    if report["errors"]:
        raise typer.Exit(3)  # imported, but some rows need fixing


@prospects_app.command("enrich")
def enrich_cmd(
    prospect: list[int] = typer.Option([], "--prospect", help="Prospect id; repeat. Default: new ones."),
    limit: int = typer.Option(500, help="At most this many prospects."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Fetch each prospect's page, extract contacts and signals, and score the fit."""
    from partnerflow.settings import get_settings
    from partnerflow.tasks.discovery.enrichment import enrich_batch, prospects_to_enrich

    _prepare()
    ids = prospects_to_enrich(prospect or None, limit)
    size = max(1, get_settings().discovery.discovery_enrich_chunk_size)
    rows = []
    for start in range(0, len(ids), size):
        rows.extend(enrich_batch(ids[start:start + size]))
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    typer.echo(f"{len(rows)} prospects enriched")
    for row in sorted(rows, key=lambda r: (-r["score"], r["id"])):
        status = f"  [{row['error']}]" if row["error"] else ""
        typer.echo(f"  {row['score']:>3}  #{row['id']} {row['name']} ({row['domain']}){status}")


@prospects_app.command("rescore")
def rescore_cmd(
    prospect: list[int] = typer.Option([], "--prospect", help="Prospect id; repeat. Default: all."),
) -> None:
    """Score prospects again with the current scoring policy (after editing it); nothing is fetched."""
    from partnerflow.tasks.discovery.enrichment import rescore

    _prepare()
    stats = rescore(prospect or None)
    typer.echo(f"{stats['prospects']} prospects scored, {stats['changed']} changed")
