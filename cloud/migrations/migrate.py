"""Bring a registry database to the newest schema with Alembic, from code or the CLI."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from broker.backoff import Backoff
from cloud.registry.db import create_engine, unreachable

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config for the registry migrations, with no alembic.ini needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # '%' is interpolation syntax in Alembic's config parser.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision the code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("the registry has no migrations")
    return head


async def migrate(url: str, *, revision: str = "head") -> str | None:
    """Upgrade the database at ``url`` to ``revision`` (default: head); return the revision reached.

    Safe to run again: an up-to-date database is left as it is. Run it before starting any
    service that uses the registry (services never create tables themselves).
    """
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            reached = await conn.run_sync(_upgrade, revision)
            await conn.commit()
    finally:
        await engine.dispose()
    log.info("registry schema at revision %s (%s)", reached, engine.url.render_as_string(hide_password=True))
    return reached


async def migrate_when_reachable(url: str, *, wait: float, revision: str = "head",
                                 backoff: Backoff = Backoff(initial=0.5, maximum=5.0)) -> str | None:
    """:func:`migrate`, tried again while the database cannot be reached, for up to ``wait``
    seconds: a deployment may start it with its database (a container, a service), which then
    refuses connections, or answers that it is starting up, for a while. Any other failure, or
    one past ``wait``, is raised at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    attempt = 0
    while True:
        try:
            return await migrate(url, revision=revision)
        except Exception as exc:
            left = deadline - loop.time()
            if left <= 0 or not unreachable(exc):
                raise
            delay = min(backoff.delay(attempt), left)
            log.warning("database not reachable yet (%s: %s); trying again in %.1f s", type(exc).__name__, exc,
                        delay)
            attempt += 1
            await asyncio.sleep(delay)


async def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at, or None if it was never migrated."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, revision: str) -> str | None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
    return MigrationContext.configure(connection).get_current_revision()
