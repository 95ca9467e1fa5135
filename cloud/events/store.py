"""Device events in the registry database: stored once by id, read back by device, type and time,
and the organisations' subscriptions to them (which types, on which channels).

Events share the monitoring event log (``monitoring_event``) with the events monitoring raises
itself (concentrator offline, clock drift), so one history and one console page show both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from broker.schemas import DeviceEvent
from cloud.monitoring.events import EventType, MonitoringEvent
from cloud.monitoring.models import MonitoringEventRow, NotificationSubscriptionRow
from cloud.registry.enums import LifecycleState
from cloud.registry.functions import DeviceFunction, groups_allowing
from cloud.registry.models import Device, DeviceAuthorisation, Organisation, utcnow


@dataclass(frozen=True, slots=True)
class Recorded:
    """What storing an event found: whether it is new, and whether it was already notified."""

    new: bool
    notified: bool


@dataclass(frozen=True, slots=True)
class Subscription:
    organisation: str
    event_type: EventType
    mqtt: bool
    webhook: bool


def monitoring_event(event: DeviceEvent, *, concentrator: str) -> MonitoringEvent:
    """The cloud's record of a device's event (its id kept, so a repeat is the same record)."""
    kind = EventType(event.event_type.value)
    return MonitoringEvent(event_id=event.event_id, event_type=kind, severity=kind.severity,
                           device_id=event.device_id, occurred_at=event.occurred_at,
                           detail={**event.detail, "source": event.source.value, "concentratorId": concentrator})


def _public(row: MonitoringEventRow) -> MonitoringEvent:
    return MonitoringEvent(event_id=row.event_id, event_type=row.event_type, severity=row.severity,
                           device_id=row.device_id, occurred_at=row.occurred_at, detail=row.detail)


class EventStore:
    """Reads and writes the event log and the subscriptions (schema from the registry migrations)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    # --- the log ------------------------------------------------------------------------------

    async def record(self, event: MonitoringEvent) -> Recorded:
        """Store the event unless its id is stored already (then say whether it was notified)."""
        try:
            async with self._sessions.begin() as session:
                session.add(MonitoringEventRow(event_id=str(event.event_id), event_type=event.event_type.value,
                                               severity=event.severity.value, device_id=event.device_id,
                                               occurred_at=event.occurred_at, detail=event.detail))
        except IntegrityError:
            async with self._sessions() as session:
                notified = await session.scalar(select(MonitoringEventRow.notified_at)
                                                .where(MonitoringEventRow.event_id == str(event.event_id)))
            return Recorded(new=False, notified=notified is not None)
        return Recorded(new=True, notified=False)

    async def mark_notified(self, event: MonitoringEvent) -> None:
        async with self._sessions.begin() as session:
            await session.execute(update(MonitoringEventRow).where(MonitoringEventRow.event_id == str(event.event_id))
                                  .values(notified_at=utcnow()))

    async def history(self, *, organisation: str | None, device_id: str | None = None,
                      event_types: Sequence[EventType] = (), start: datetime | None = None,
                      end: datetime | None = None, page: int = 1, page_size: int = 100,
                      ) -> tuple[list[MonitoringEvent], int]:
        """One page of events, newest first, and how many match in all.

        ``organisation`` None reads every device's (a platform administrator); otherwise only
        devices on which the organisation holds a group allowing RECEIVE_EVENTS, and which are
        not decommissioned, as :func:`cloud.registry.functions.authorise` decides for one device.
        """
        where = []
        if device_id is not None:
            where.append(MonitoringEventRow.device_id == device_id)
        if event_types:
            where.append(MonitoringEventRow.event_type.in_([t.value for t in event_types]))
        if start is not None:
            where.append(MonitoringEventRow.occurred_at >= start)
        if end is not None:
            where.append(MonitoringEventRow.occurred_at < end)
        if organisation is not None:
            visible = (select(Device.identification).join(DeviceAuthorisation).join(Organisation)
                       .where(Organisation.identification == organisation, Organisation.enabled.is_(True),
                              Device.state != LifecycleState.DECOMMISSIONED,
                              DeviceAuthorisation.function_group.in_(groups_allowing(DeviceFunction.RECEIVE_EVENTS))))
            where.append(MonitoringEventRow.device_id.in_(visible))
        query = (select(MonitoringEventRow).where(*where)
                 .order_by(MonitoringEventRow.occurred_at.desc(), MonitoringEventRow.id.desc())
                 .offset((page - 1) * page_size).limit(page_size))
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
            total = await session.scalar(select(func.count()).select_from(MonitoringEventRow).where(*where))
        return [_public(row) for row in rows], int(total or 0)

    # --- subscriptions ------------------------------------------------------------------------

    async def subscribe(self, organisation: str, event_type: EventType, *, mqtt: bool, webhook: bool) -> Subscription:
        """Create or change the organisation's subscription to one event type."""
        async with self._sessions.begin() as session:
            row = await session.scalar(select(NotificationSubscriptionRow).where(
                NotificationSubscriptionRow.organisation == organisation,
                NotificationSubscriptionRow.event_type == event_type.value).with_for_update())
            if row is None:
                row = NotificationSubscriptionRow(organisation=organisation, event_type=event_type.value)
                session.add(row)
            row.mqtt, row.webhook = mqtt, webhook
        return Subscription(organisation, event_type, mqtt, webhook)

    async def unsubscribe(self, organisation: str, event_type: EventType) -> bool:
        async with self._sessions.begin() as session:
            row = await session.scalar(select(NotificationSubscriptionRow).where(
                NotificationSubscriptionRow.organisation == organisation,
                NotificationSubscriptionRow.event_type == event_type.value))
            if row is None:
                return False
            await session.delete(row)
        return True

    async def subscriptions(self, *, organisation: str | None = None,
                            event_type: EventType | None = None) -> list[Subscription]:
        query = select(NotificationSubscriptionRow)
        if organisation is not None:
            query = query.where(NotificationSubscriptionRow.organisation == organisation)
        if event_type is not None:
            query = query.where(NotificationSubscriptionRow.event_type == event_type.value)
        async with self._sessions() as session:
            rows = (await session.scalars(query.order_by(NotificationSubscriptionRow.organisation,
                                                         NotificationSubscriptionRow.event_type))).all()
        return [Subscription(r.organisation, EventType(r.event_type), r.mqtt, r.webhook) for r in rows]
