"""Successful device communication counted in groups: one transaction for many command results.

Every succeeded command bumps its device's success counter, clears its failure streak, sets
last seen and makes a registered device ACTIVE (what
:meth:`cloud.registry.Registry.record_communication` does for one). Done one transaction per
command, that was a third of the core's database work when a fleet is switched. Here callers
that arrive while a write is in flight wait for the next write, which carries all of them
(group commit): alone, a success is written at once; under load, hundreds share a transaction.
A caller returns only after its success is stored, so what happens after (the notification)
never runs ahead of the registry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import bindparam, case, or_, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cloud.held import Held
from cloud.registry import LifecycleState
from cloud.registry.models import Device, utcnow

log = logging.getLogger(__name__)


# Built once (building a statement costs more CPU than running a cached one).
# One statement: the count, the streak, last seen and a registered or installed device made ACTIVE.
_COUNT = (update(Device).where(Device.identification == bindparam("b_device"))
          .values(comm_success_count=Device.comm_success_count + bindparam("b_count"), consecutive_failures=0,
                  last_seen=bindparam("b_at"),
                  # Not IN (...): a list becomes an expanding parameter, which executemany refuses.
                  state=case((or_(Device.state == LifecycleState.REGISTERED,
                                  Device.state == LifecycleState.INSTALLED), LifecycleState.ACTIVE),
                             else_=Device.state)))


class SuccessLog:
    """Records device communication successes, many per transaction."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._engine = engine
        # The writer runs one write at a time: it keeps one connection (cloud.held).
        self._held = Held(engine)
        self._clock = clock
        self._pending: dict[str, tuple[int, datetime]] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._writer: asyncio.Task[None] | None = None
        self.transactions = 0

    async def success(self, device: str, *, at: datetime | None = None) -> None:
        """Count one success with ``device``; return once it is stored."""
        when = at or self._clock()
        count, last = self._pending.get(device, (0, when))
        self._pending[device] = (count + 1, max(last, when))
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name="core-success-log")
        await waiter

    async def _write_all(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            waiters, self._waiters = self._waiters, []
            try:
                await self._write(batch)
            except Exception as exc:  # noqa: BLE001 - every waiter gets the failure, the writer goes on
                log.warning("could not record %d device successes: %s", len(batch), exc)
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                continue
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _write(self, batch: dict[str, tuple[int, datetime]]) -> None:
        # Sorted, so two core processes lock device rows in the same order (no deadlock).
        devices = sorted(batch)
        # Autocommit: each statement is atomic on its own, and BEGIN/COMMIT would be two more round trips.
        rows = [{"b_device": d, "b_count": batch[d][0], "b_at": batch[d][1]} for d in devices]
        async with self._held.use() as conn:
            # One device (an idle platform): executed as one statement, not an executemany.
            await conn.execute(_COUNT, rows[0] if len(rows) == 1 else rows)
        self.transactions += 1

    async def close(self) -> None:
        """Wait for the writes in flight."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        await self._held.close()
