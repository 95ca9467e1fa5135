"""The ingest consumer: a member of the shared subscription to every concentrator's meter
messages. Validates, batches into the store, acknowledges only after the write.

Any number of these run side by side (``$share/ingest/...``); they hold no state of their
own, so one killed mid-batch loses nothing: its unacknowledged messages go to the others
or to it again when it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import ValidationError

from broker import topics
from broker.schemas import SEQ_PROPERTY, DeadLetter, DeliveryAck, MeterReading, parse_meter_message
from broker.session import Message, MqttSession
from cloud.deadletters import DeadLetterStore
from cloud.ingest.batcher import WriteBatcher
from cloud.store.errors import StoreRejected
from cloud.store.line_protocol import check_reading

log = logging.getLogger(__name__)

SHARE_GROUP = "ingest"

# Extra checks a deployment adds (the catalogue: known property, allowed unit); reason or None.
ReadingCheck = Callable[[MeterReading], str | None]


class IngestConsumer:
    """Reads ``concentrator/+/smartMeterMessage/+/+`` and stores what it reads."""

    def __init__(self, *, session: MqttSession, batcher: WriteBatcher, dead_letters: DeadLetterStore,
                 name: str = "ingest", checks: tuple[ReadingCheck, ...] = ()) -> None:
        self._session = session
        self._batcher = batcher
        if batcher is not None:
            batcher.set_confirm(self.confirm)
        self._dead_letters = dead_letters
        self.name = name
        self._checks = (check_reading, *checks)
        self.stored_messages = 0
        self.dead_lettered = 0
        self.ready = asyncio.Event()

    async def start(self) -> None:
        await self._session.subscribe(topics.shared(SHARE_GROUP, topics.ALL_METER_MESSAGES), self.handle)
        self.ready.set()

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            flusher = tg.create_task(self._batcher.run(), name=f"{self.name}-batcher")
            await self.start()
            await stop.wait()
            flusher.cancel()

    async def handle(self, message: Message) -> None:
        """Store the message's readings, or dead-letter it with the reason; then it is acked."""
        try:
            concentrator, readings = self._validate(message)
        except ValueError as exc:
            await self._reject(message, _reason(exc))
            return
        try:
            await self._batcher.submit(readings, concentrator_id=concentrator, seq=_seq(message))
        except StoreRejected as exc:
            await self._reject(message, f"store rejected the readings: {exc}")
            return
        self.stored_messages += 1

    async def confirm(self, seqs_by_concentrator: dict[str, list[int]]) -> None:
        """Tell each concentrator which of its messages are stored (or dead-lettered)."""
        await asyncio.gather(*(
            self._session.publish(topics.concentrator_ack(cid), DeliveryAck.of(seqs).to_wire(), qos=1)
            for cid, seqs in seqs_by_concentrator.items()
        ))

    def _validate(self, message: Message) -> tuple[str, list[MeterReading]]:
        parsed = topics.parse(message.topic)
        if parsed.kind != "meter_message":
            raise ValueError(f"not a meter message topic: {message.topic}")
        readings = parse_meter_message(message.payload)
        for reading in readings:
            if reading.meter_id != parsed.meter:
                raise ValueError(f"meterIndividualId {reading.meter_id!r} does not match the topic's meter "
                                 f"{parsed.meter!r}")
            for check in self._checks:
                problem = check(reading)
                if problem:
                    raise ValueError(f"reading {reading.meter_reading_identifier}: {problem}")
        assert parsed.concentrator is not None
        return parsed.concentrator, readings

    async def _reject(self, message: Message, reason: str) -> None:
        log.warning("%s: dead-lettering message on %s: %s (payload %r)", self.name, message.topic, reason,
                    message.payload[:120])
        await self._dead_letters.add(DeadLetter.of(topic=message.topic, payload=message.payload, reason=reason,
                                                   received_at=datetime.now(UTC), consumer=self.name))
        self.dead_lettered += 1
        # Kept, so the concentrator may forget it: sending it again would only fail again.
        seq, parsed = _seq(message), _concentrator_of(message.topic)
        if seq is not None and parsed is not None:
            await self.confirm({parsed: [seq]})


def _seq(message: Message) -> int | None:
    raw = message.user_properties.get(SEQ_PROPERTY)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _concentrator_of(topic: str) -> str | None:
    try:
        return topics.parse(topic).concentrator
    except topics.TopicError:
        return None


def _reason(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        parts = []
        for error in exc.errors()[:5]:
            where = ".".join(str(p) for p in error["loc"]) or "payload"
            parts.append(f"{where}: {error['msg']}")
        more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        return "invalid MeterReading: " + "; ".join(parts) + more
    return str(exc)
