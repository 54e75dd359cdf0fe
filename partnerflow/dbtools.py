"""Schema management through Alembic (`partnerflow db upgrade`)."""

from __future__ import annotations

from importlib import resources

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from partnerflow.models.engine import get_engine
from partnerflow.settings import ConfigError


def alembic_config() -> Config:
    ini = resources.files("partnerflow.migrations") / "alembic.ini"
    config = Config(str(ini))
    config.set_main_option("script_location", str(resources.files("partnerflow.migrations")))
    return config


def upgrade(revision: str = "head") -> None:
    command.upgrade(alembic_config(), revision)


def revision(message: str) -> None:
    """Autogenerate a migration from the difference between the tables and the database."""
    command.revision(alembic_config(), message=message, autogenerate=True)


def pending_changes() -> list:
    """Differences between the SQLModel tables and the migrated database (empty when in step)."""
    from alembic.autogenerate import compare_metadata
    from sqlmodel import SQLModel

    import partnerflow.models  # noqa: F401  registers every table on SQLModel.metadata

    with get_engine().connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, SQLModel.metadata)


def check_schema() -> None:
    """Fail with one sentence when the database has no tables yet, or misses a migration."""
    with get_engine().connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if current is None:
        raise ConfigError("the database has no Partnerflow tables yet; run `partnerflow db upgrade` to create them.")
    if current != head:
        raise ConfigError(f"the database schema is at revision {current} and this version needs {head}; "
                          "run `partnerflow db upgrade`.")


def _admin_engine(server_url: str) -> sa.Engine:
    url = sa.make_url(server_url).set(drivername="postgresql+psycopg")
    return sa.create_engine(url, isolation_level="AUTOCOMMIT")


def create_database(server_url: str, name: str, *, replace: bool = False) -> str:
    """Create database `name` on the PostgreSQL server `server_url` names (dropping an old one when
    `replace`); return its URL."""
    engine = _admin_engine(server_url)
    try:
        with engine.connect() as conn:
            if replace:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return engine.url.set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, name: str) -> None:
    engine = _admin_engine(server_url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()
