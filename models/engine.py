"""Engine and session setup: one engine per process, built from settings."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from partnerflow.settings import ConfigError, get_settings

_engine: Engine | None = None
_engine_url: str | None = None


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets served flow runs (separate processes) read while one writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    # In WAL mode NORMAL survives a killed process (only a power loss can drop the last commits).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def get_engine() -> Engine:
    """The process's engine, rebuilt when the configured database URL changed (tests switch it)."""
    global _engine, _engine_url
    settings = get_settings()
    url = settings.resolved_database_url
    if _engine is not None and url != _engine_url:
        reset_engine()
    if _engine is None:
        _engine_url = url
        if url.startswith("sqlite"):
            settings.var_dir.mkdir(parents=True, exist_ok=True)
            _engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(_engine, "connect", _sqlite_pragmas)
        else:
            _engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    return _engine


def reset_engine() -> None:
    global _engine
    if _engine is not None:
        _engine.dispose()
    _engine = None


@contextlib.contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def check_database() -> None:
    """Fail with one sentence when the database cannot be reached."""
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"PARTNERFLOW_DATABASE_URL: cannot connect to the database ({reason})."
        ) from None


def is_postgres() -> bool:
    return get_engine().dialect.name == "postgresql"
