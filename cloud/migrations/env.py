"""Alembic environment for the registry: runs on a connection handed in, or on sqlalchemy.url.

:func:`cloud.migrations.migrate` passes a live connection in ``config.attributes``;
the plain ``alembic`` command line falls back to the URL in the config.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

# Every table lives in the registry's metadata; importing a package's models registers its tables.
import cloud.accounts.models  # noqa: F401 - broker accounts, claims, certificates
import cloud.core.models  # noqa: F401 - commands
import cloud.domains.models  # noqa: F401 - functional requests
import cloud.firmware.models  # noqa: F401 - firmware and campaigns
import cloud.monitoring.models  # noqa: F401 - device status and events
import cloud.notify.models  # noqa: F401 - the webhook delivery outbox
import cloud.processing.models  # noqa: F401 - meter exchanges
import cloud.scheduler.models  # noqa: F401 - schedules
import cloud.timesync.models  # noqa: F401 - clock drift
from cloud.registry.db import create_engine
from cloud.registry.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_url(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection and no sqlalchemy.url given to the registry migrations")
    asyncio.run(_run_from_url(url))


if context.is_offline_mode():
    raise RuntimeError("the registry migrations run online only; use gridwire registry migrate")
run_migrations_online()
