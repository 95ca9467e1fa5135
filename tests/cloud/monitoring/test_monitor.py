"""Monitoring end to end on a real broker: a concentrator's will reaches the organisation's app,
stale deaths are ignored, and silent or failing devices go offline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest

from broker import topics
from broker.schemas import ConcentratorStatus
from broker.session import Message, MqttSession, Will
from cloud.monitoring import EventType, Notifier, StatusMonitor, make_event
from cloud.registry import DeviceCreate, DeviceType, FunctionGroup, Protocol
from cloud.registry.models import utcnow
from tests.cloud.monitoring.conftest import Db
from tests.fixtures.mosquitto import MosquittoServer


class Inbox:
    """An app's view: every event published to one organisation's monitoring topics."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, dict[str, object]]] = asyncio.Queue()

    async def __call__(self, message: Message) -> None:
        await self.queue.put((message.topic, json.loads(message.payload)))

    async def next(self) -> tuple[str, dict[str, object]]:
        return await asyncio.wait_for(self.queue.get(), 10)


@pytest.fixture
async def sessions() -> AsyncIterator[Callable[..., MqttSession]]:
    made: list[MqttSession] = []

    def make(broker: MosquittoServer, user: str, client_id: str, **kwargs: object) -> MqttSession:
        session = MqttSession(client_id=client_id, host=broker.host, port=broker.port, clean_start=True,
                              session_expiry=0, **broker.credentials(user), **kwargs)  # type: ignore[arg-type]
        made.append(session)
        return session

    yield make
    for session in made:
        await session.close()


def _status(state: str, session: int, *, reason: str) -> bytes:
    return ConcentratorStatus(concentratorId="conc-1", state=state, session=session, timestamp=datetime.now(UTC),
                              reason=reason).to_wire()


async def test_concentrator_will_reaches_the_app_and_stale_death_is_ignored(
        db: Db, mosquitto: MosquittoServer, sessions: Callable[..., MqttSession]) -> None:
    await db.registry.create_device(DeviceCreate(identification="conc-1", device_type=DeviceType.CONCENTRATOR,
                                                 protocol=Protocol.MQTT))
    await db.registry.grant("conc-1", "org-a", FunctionGroup.MONITORING)
    for org in ("org-a", "org-b"):  # org-b wants the events but holds nothing on conc-1
        for kind in (EventType.CONCENTRATOR_ONLINE, EventType.CONCENTRATOR_OFFLINE):
            assert await db.store.subscribe(org, kind)

    cloud = sessions(mosquitto, "gridwire-cloud", "monitor-1")
    await cloud.connect()
    notifier = Notifier(store=db.store, registry=db.registry, publisher=cloud)
    monitor = StatusMonitor(store=db.store, registry=db.registry, notifier=notifier, clock=utcnow)
    await monitor.start(cloud)
    inbox = Inbox()
    app = sessions(mosquitto, "app.org-a", "app-org-a")
    await app.connect()
    await app.subscribe("app/org-a/monitoring/#", inbox)

    # A concentrator-like session: numbered will set at connect, retained birth after it.
    conc = sessions(mosquitto, "conc-1", "concentrator-conc-1",
                    will=Will(topic=topics.concentrator_status("conc-1"),
                              payload=_status("OFFLINE", 2, reason="connection lost")))
    await conc.connect()
    await conc.publish(topics.concentrator_status("conc-1"), _status("ONLINE", 2, reason="birth"), retain=True)
    topic, event = await inbox.next()
    assert topic == "app/org-a/monitoring/CONCENTRATOR_ONLINE"
    assert event["deviceId"] == "conc-1" and event["severity"] == "INFO"

    # A late will from an older connection must not take the concentrator down.
    await conc.publish(topics.concentrator_status("conc-1"), _status("OFFLINE", 1, reason="old will"))
    # Kill the socket without DISCONNECT: the broker publishes the will.
    conc._drop_socket()  # noqa: SLF001 - simulating a crash, not a close
    topic, event = await inbox.next()
    assert topic == "app/org-a/monitoring/CONCENTRATOR_OFFLINE"
    assert event["severity"] == "MAJOR" and event["detail"]["session"] == 2
    assert event["detail"]["reason"] == "connection lost"

    held = await db.store.concentrator_state("conc-1")
    assert held is not None and held.state == "OFFLINE" and held.session == 2
    log = await db.store.events("conc-1")
    assert [e.event_type for e in log] == [EventType.CONCENTRATOR_ONLINE, EventType.CONCENTRATOR_OFFLINE]
    assert await notifier.recipients(log[-1]) == {"org-a"}
    assert inbox.queue.empty()


