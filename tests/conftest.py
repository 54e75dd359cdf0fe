"""Test set-up shared by the whole suite.

- Everything the suite writes lives in one temp folder per session (var/, Prefect home,
  Prefect results), so sessions never leak into each other.
- The database is SQLite by default. When PARTNERFLOW_DATABASE_URL points at PostgreSQL
  the suite creates a fresh database on that server and drops it afterwards.
- The schema is built by the Alembic migrations; every test starts with empty tables.
- One Prefect test harness serves the whole session.
"""

from __future__ import annotations

import atexit
import os
import tempfile
import uuid
from pathlib import Path

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="partnerflow-tests-"))
os.environ["PARTNERFLOW_VAR_DIR"] = str(_SESSION_DIR / "var")
os.environ["PARTNERFLOW_SECRET_KEY"] = "test-secret-key-not-for-production"
os.environ["PREFECT_HOME"] = str(_SESSION_DIR / "prefect")
os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(_SESSION_DIR / "results")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
for _name in [n for n in os.environ if n.startswith("PARTNERFLOW_") and n not in (
        "PARTNERFLOW_VAR_DIR", "PARTNERFLOW_SECRET_KEY", "PARTNERFLOW_DATABASE_URL")]:
    del os.environ[_name]  # a developer's own settings must not change the tests
# The stack tests apply many times from 127.0.0.1; tests of the limits set their own.
os.environ["PARTNERFLOW_WEB_APPLY_LIMIT_PER_IP"] = "100000/minute"


_PG_SERVER_URL = None
_PG_DATABASE = f"pf_test_{uuid.uuid4().hex[:10]}"
if os.environ.get("PARTNERFLOW_DATABASE_URL", "").startswith(("postgres://", "postgresql")):
    from partnerflow import dbtools

    _PG_SERVER_URL = os.environ["PARTNERFLOW_DATABASE_URL"]
    try:
        os.environ["PARTNERFLOW_DATABASE_URL"] = dbtools.create_database(_PG_SERVER_URL, _PG_DATABASE)
    except Exception as exc:
        raise RuntimeError(f"PostgreSQL at {_PG_SERVER_URL} is unreachable: {exc}") from None
    # Dropped when this process ends, also in pytest-xdist's controller, which runs no test.
    atexit.register(dbtools.drop_database, _PG_SERVER_URL, _PG_DATABASE)

import pytest  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlmodel import SQLModel  # noqa: E402

from partnerflow.settings import get_settings, reset_settings  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def schema():
    """Build the schema with the migrations only, so every test also proves them."""
    from partnerflow import dbtools
    from partnerflow.models import get_engine

    dbtools.upgrade()
    yield
    get_engine().dispose()


@pytest.fixture(scope="session", autouse=True)
def prefect_server():
    """One Prefect test harness (a temporary API server) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(autouse=True)
def clean_tables(tmp_path, monkeypatch):
    """Every test starts with empty tables and its own outbox and documents folders."""
    from partnerflow.models import get_engine

    monkeypatch.setenv("PARTNERFLOW_OUTBOX_DIR", str(tmp_path / "outbox"))
    reset_settings()
    engine = get_engine()
    tables = [t.name for t in SQLModel.metadata.sorted_tables]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(tables):
                conn.execute(text(f'DELETE FROM "{table}"'))
    yield
    reset_settings()


@pytest.fixture
def configure(monkeypatch):
    """configure(email_provider="smtp", smtp_port=2525): set PARTNERFLOW_* settings for one test."""

    def _configure(**values):
        for key, value in values.items():
            name = f"PARTNERFLOW_{key.upper()}"
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, str(value))
        reset_settings()
        return get_settings()

    yield _configure
    reset_settings()


@pytest.fixture
def outbox(tmp_path):
    """The test's outbox folder: read the .eml files the outbox provider wrote."""
    return tmp_path / "outbox"


@pytest.fixture
def on_postgres() -> bool:
    return get_settings().resolved_database_url.startswith("postgresql")
