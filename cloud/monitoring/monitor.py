"""Device status monitoring: concentrator births and deaths, device communication results,
and a sweeper that calls a silent device offline.

Feed it from MQTT with :meth:`StatusMonitor.start` (a shared subscription on
``concentrator/+/status``, so several monitor processes split the load), and from the core with
:meth:`StatusMonitor.record_communication` for every command result. Run
:meth:`StatusMonitor.sweep` periodically (``run_sweeper``); the clock is injected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from pydantic import ValidationError

from broker import topics
from broker.schemas import ConcentratorStatus
from broker.session import Message, MqttSession
from cloud.monitoring.events import EventType, MonitoringEvent, make_event
from cloud.monitoring.notifier import Notifier
from cloud.monitoring.store import MonitoringStore
from cloud.registry import DeviceNotFound, DeviceType, LifecycleState, Registry
from cloud.registry.models import utcnow

log = logging.getLogger(__name__)

SHARE_GROUP = "monitoring"

# How long a device may stay silent before it counts as offline (a meter read every 15 min
# gets an hour; a street light polled daily gets two days).
DEFAULT_SILENCE: Mapping[DeviceType, timedelta] = {
    DeviceType.SMART_METER: timedelta(hours=1),
    DeviceType.STREET_LIGHT: timedelta(hours=48),
    DeviceType.LOAD_CONTROL: timedelta(hours=1),
    DeviceType.INVERTER: timedelta(minutes=30),
    DeviceType.GATEWAY: timedelta(minutes=30),
    DeviceType.OTHER: timedelta(hours=24),
}


class StatusMonitor:
    """Keeps concentrator and device on/offline state and raises events on every change."""

    def __init__(self, *, store: MonitoringStore, registry: Registry, notifier: Notifier,
                 clock: Callable[[], datetime] = utcnow, silence: Mapping[DeviceType, timedelta] = DEFAULT_SILENCE,
                 failures_offline: int = 3) -> None:
        self.store = store
        self.registry = registry
        self.notifier = notifier
        self.clock = clock
        self.silence = dict(silence)
        # Consecutive failed communications after which a device counts as offline.
        self.failures_offline = failures_offline

    async def start(self, session: MqttSession, *, group: str = SHARE_GROUP) -> None:
        """Subscribe to every concentrator's status (retained births arrive at once)."""
        await session.subscribe(topics.shared(group, topics.ALL_CONCENTRATOR_STATUS), self.handle_status)

    # --- concentrators ------------------------------------------------------------------------

    async def handle_status(self, message: Message) -> None:
        """One birth or death from ``concentrator/{cid}/status``; bad input is logged and dropped."""
        if not message.payload:
            return  # a cleared retained message
        try:
            cid = topics.parse(message.topic).concentrator
            status = ConcentratorStatus.model_validate_json(message.payload)
        except (topics.TopicError, ValidationError) as exc:
            log.warning("bad status on %s: %s; payload %r", message.topic, exc, message.payload[:200])
            return
        if status.concentrator_id != cid:
            log.warning("status on %s claims to be from %s; dropped", message.topic, status.concentrator_id)
            return
        now = self.clock()
        change = await self.store.apply_status(status, received_at=now)
        if status.state == "ONLINE":
            await self._meter_health(status)
        if change is None:
            return
        kind = EventType.CONCENTRATOR_ONLINE if change.state == "ONLINE" else EventType.CONCENTRATOR_OFFLINE
        await self.notifier.raise_event(make_event(kind, cid, at=now, session=status.session,
                                                   reason=status.reason, statusTime=status.timestamp.isoformat()))

    async def _meter_health(self, status: ConcentratorStatus) -> None:
        # The concentrator reports each meter's last successful read: that is a communication
        # result, so devices behind it stay online without the core polling them.
        for health in status.meters:
            try:
                device = await self.registry.get_device(health.meter_id)
            except DeviceNotFound:
                continue
            if health.last_success is not None and (device.last_seen is None or health.last_success > device.last_seen):
                await self.record_communication(health.meter_id, success=True, at=health.last_success)
            elif not health.healthy and health.consecutive_failures > device.consecutive_failures:
                await self.record_communication(health.meter_id, success=False, at=status.timestamp,
                                                reason=health.last_error)

    # --- devices ------------------------------------------------------------------------------

    async def record_communication(self, device_id: str, *, success: bool, at: datetime | None = None,
                                   reason: str | None = None) -> list[MonitoringEvent]:
        """Count a communication result in the registry and raise the events it implies."""
        when = at or self.clock()
        await self.registry.record_communication(device_id, success=success, at=when, reason=reason)
        events: list[MonitoringEvent] = []
        if success:
            if await self.store.set_connectivity(device_id, online=True, at=when, reason=None):
                events.append(make_event(EventType.DEVICE_ONLINE, device_id, at=when))
        else:
            device = await self.registry.get_device(device_id)
            if device.consecutive_failures == 1:
                events.append(make_event(EventType.COMMUNICATION_FAILURE, device_id, at=when, reason=reason))
            if device.consecutive_failures >= self.failures_offline and await self.store.set_connectivity(
                    device_id, online=False, at=when, reason=reason):
                events.append(make_event(EventType.DEVICE_OFFLINE, device_id, at=when, reason=reason,
                                         consecutiveFailures=device.consecutive_failures))
        for event in events:
            await self.notifier.raise_event(event)
        return events

    async def sweep(self, *, page: int = 1000) -> list[MonitoringEvent]:
        """Call every device silent for longer than its type's threshold offline; return the events."""
        now = self.clock()
        events: list[MonitoringEvent] = []
        offset = 0
        while True:
            devices = await self.registry.list_devices(limit=page, offset=offset)
            for device in devices:
                limit = self.silence.get(device.device_type)
                if limit is None or device.state is LifecycleState.DECOMMISSIONED:
                    continue  # concentrators report their own liveness
                heard = device.last_seen or device.created_at
                if now - heard <= limit:
                    continue
                reason = f"silent since {heard.isoformat()} (limit {limit})"
                if await self.store.set_connectivity(device.identification, online=False, at=now, reason=reason):
                    event = make_event(EventType.DEVICE_OFFLINE, device.identification, at=now, reason=reason,
                                       lastSeen=device.last_seen.isoformat() if device.last_seen else None)
                    await self.notifier.raise_event(event)
                    events.append(event)
            if len(devices) < page:
                return events
            offset += page

    async def run_sweeper(self, stop: asyncio.Event, *, interval: float = 60.0) -> None:
        """Sweep every ``interval`` seconds until ``stop`` is set, and hand out the events a killed
        monitor or time service stored but did not serve."""
        while not stop.is_set():
            await self.sweep()
            await self.notifier.serve_unnotified(now=self.clock())
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass
