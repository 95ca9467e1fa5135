"""The processing consumer: a member of the shared subscription ``$share/processing/...`` to every
concentrator's meter messages, beside ingest's own group (each group gets every message).

It holds no state of its own: a message is acknowledged once its register values and the
intervals they change are written, so one killed mid-message gets that message again (from its
durable session when restarted with the same client id, or from the others once it expires)
and handling it again writes the same points. Messages ingest refuses (not a MeterReading, a
meter other than the topic's, a sender the registry does not know) are dead-lettered by ingest;
processing logs and skips them, so it aggregates only what ingest stores. A concentrator's live
batch (``concentrator/+/batch/meterReading``) is read in the same group and processed meter by
meter; a reading in it that ingest refuses is skipped alone, as ingest refuses it alone.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import ValidationError

from broker import topics
from broker.schemas import MeterReading, parse_meter_message, parse_reading_batch
from broker.session import Message, MqttSession
from cloud.ingest.senders import KnownSenders
from cloud.processing.processor import Processor

log = logging.getLogger(__name__)

SHARE_GROUP = "processing"


class ProcessingConsumer:
    """Reads ``concentrator/+/smartMeterMessage/+/+`` and ``concentrator/+/batch/meterReading``;
    processes their readings."""

    def __init__(self, *, session: MqttSession, processor: Processor, name: str = "processing",
                 senders: KnownSenders | None = None) -> None:
        self._session = session
        self.processor = processor
        # None: readings are taken from any sender, as ingest then stores them.
        self._senders = senders
        self.name = name
        self.messages = 0
        self.skipped = 0
        self.ready = asyncio.Event()

    async def start(self) -> None:
        topic_filter = topics.shared(SHARE_GROUP, topics.ALL_METER_MESSAGES)
        batches = topics.shared(SHARE_GROUP, topics.ALL_READING_BATCHES)
        await self._session.subscribe(topic_filter, self.handle)
        await self._session.subscribe(batches, self.handle_batch)
        log.info("%s: subscribed to %s and %s", self.name, topic_filter, batches)
        self.ready.set()

    async def run(self, stop: asyncio.Event, *, drain_seconds: float = 30.0) -> None:
        await self.start()
        await stop.wait()
        await self._session.drain(timeout=drain_seconds)

    async def handle(self, message: Message) -> None:
        """Process the message's readings; a message that holds none is logged and skipped."""
        try:
            parsed = topics.parse(message.topic)
            if parsed.kind != "meter_message" or parsed.meter is None:
                raise ValueError(f"not a meter message topic: {message.topic}")
            if self._senders is not None and parsed.concentrator is not None:
                refused = await self._senders.check(parsed.concentrator, parsed.meter)
                if refused is not None:
                    raise ValueError(refused)
            readings = parse_meter_message(bytes(message.payload))
            for reading in readings:
                if reading.meter_id != parsed.meter:
                    raise ValueError(f"meterIndividualId {reading.meter_id!r} is not the topic's {parsed.meter!r}")
        except (ValidationError, ValueError) as exc:
            self.skipped += 1
            log.warning("%s: skipping a message on %s that ingest refuses too: %s (payload %r)", self.name,
                        message.topic, str(exc)[:300], bytes(message.payload[:120]))
            return
        # Store errors propagate: unavailable waits and is redelivered, anything else is
        # dead-lettered by the session after its attempts.
        await self.processor.process(parsed.meter, readings)
        self.messages += 1

    async def handle_batch(self, message: Message) -> None:
        """Process a live batch's readings meter by meter; skip (and log) each one ingest refuses."""
        concentrator = topics.parse(message.topic).concentrator
        try:
            items = parse_reading_batch(bytes(message.payload))
        except ValueError as exc:
            self.skipped += 1
            log.warning("%s: skipping a live batch on %s that ingest refuses too: %s", self.name, message.topic,
                        str(exc)[:300])
            return
        by_meter: dict[str, list[MeterReading]] = {}
        for _, reading in items:
            problem = str(reading) if isinstance(reading, ValueError) else None
            if problem is None and self._senders is not None and concentrator is not None:
                problem = await self._senders.check(concentrator, reading.meter_id)
            if problem is not None:
                self.skipped += 1
                log.warning("%s: skipping a reading of a live batch on %s that ingest refuses too: %s", self.name,
                            message.topic, problem[:300])
                continue
            by_meter.setdefault(reading.meter_id, []).append(reading)
        for meter, readings in by_meter.items():
            await self.processor.process(meter, readings)
        self.messages += 1
