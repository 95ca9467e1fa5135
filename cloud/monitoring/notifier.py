"""Raising an event: log it, then hand it to every organisation entitled to and wanting it.

Monitoring sits below the event subscriptions' delivery (``cloud.events``: app topics and the
durable webhook outbox), so a process hands that in as ``deliver`` (the platform does, for the
monitor and the time service: :func:`cloud.events.delivery.subscription_deliveries`). Without
it the notifier publishes on the app topics itself (tests of monitoring alone)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta
from typing import Protocol

from paho.mqtt.properties import Properties

from broker import topics
from broker.session import publish_properties
from cloud.monitoring.events import MONITORING_DOMAIN, NOTIFY_GROUPS, EventType, MonitoringEvent
from cloud.monitoring.store import MonitoringStore
from cloud.registry import DeviceNotFound, Registry

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """What the notifier needs from an MQTT session (:class:`broker.session.MqttSession` fits)."""

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False,
                properties: Properties | None = None) -> Awaitable[None]: ...


# The event types monitoring raises itself (the monitor; the time service's CLOCK_DRIFT): device
# events are handed out again by their concentrator's redelivery instead.
RAISED_BY_MONITORING: frozenset[EventType] = frozenset({
    EventType.CONCENTRATOR_ONLINE, EventType.CONCENTRATOR_OFFLINE, EventType.DEVICE_ONLINE, EventType.DEVICE_OFFLINE,
    EventType.COMMUNICATION_FAILURE, EventType.CLOCK_DRIFT})
# An event stored this recently may be being served right now; one older than the horizon is left.
SERVE_GRACE = timedelta(seconds=30)
UNNOTIFIED_HORIZON = timedelta(days=1)

# Serves an event's subscribers on the channels each chose; the organisations served.
Deliver = Callable[[MonitoringEvent], Awaitable[set[str]]]
# Makes a process's Deliver on its session and registry, for as long as the process runs.
Deliveries = Callable[[Publisher, Registry], AbstractAsyncContextManager[Deliver | None]]


@asynccontextmanager
async def app_topics_only(_publisher: Publisher, _registry: Registry) -> AsyncIterator[Deliver | None]:
    """No subscription delivery handed in: the notifier publishes on app topics itself."""
    yield None


class Notifier:
    """Stores each event and serves it: through ``deliver`` (app topics and webhooks, as each
    subscription says), or else on ``app/{org}/monitoring/{eventType}``."""

    def __init__(self, *, store: MonitoringStore, registry: Registry, publisher: Publisher,
                 deliver: Deliver | None = None) -> None:
        self.store = store
        self.registry = registry
        self.publisher = publisher
        self.deliver = deliver

    async def serve_unnotified(self, *, now: datetime) -> int:
        """Hand out the events monitoring raised that a process killed between storing and serving
        them left unserved (older than SERVE_GRACE, so not one being served right now; at most
        UNNOTIFIED_HORIZON old). Only with ``deliver``, which marks them served; the count."""
        if self.deliver is None:
            return 0
        served = 0
        while True:
            pending = await self.store.unnotified(RAISED_BY_MONITORING, since=now - UNNOTIFIED_HORIZON,
                                                  before=now - SERVE_GRACE)
            for event in pending:
                log.warning("event %s %s on %s of %s was stored but not handed out: handing it out now",
                            event.event_id, event.event_type, event.device_id, event.occurred_at.isoformat())
                await self.deliver(event)
                served += 1
            if len(pending) < 100:
                return served

    async def recipients(self, event: MonitoringEvent) -> set[str]:
        """Organisations subscribed to the event's type and holding MONITORING or OWNER on its device."""
        wanted = await self.store.subscribers(event.event_type)
        if not wanted:
            return set()
        try:
            grants = await self.registry.authorisations(event.device_id)
        except DeviceNotFound:
            log.warning("%s for unregistered device %s: logged, no organisation notified", event.event_type,
                        event.device_id)
            return set()
        entitled = {g.organisation for g in grants if g.function_group in NOTIFY_GROUPS}
        enabled = {org.identification for org in await self.registry.list_organisations() if org.enabled}
        return wanted & entitled & enabled

    async def raise_event(self, event: MonitoringEvent) -> set[str]:
        """Log ``event`` and publish it to its recipients; return the organisations notified."""
        await self.store.record_event(event)
        log.info("event %s %s on %s: %s", event.severity, event.event_type, event.device_id, event.detail)
        if self.deliver is not None:
            return await self.deliver(event)
        orgs = await self.recipients(event)
        payload = event.to_wire()
        for org in sorted(orgs):
            props = publish_properties(correlation_data=event.event_id.bytes, content_type="application/json",
                                       user_properties={"organisation": org, "severity": event.severity.value})
            await self.publisher.publish(topics.app_topic(org, MONITORING_DOMAIN, event.event_type.value), payload,
                                         qos=1, properties=props)
        return orgs
