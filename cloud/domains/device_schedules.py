"""Schedules devices keep themselves: the one each device should hold, the version last sent to it
and the version it reports holding.

A schedule set through the API is recorded here (:meth:`DeviceScheduleStore.set`) before it is
sent. A device reports the version it holds (a light in its status, a birth at each
connection); :meth:`DeviceScheduleStore.report` records it and, when a device that has just
connected holds another version (or none: replaced, reset, or offline when the schedule was
sent and the command lost), claims a re-send in the same transaction, so of several consumers
one sends it. The device takes a version it already holds as a no-op, so a re-send that crosses
a queued first copy changes nothing.

Devices behind a concentrator (a tariff schedule in a meter or relay) report nothing of their
own: their version counts as held once the request that sent it succeeded (the edge wrote it and
read it back), which :mod:`cloud.domains.concentrator_schedules` checks at each connection of
their concentrator, sending again what did not get there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from cloud.domains.models import DeviceScheduleRow
from cloud.registry.models import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceScheduleState:
    """A device's schedule as the cloud holds it."""

    device: str
    organisation: str
    domain: str
    operation: str
    version: int
    parameters: dict[str, Any]
    set_at: datetime
    sent_version: int | None
    sent_at: datetime | None
    sent_correlation: str | None
    resends: int
    reported_version: int | None
    reported_at: datetime | None

    @property
    def confirmed(self) -> bool:
        """Whether the device last reported holding the version it should hold."""
        return self.reported_version == self.version


# Sends a kept schedule again as a functional request; its correlation id.
Resend = Callable[[DeviceScheduleState], Awaitable[str]]


def needs_resend(state: DeviceScheduleState, *, reported: int | None, birth: bool) -> bool:
    """Whether to send ``state``'s schedule again to a device that reports holding ``reported`` (pure).

    Only at a birth: a status after a switch says nothing about a schedule still on its way; a
    device that has just connected and holds another version will not get the one sent while
    it was away (its broker session did not keep the command, or the command expired)."""
    return birth and reported != state.version


def _state(row: DeviceScheduleRow) -> DeviceScheduleState:
    return DeviceScheduleState(device=row.device, organisation=row.organisation, domain=row.domain,
                               operation=row.operation, version=row.version, parameters=dict(row.parameters),
                               set_at=row.set_at, sent_version=row.sent_version, sent_at=row.sent_at,
                               sent_correlation=row.sent_correlation, resends=row.resends,
                               reported_version=row.reported_version, reported_at=row.reported_at)


class DeviceScheduleStore:
    """Reads and writes ``device_schedule``; every method is one short transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def set(self, *, organisation: str, device: str, domain: str, operation: str, version: int,
                  parameters: dict[str, Any], at: datetime | None = None) -> None:
        """Record the schedule ``device`` should hold from now on (what it reported is kept)."""
        for attempt in (1, 2):
            try:
                async with self._sessions.begin() as session:
                    row = await session.get(DeviceScheduleRow, device, with_for_update=True)
                    if row is None:
                        row = DeviceScheduleRow(device=device, resends=0)
                        session.add(row)
                    row.organisation, row.domain, row.operation = organisation, domain, operation
                    row.version, row.parameters, row.set_at = version, parameters, at or utcnow()
                return
            except IntegrityError:
                if attempt == 2:
                    raise
                # Two first settings of one device at once: the other inserted; update its row.

    async def sent(self, device: str, *, version: int, correlation: str, at: datetime | None = None) -> None:
        """Record that ``version`` went out to ``device`` as functional request ``correlation``."""
        async with self._sessions.begin() as session:
            row = await session.get(DeviceScheduleRow, device, with_for_update=True)
            if row is not None:
                row.sent_version, row.sent_at, row.sent_correlation = version, at or utcnow(), correlation

    async def get(self, device: str) -> DeviceScheduleState | None:
        async with self._sessions() as session:
            row = await session.get(DeviceScheduleRow, device)
            return None if row is None else _state(row)

    async def report(self, device: str, *, version: int | None, birth: bool,
                     at: datetime) -> DeviceScheduleState | None:
        """Record the version ``device`` reports holding (as of ``at``); the schedule to send it
        again (the re-send claimed: counted, sent version and time set), or None."""
        async with self._sessions.begin() as session:
            row = await session.get(DeviceScheduleRow, device, with_for_update=True)
            if row is None:
                return None  # no schedule kept on this device through the cloud
            if row.reported_at is not None and at < row.reported_at:
                log.info("device %s: status of %s older than the one held (%s); ignored", device, at.isoformat(),
                         row.reported_at.isoformat())
                return None
            row.reported_version, row.reported_at = version, at
            state = _state(row)
            if not needs_resend(state, reported=version, birth=birth):
                return None
            row.sent_version, row.sent_at, row.resends = row.version, utcnow(), row.resends + 1
            log.info("device %s connected holding schedule version %s, not %d: sending it again", device, version,
                     row.version)
            return _state(row)

    async def unconfirmed(self) -> list[DeviceScheduleState]:
        """Every schedule its device has not been seen to hold (oldest set first)."""
        async with self._sessions() as session:
            rows = (await session.scalars(select(DeviceScheduleRow).where(or_(
                DeviceScheduleRow.reported_version.is_(None),
                DeviceScheduleRow.reported_version != DeviceScheduleRow.version)).order_by(DeviceScheduleRow.set_at)))
            return [_state(row) for row in rows]

    async def confirm(self, device: str, *, version: int, at: datetime | None = None) -> bool:
        """Record that ``device`` holds ``version`` (its sending succeeded); False if another was set since."""
        async with self._sessions.begin() as session:
            row = await session.get(DeviceScheduleRow, device, with_for_update=True)
            if row is None or row.version != version:
                return False
            row.reported_version, row.reported_at = version, at or utcnow()
            return True

    async def claim_resend(self, device: str, *, version: int, after: str | None) -> DeviceScheduleState | None:
        """Claim sending ``version`` again, if it is still the one to hold and the last sending is
        still ``after`` (a request id); the claimed state, or None when someone else got there."""
        async with self._sessions.begin() as session:
            row = await session.get(DeviceScheduleRow, device, with_for_update=True)
            if row is None or row.version != version or row.sent_correlation != after:
                return None
            row.sent_version, row.sent_at, row.resends = row.version, utcnow(), row.resends + 1
            return _state(row)
