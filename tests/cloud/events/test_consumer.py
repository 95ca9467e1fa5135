"""The device event consumer on a real broker and a migrated registry: an event stored once and
notified once, also when the consumer died between storing and notifying; bad input dead-lettered;
every message confirmed to its concentrator."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from broker import topics
from broker.schemas import SEQ_PROPERTY, DeliveryAck, DeviceEvent, DeviceEventType, EventSource
from broker.session import Message
from cloud.deadletters import DeadLetterStore
from cloud.events import DeviceEventConsumer, EventNotifier, EventStore, monitoring_event
from cloud.migrations import migrate
from cloud.monitoring.events import EventType
from cloud.registry import DeviceCreate, DeviceType, FunctionGroup, OrganisationCreate, Protocol, Registry
from tests.cloud.core.harness import Inbox, session_for
from tests.fixtures.mosquitto import CLOUD, MosquittoServer

AT = datetime(2026, 3, 2, 8, 0, 5, tzinfo=UTC)


def message(event: DeviceEvent | bytes, seq: int, *, device: str = "m-1") -> Message:
    payload = event if isinstance(event, bytes) else event.to_wire()
    return Message(topic=topics.concentrator_event("conc-1", device), payload=payload, qos=1, retain=False,
                   user_properties={SEQ_PROPERTY: str(seq)})


async def test_stored_once_notified_once_and_confirmed_every_time(tmp_path: Path,
                                                                  shared_mosquitto: MosquittoServer) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    await migrate(url)
    async with Registry(url=url) as registry:
        for org in ("org-a", "org-b", "org-c"):
            await registry.add_organisation(OrganisationCreate(identification=org, name=org))
        await registry.create_device(DeviceCreate(identification="m-1", device_type=DeviceType.SMART_METER,
                                                  protocol=Protocol.DLMS), owner="org-a")
        await registry.grant("m-1", "org-b", FunctionGroup.MONITORING)
        await registry.grant("m-1", "org-c", FunctionGroup.AD_HOC)  # no RECEIVE_EVENTS
        store = EventStore(registry.engine)
        for org in ("org-a", "org-b", "org-c"):
            await store.subscribe(org, EventType.TAMPER, mqtt=True, webhook=False)
        dead = DeadLetterStore(engine=registry.engine)
        await dead.create_schema()
        cloud, watcher = session_for(shared_mosquitto, CLOUD.username), session_for(shared_mosquitto, CLOUD.username)
        inbox = Inbox()
        async with cloud, watcher:
            await watcher.subscribe("app/+/monitoring/TAMPER", inbox.handler)
            await watcher.subscribe(topics.concentrator_ack("conc-1"), inbox.handler)
            consumer = DeviceEventConsumer(session=cloud, store=store, dead_letters=dead,
                                           notifier=EventNotifier(store=store, registry=registry, publisher=cloud,
                                                                  webhooks=None))
            tamper = DeviceEvent.make("m-1", DeviceEventType.TAMPER, AT, source=EventSource.DLMS_PUSH, key="44",
                                      code=44)
            # A consumer died after storing it, before notifying: the store holds it, un-notified.
            assert (await store.record(monitoring_event(tamper, concentrator="conc-1"))).new
            await consumer.handle(message(tamper, 7))  # the concentrator sends it again
            await consumer.handle(message(tamper, 8))  # and once more (a redelivery)
            await consumer.handle(message(b"{not json", 9))
            other = DeviceEvent.make("m-2", DeviceEventType.TAMPER, AT, source=EventSource.DLMS_PUSH)
            await consumer.handle(message(other, 10))  # its payload names another device than its topic
            acks = await inbox.wait_for(lambda m: m.topic.endswith("/ack") and
                                        DeliveryAck.model_validate_json(m.payload).expand() == [10])
            assert acks
            events, total = await store.history(organisation=None, device_id="m-1")
        letters = await dead.list()
    notified = [t for t in inbox.messages if "/monitoring/" in t]
    assert sorted(notified) == ["app/org-a/monitoring/TAMPER", "app/org-b/monitoring/TAMPER"]
    assert all(len(inbox.messages[t]) == 1 for t in notified)  # once each, though handled twice
    confirmed = sorted(s for m in inbox.messages[topics.concentrator_ack("conc-1")]
                       for s in DeliveryAck.model_validate_json(m.payload).expand())
    assert confirmed == [7, 8, 9, 10]  # dead letters are confirmed too: they must not block the outbox
    assert total == 1 and events[0].event_id == tamper.event_id and consumer.repeated == 2
    assert len(letters) == 2 and {letter.consumer for letter in letters} == {"events"}
