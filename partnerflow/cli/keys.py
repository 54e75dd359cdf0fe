"""`partnerflow keys`: the installation's secret keys — list them, add one, re-encrypt, retire an old one.

Rotation, with keys in var/secret.key:   keys new -> keys rotate -> (links expire) -> keys retire ID
With PARTNERFLOW_SECRET_KEY: set the new key, move the old one to PARTNERFLOW_PREVIOUS_SECRET_KEYS,
run `keys rotate`, and drop the old key from that list once the links it signed have expired.
"""

from __future__ import annotations

import json

import typer

from partnerflow.cli import app

# Function-local imports: the CLI starts fast and loads the database and key code only when a command runs.

keys_app = typer.Typer(no_args_is_help=True, help="Secret keys: list, add, re-encrypt, retire.")
app.add_typer(keys_app, name="keys")


@keys_app.command("list")
def list_keys() -> None:
    """Key ids, newest first (never the keys), and how many encrypted values each still holds."""
    from partnerflow.secrets import keys
    from partnerflow.tasks.shared.key_rotation import values_by_key

    counts = values_by_key()
    for position, key in enumerate(keys()):
        role = "newest: encrypts and signs" if position == 0 else "older: decrypts and verifies"
        typer.echo(f"{key.id}  {role}  {counts.pop(key.id, 0)} encrypted values")
    for key_id, count in sorted(counts.items()):
        typer.echo(f"{key_id}  {'from before key ids' if key_id == 'none' else 'NOT LISTED'}  {count} values")


@keys_app.command("new")
def new_key() -> None:
    """Add a newly generated key to var/secret.key; it encrypts and signs from now on."""
    from partnerflow.secrets import add_key_to_file

    key = add_key_to_file()
    typer.echo(f"added key {key.id}; run `partnerflow keys rotate` to re-encrypt stored values with it")


@keys_app.command("rotate")
def rotate(batch_size: int = typer.Option(500, min=1, help="Rows per transaction.")) -> None:
    """Re-encrypt every encrypted value with the newest key, in batches, each one audited."""
    from partnerflow.models.engine import check_database
    from partnerflow.tasks.shared.key_rotation import rotate as rotate_values

    check_database()
    counts = rotate_values(batch_size=batch_size)
    typer.echo(json.dumps(counts, sort_keys=True))
    if counts.get("unreadable"):
        typer.secho("some values were encrypted with a key that is no longer listed; list it again to rotate them",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


@keys_app.command("retire")
def retire(key_id: str) -> None:
    """Remove an older key from var/secret.key, once no encrypted value needs it any more."""
    from partnerflow.secrets import retire_key_from_file
    from partnerflow.tasks.shared.key_rotation import values_by_key

    left = values_by_key().get(key_id, 0)
    if left:
        typer.secho(f"{left} values are still encrypted with key {key_id}; run `partnerflow keys rotate` first",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    retire_key_from_file(key_id)
    typer.echo(f"retired key {key_id}; links and API keys made with it no longer verify")
