"""Monitoring state in the registry database: concentrator status, device connectivity,
notification subscriptions and the event log. Every method is one short transaction."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from broker.schemas import ConcentratorStatus
from cloud.monitoring.events import EventType, MonitoringEvent
from cloud.monitoring.liveness import HeldStatus, decide
from cloud.monitoring.models import (
    ConcentratorStateRow,
    DeviceConnectivityRow,
    MonitoringEventRow,
    NotificationSubscriptionRow,
)

log = logging.getLogger(__name__)


class MonitoringStore:
    """Reads and writes the monitoring tables (the schema comes from the registry migrations)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    # --- concentrators ------------------------------------------------------------------------

    async def apply_status(self, status: ConcentratorStatus, *, received_at: datetime) -> HeldStatus | None:
        """Store ``status`` if :func:`~cloud.monitoring.liveness.decide` believes it; return the change.

        Returns the new held status when the state changed (ONLINE <-> OFFLINE or first seen),
        None when the message was stale or only refreshed an unchanged state.
        """
        async with self._sessions.begin() as session:
            row = await session.get(ConcentratorStateRow, status.concentrator_id, with_for_update=True)
            held = None if row is None else HeldStatus(row.state, row.session, row.status_at)
            new = decide(held, status, received_at=received_at)
            if new is None:
                log.info("concentrator %s: ignored %s (session %d, %s); holding %s", status.concentrator_id,
                         status.state, status.session, status.timestamp.isoformat(), held)
                return None
            if row is None:
                row = ConcentratorStateRow(concentrator_id=status.concentrator_id)
                session.add(row)
            row.state, row.session, row.status_at = new.state, new.session, new.status_at
            row.reason = (status.reason or "")[:512] or None
            row.updated_at = received_at
            if status.state == "ONLINE":
                row.software_version = status.software_version
                row.outbox_backlog = status.outbox_backlog
        changed = held is None or held.state != new.state
        return new if changed else None

    async def concentrator_state(self, cid: str) -> HeldStatus | None:
        async with self._sessions() as session:
            row = await session.get(ConcentratorStateRow, cid)
            return None if row is None else HeldStatus(row.state, row.session, row.status_at)

    async def concentrators(self) -> list[ConcentratorStateRow]:
        """Every concentrator's last accepted status (the console's fleet overview)."""
        async with self._sessions() as session:
            return list((await session.scalars(select(ConcentratorStateRow)
                                                .order_by(ConcentratorStateRow.concentrator_id))).all())

    async def counts(self) -> dict[tuple[str, str], int]:
        """How many concentrators and devices are in each state: {("concentrator", "ONLINE"): n,
        ("device", "online"): n, ...} (two GROUP BY queries; for metrics and the console)."""
        async with self._sessions() as session:
            found: dict[tuple[str, str], int] = {("concentrator", "ONLINE"): 0, ("concentrator", "OFFLINE"): 0,
                                                 ("device", "online"): 0, ("device", "offline"): 0}
            for state, n in (await session.execute(select(ConcentratorStateRow.state, func.count())
                                                   .group_by(ConcentratorStateRow.state))).all():
                found[("concentrator", state)] = n
            for online, n in (await session.execute(select(DeviceConnectivityRow.online, func.count())
                                                    .group_by(DeviceConnectivityRow.online))).all():
                found[("device", "online" if online else "offline")] = n
        return found

    # --- devices ------------------------------------------------------------------------------

    async def connectivity(self, device_id: str) -> bool | None:
        """Whether ``device_id`` is held online; None if monitoring has no opinion yet."""
        async with self._sessions() as session:
            row = await session.get(DeviceConnectivityRow, device_id)
            return None if row is None else row.online

    async def set_connectivity(self, device_id: str, *, online: bool, at: datetime, reason: str | None) -> bool:
        """Record the device on- or offline; True only if that changed what was held.

        The change is a conditional UPDATE, so when several monitors see the same silence only
        one of them raises the event.
        """
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(DeviceConnectivityRow)
                .where(DeviceConnectivityRow.device_id == device_id, DeviceConnectivityRow.online.is_not(online))
                .values(online=online, since=at, reason=(reason or "")[:512] or None)
                .execution_options(synchronize_session=False))
            if result.rowcount == 1:  # type: ignore[attr-defined]
                return True
            exists = await session.get(DeviceConnectivityRow, device_id)
            if exists is not None:
                return False
        try:
            async with self._sessions.begin() as session:
                session.add(DeviceConnectivityRow(device_id=device_id, online=online, since=at,
                                                  reason=(reason or "")[:512] or None))
        except IntegrityError:
            return False  # another monitor recorded it first
        return True

    # --- subscriptions and events -------------------------------------------------------------

    async def subscribe(self, organisation: str, event_type: EventType) -> bool:
        """Let ``organisation`` receive ``event_type``; False if it already did."""
        try:
            async with self._sessions.begin() as session:
                session.add(NotificationSubscriptionRow(organisation=organisation, event_type=event_type.value))
        except IntegrityError:
            return False
        return True

    async def unsubscribe(self, organisation: str, event_type: EventType) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(delete(NotificationSubscriptionRow).where(
                NotificationSubscriptionRow.organisation == organisation,
                NotificationSubscriptionRow.event_type == event_type.value))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def subscribers(self, event_type: EventType) -> set[str]:
        """Organisations that want ``event_type`` on their app topic."""
        async with self._sessions() as session:
            rows = await session.scalars(select(NotificationSubscriptionRow.organisation)
                                         .where(NotificationSubscriptionRow.event_type == event_type.value,
                                                NotificationSubscriptionRow.mqtt.is_(True)))
            return set(rows.all())

    async def record_event(self, event: MonitoringEvent) -> None:
        async with self._sessions.begin() as session:
            session.add(MonitoringEventRow(event_id=str(event.event_id), event_type=event.event_type.value,
                                           severity=event.severity.value, device_id=event.device_id,
                                           occurred_at=event.occurred_at, detail=event.detail))

    async def unnotified(self, event_types: Iterable[EventType], *, since: datetime, before: datetime,
                         limit: int = 100) -> list[MonitoringEvent]:
        """Events of ``event_types`` that occurred in [since, before) and were never handed out
        (a process killed between storing and serving them), oldest first."""
        query = (select(MonitoringEventRow)
                 .where(MonitoringEventRow.notified_at.is_(None),
                        MonitoringEventRow.event_type.in_([t.value for t in event_types]),
                        MonitoringEventRow.occurred_at >= since, MonitoringEventRow.occurred_at < before)
                 .order_by(MonitoringEventRow.occurred_at, MonitoringEventRow.id).limit(limit))
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
        return [MonitoringEvent(event_id=row.event_id, event_type=row.event_type, severity=row.severity,
                                device_id=row.device_id, occurred_at=row.occurred_at, detail=row.detail)
                for row in rows]

    async def recent_events(self, *, limit: int = 100, device_id: str | None = None) -> list[MonitoringEvent]:
        """The newest events (of one device if given), newest first (the console's events page)."""
        query = select(MonitoringEventRow).order_by(MonitoringEventRow.occurred_at.desc(),
                                                    MonitoringEventRow.id.desc()).limit(limit)
        if device_id is not None:
            query = query.where(MonitoringEventRow.device_id == device_id)
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
        return [MonitoringEvent(event_id=row.event_id, event_type=row.event_type, severity=row.severity,
                                device_id=row.device_id, occurred_at=row.occurred_at, detail=row.detail)
                for row in rows]

    async def events(self, device_id: str, *, since: datetime | None = None) -> list[MonitoringEvent]:
        """The event log of one device, oldest first."""
        query = select(MonitoringEventRow).where(MonitoringEventRow.device_id == device_id)
        if since is not None:
            query = query.where(MonitoringEventRow.occurred_at >= since)
        async with self._sessions() as session:
            rows = (await session.scalars(query.order_by(MonitoringEventRow.occurred_at, MonitoringEventRow.id))).all()
        return [MonitoringEvent(event_id=row.event_id, event_type=row.event_type, severity=row.severity,
                                device_id=row.device_id, occurred_at=row.occurred_at, detail=row.detail)
                for row in rows]
