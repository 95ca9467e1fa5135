"""One autocommit connection kept by a group commit's writer, instead of one checked out per statement.

Checking a connection out of the pool for each statement cost a round trip on PostgreSQL (the
pool's pre-ping) and two hops through aiosqlite's thread on SQLite (autocommit set on checkout,
reset on return), about as much as the statement itself: on an idle platform a command's round
trip runs a dozen statements, each in turn. A :class:`GroupCommit` writer runs one flush at a
time, so it can keep one connection for all of them. Statements in the store methods ask
:func:`connect`, which gives the connection the running writer holds for that engine, or a
pooled one as before.

A held connection that fails (the database restarted under it) is closed and not used again:
the failure reaches the flush's callers as any database error does (the MQTT message is
delivered again, a transient failure), and the next flush opens a new connection, pre-pinged.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

# The most connections one process's writers keep at once: the core's decide and finish writers,
# its pump and its success log (the domain's results consumer keeps two). A process's pool is
# sized with them on top of ``GRIDWIRE_DATABASE_POOL_SIZE`` (cloud.settings.DatabaseSettings), so
# the statements that check a connection out per use still find the pool the setting says, and a
# small pool cannot be taken whole by writers that never give theirs back.
HELD_PER_PROCESS = 4


@functools.lru_cache(maxsize=32)
def autocommit(engine: AsyncEngine) -> AsyncEngine:
    """``engine`` in autocommit mode, made once per engine (each one copies the engine's event set)."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")


class Held:
    """An autocommit connection to ``engine``, opened when first used and kept until :meth:`close`.
    For one task at a time (a group commit's writer)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = autocommit(engine)
        self.pool = engine.sync_engine.pool
        self._conn: AsyncConnection | None = None

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[AsyncConnection]:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = await self._engine.connect()
        try:
            yield self._conn
        except BaseException:
            # Its state is not known (a statement failed or was cancelled): back to the pool,
            # which resets or discards it, and a new one next time.
            await self.close()
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


_HELD: ContextVar[Held | None] = ContextVar("gridwire_held_connection", default=None)


def connect(engine: AsyncEngine) -> AbstractAsyncContextManager[AsyncConnection]:
    """An autocommit connection to ``engine``: the running writer's held one, else one from the pool."""
    held = _HELD.get()
    if held is not None and held.pool is engine.sync_engine.pool:
        return held.use()
    return autocommit(engine).connect()


@contextlib.contextmanager
def holding(held: Held | None) -> Iterator[None]:
    """Statements in this context (this task) use ``held`` for its engine."""
    token = _HELD.set(held)
    try:
        yield
    finally:
        _HELD.reset(token)


__all__ = ["HELD_PER_PROCESS", "Held", "autocommit", "connect", "holding"]
