"""A throwaway Partnerflow home for a benchmark: its own folder, Prefect home and fresh, migrated database.

    with sandbox("outreach", PARTNERFLOW_EMAIL_PROVIDER="sendgrid") as work:
        ...  # this process's settings point into `work`; the schema was built by the migrations

Set up as the test suite is: a developer's own PARTNERFLOW_* settings are ignored; the database is
SQLite inside the folder, or, when `database_url` names a PostgreSQL server, a fresh database there
that is dropped afterwards. Call it before anything imports Prefect: Prefect reads PREFECT_HOME once.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from partnerflow import dbtools


def clean_environment(work: Path, **settings: str) -> dict[str, str]:
    """This process's environment without PARTNERFLOW_*, pointing into `work`, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNERFLOW_")}
    env.update({
        "PARTNERFLOW_VAR_DIR": str(work / "var"), "PARTNERFLOW_SECRET_KEY": "sandbox-secret-not-for-production",
        "PREFECT_HOME": str(work / "prefect"), "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(work / "results"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "WARNING",
    })
    env.update({name: str(value) for name, value in settings.items()})
    return env


@contextmanager
def sandbox(name: str, *, database_url: str | None = None, **settings: str) -> Iterator[Path]:
    """Point this process at a new folder (and database), build the schema, clean up afterwards."""
    work = Path(tempfile.mkdtemp(prefix=f"pf-{name}-"))
    env = clean_environment(work, **settings)
    database = f"pf_sandbox_{uuid.uuid4().hex[:10]}"
    if database_url:
        env["PARTNERFLOW_DATABASE_URL"] = dbtools.create_database(database_url, database)
    os.environ.clear()
    os.environ.update(env)
    (work / "var").mkdir()
    # Imported once the environment is set: settings and the engine are read from it.
    from partnerflow.models import get_engine
    from partnerflow.settings import reset_settings

    reset_settings()  # the engine follows the database URL by itself
    try:
        dbtools.upgrade()
        yield work
    finally:
        get_engine().dispose()
        if database_url:
            dbtools.drop_database(database_url, database)
        shutil.rmtree(work, ignore_errors=True)
