"""The stack tests' Prefect server keeps its data in PostgreSQL when the suite runs on PostgreSQL.

That is how a team runs it (README). On its own SQLite file a Prefect server under load answered
"database is locked": resumes got 503 and live runs' heartbeats were lost.
"""

from __future__ import annotations

import pytest

from partnerflow.settings import get_settings
from partnerflow.testing.scale import prefect_database


@pytest.fixture(autouse=True)
def prefect_server_on_postgres(request, monkeypatch):
    database_url = get_settings().resolved_database_url
    if request.node.get_closest_marker("slow") is None or not database_url.startswith("postgresql"):
        yield
        return
    with prefect_database(database_url) as prefect_db:
        monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", prefect_db)
        yield
