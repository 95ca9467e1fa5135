"""Device events from concentrators into the event log, confirmed back to the concentrator.

Subscribes ``concentrator/+/event/+`` in the shared group ``events``. Each message is one
:class:`~broker.schemas.DeviceEvent`, forwarded from a concentrator's durable outbox with its
sequence number (``gw-seq``). The consumer stores it (once: the event id is unique), hands it
to its subscribers if that was not done yet, and then confirms the sequence number on
``concentrator/{cid}/ack``, which lets the concentrator delete it. Killed anywhere before the
confirmation, the concentrator sends the event again, and the store keeps one copy; killed
between storing and notifying, the repeat does the notifying (``notified_at``).

A message that can never be an event (bad JSON, a device other than its topic's) is written to
the dead letters with the reason and confirmed, so it never blocks the concentrator's outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from pydantic import ValidationError

from broker import topics
from broker.schemas import SEQ_PROPERTY, DeadLetter, DeliveryAck, DeviceEvent
from broker.session import Message, MqttSession
from cloud.deadletters import DeadLetterStore
from cloud.events.notifier import EventNotifier
from cloud.events.store import EventStore, monitoring_event
from cloud.registry.models import utcnow

log = logging.getLogger(__name__)

SHARE_GROUP = "events"
CONSUMER = "events"


class DeviceEventConsumer:
    """Stores, notifies and confirms the device events concentrators forward."""

    def __init__(self, *, session: MqttSession, store: EventStore, notifier: EventNotifier,
                 dead_letters: DeadLetterStore | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        self._session = session
        self.store = store
        self.notifier = notifier
        self._dead_letters = dead_letters
        self._clock = clock
        self.stored = 0
        self.repeated = 0

    async def start(self, *, group: str = SHARE_GROUP) -> None:
        await self._session.subscribe(topics.shared(group, topics.ALL_DEVICE_EVENTS), self.handle)

    async def handle(self, message: Message) -> None:
        parsed = topics.parse(message.topic)
        cid = parsed.concentrator
        assert cid is not None and parsed.device is not None  # the subscription's filter
        try:
            event = DeviceEvent.model_validate_json(message.payload)
            if event.device_id != parsed.device:
                raise ValueError(f"event of device {event.device_id!r} on the topic of {parsed.device!r}")
        except (ValidationError, ValueError) as exc:
            await self._dead_letter(message, f"not a device event: {exc}"[:1000])
        else:
            record = monitoring_event(event, concentrator=cid)
            found = await self.store.record(record)
            if found.new:
                self.stored += 1
                log.info("event %s %s of %s at %s from %s", record.severity, record.event_type, record.device_id,
                         record.occurred_at.isoformat(), cid)
            else:
                self.repeated += 1
            if not found.notified:
                await self.notifier.notify(record)
                await self.store.mark_notified(record)
        await self._confirm(cid, message)

    async def _dead_letter(self, message: Message, reason: str) -> None:
        log.warning("dead letter from %s: %s; payload %r", message.topic, reason, bytes(message.payload[:200]))
        if self._dead_letters is not None:
            await self._dead_letters.add(DeadLetter.of(topic=message.topic, payload=bytes(message.payload),
                                                       reason=reason, received_at=self._clock(), consumer=CONSUMER))

    async def _confirm(self, cid: str, message: Message) -> None:
        seq = message.user_properties.get(SEQ_PROPERTY)
        if seq is None or not seq.isdigit():
            return  # not from a concentrator's outbox: nothing to confirm
        await self._session.publish(topics.concentrator_ack(cid), DeliveryAck.of([int(seq)]).to_wire(), qos=1)
