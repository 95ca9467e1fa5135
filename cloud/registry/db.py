"""Database engines for the registry: one place that knows SQLite's and PostgreSQL's quirks,
and what an unreachable database looks like."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

log = logging.getLogger(__name__)

# aiosqlite waits this long for another writer's lock before "database is locked".
SQLITE_BUSY_SECONDS = 30.0
# Seconds to open a PostgreSQL connection when the caller names none (the processes pass
# GRIDWIRE_DATABASE_CONNECT_TIMEOUT, cloud.settings.DatabaseSettings; asyncpg's default is 60).
CONNECT_TIMEOUT_SECONDS = 5.0


def is_sqlite(url: str) -> bool:
    """Whether ``url`` names an SQLite database."""
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``url`` (``sqlite+aiosqlite:///...`` or ``postgresql+asyncpg://...``).

    On SQLite, foreign keys are switched on for every connection (SQLite leaves them off, and
    authorisations rely on cascading deletes) and WAL lets readers run beside a writer. On
    PostgreSQL a connection refused or timed out is raised as SQLAlchemy's ``OperationalError``
    (asyncpg raises the bare ``OSError``, a ``TimeoutError`` after the connect timeout:
    ``connect_args={"timeout": seconds}``, :data:`CONNECT_TIMEOUT_SECONDS` unless given), so
    callers see one family of database errors.
    """
    if is_sqlite(url):
        kwargs.setdefault("connect_args", {"timeout": SQLITE_BUSY_SECONDS})
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs["connect_args"] = {"timeout": CONNECT_TIMEOUT_SECONDS, **kwargs.get("connect_args", {})}
    engine = create_async_engine(url, **kwargs)
    event.listen(engine.sync_engine, "do_connect", _connect)
    return engine


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database cannot be reached for now: nothing
    listens, its name does not resolve yet, it is starting up or shutting down, the connection
    dropped. Errors of the database's answers (a missing database, a refused login, a broken
    statement) are not."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError | asyncpg.CannotConnectNowError | asyncpg.ConnectionDoesNotExistError):
            return True
        if isinstance(seen, sa_exc.DBAPIError) and seen.connection_invalidated:
            return True  # the server went away under a pooled connection
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:  # noqa: ANN401 - a DBAPI connection
    try:
        return dialect.connect(*cargs, **cparams)
    except OSError as exc:
        raise sa_exc.OperationalError(None, None, exc) from exc


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()