async def test_device_offline_by_failures_and_by_silence(
        db: Db, shared_mosquitto: MosquittoServer, sessions: Callable[..., MqttSession]) -> None:
    for meter in ("m-1", "m-2"):
        await db.registry.create_device(DeviceCreate(identification=meter, device_type=DeviceType.SMART_METER,
                                                     protocol=Protocol.DLMS, concentrator_id="conc-1"), owner="org-a")
    for kind in (EventType.DEVICE_ONLINE, EventType.DEVICE_OFFLINE, EventType.COMMUNICATION_FAILURE,
                 EventType.TAMPER):
        await db.store.subscribe("org-a", kind)
    cloud = sessions(shared_mosquitto, "gridwire-cloud", "monitor-2")
    await cloud.connect()
    inbox = Inbox()
    app = sessions(shared_mosquitto, "app.org-a", "app-org-a-2")
    await app.connect()
    await app.subscribe("app/org-a/monitoring/#", inbox)
    notifier = Notifier(store=db.store, registry=db.registry, publisher=cloud)
    monitor = StatusMonitor(store=db.store, registry=db.registry, notifier=notifier, clock=db.clock,
                            failures_offline=3)

    async def expect(kind: EventType, device: str) -> dict[str, object]:
        topic, event = await inbox.next()
        assert (topic, event["deviceId"]) == (f"app/org-a/monitoring/{kind}", device)
        return event

    assert [e.event_type for e in await monitor.record_communication("m-1", success=True)] == [EventType.DEVICE_ONLINE]
    await expect(EventType.DEVICE_ONLINE, "m-1")
    assert await monitor.record_communication("m-1", success=True) == []  # no change, no event

    # Three failures in a row: one COMMUNICATION_FAILURE at the first, DEVICE_OFFLINE at the third.
    kinds = []
    for _ in range(3):
        db.clock.advance(timedelta(minutes=1))
        kinds += [e.event_type for e in await monitor.record_communication("m-1", success=False, reason="timeout")]
    assert kinds == [EventType.COMMUNICATION_FAILURE, EventType.DEVICE_OFFLINE]
    await expect(EventType.COMMUNICATION_FAILURE, "m-1")
    offline = await expect(EventType.DEVICE_OFFLINE, "m-1")
    assert offline["detail"]["consecutiveFailures"] == 3

    # m-2 never answered; after an hour of silence (the SMART_METER threshold) the sweeper calls it.
    db.clock.advance(timedelta(minutes=30))
    assert await monitor.sweep() == []
    db.clock.advance(timedelta(minutes=31))
    swept = await monitor.sweep()
    assert [(e.event_type, e.device_id) for e in swept] == [(EventType.DEVICE_OFFLINE, "m-2")]
    await expect(EventType.DEVICE_OFFLINE, "m-2")
    assert await monitor.sweep() == []  # already offline: no repeat
    assert await monitor.record_communication("m-2", success=True)
    await expect(EventType.DEVICE_ONLINE, "m-2")

    # An alarm raised by another component (a meter's tamper register) takes the same path.
    orgs = await notifier.raise_event(make_event(EventType.TAMPER, "m-2", at=db.clock(), register="0.0.97.98.0.255"))
    assert orgs == {"org-a"}
    tamper = await expect(EventType.TAMPER, "m-2")
    assert tamper["severity"] == "CRITICAL"
