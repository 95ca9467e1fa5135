"""The ingest consumer: a member of the shared subscription to every concentrator's meter
messages. Validates, batches into the store, acknowledges only after the write.

Any number of these run side by side (``$share/ingest/...``); they hold no state of their
own, so one killed mid-batch loses nothing. What it had received but not acknowledged stays
in its durable session on the broker (mosquitto 2.0 does not hand it to the others), and
the broker goes on queueing its share of new messages there while it is away. So:

- restarted with the same client id (``GRIDWIRE_MQTT_CLIENT_ID``) within the session
  expiry, it resumes the session and stores all of that;
- gone for good, its session expires after ``GRIDWIRE_INGEST_SESSION_EXPIRY`` seconds and
  the broker drops it; the concentrators' outboxes, which never got a DeliveryAck for those
  messages, send them again (after their confirm timeout) and the others store them.

It also reads concentrators' live batches (``concentrator/+/batch/meterReading``, a
concentrator's ``live_batch`` option): each reading of a batch is stored and confirmed under
its own sequence number, or refused on its own (a dead letter, and a reason code in the
DeliveryAck), and the batch is acknowledged once every reading is one or the other.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pydantic_core
from pydantic import ValidationError

from broker import topics
from broker.schemas import (SEQ_PROPERTY, DeadLetter, DeliveryAck, MeterReading, parse_meter_message,
                            parse_reading_batch, parse_seq_list)
from broker.schemas.delivery import NOT_AUTHORISED, PAYLOAD_FORMAT_INVALID, Refusal
from broker.session import Message, MqttSession, Settle
from cloud.deadletters import DeadLetterStore
from cloud.ingest.batcher import WriteBatcher
from cloud.ingest.metrics import IngestMetrics
from cloud.ingest.fast_encode import ValueCheck, encode_batch, encode_payload
from cloud.ingest.senders import KnownSenders
from cloud.store.errors import StoreRejected
from cloud.store.line_protocol import check_reading, encode_reading

log = logging.getLogger(__name__)

SHARE_GROUP = "ingest"

# Extra checks a deployment adds (the catalogue: known property, allowed unit); reason or None.
# A check that depends only on each value's (property id, unit, is text, meter class) may
# carry that rule as a ``value_check`` attribute (a ValueCheck): the fast path then applies it
# (memoised) instead of giving up the fast path for every message.
ReadingCheck = Callable[[MeterReading], str | None]
# Another payload format a concentrator may be set to send (cloud/ingest/omdp_reference.py), tried
# only on a message the validator refused: its readings, None (not that format), or ValueError.
Translate = Callable[[Message], Awaitable[list[MeterReading] | None]]
_MEMO_LIMIT = 4096


class IngestConsumer:
    """Reads ``concentrator/+/smartMeterMessage/+/+`` and ``concentrator/+/batch/meterReading``;
    stores what it reads."""

    def __init__(self, *, session: MqttSession, batcher: WriteBatcher, dead_letters: DeadLetterStore,
                 name: str = "ingest", checks: tuple[ReadingCheck, ...] = (),
                 metrics: IngestMetrics | None = None, translate: Translate | None = None,
                 senders: KnownSenders | None = None) -> None:
        self._session = session
        self._translate = translate
        self._batcher = batcher
        if batcher is not None:
            batcher.set_confirm(self.confirm)
        self._dead_letters = dead_letters
        self._metrics = metrics
        # None: readings are taken from any sender (GRIDWIRE_INGEST_UNKNOWN_SENDERS=accept).
        self._senders = senders
        self._topics: dict[str, topics.ParsedTopic] = {}  # topics repeat: parsed once (bounded)
        self.name = name
        self._checks = (check_reading, *checks)
        # The fast path knows the store's own checks, and a deployment's checks that say how
        # to judge one value; any other check needs the models, so every message goes the full way.
        rules = [getattr(check, "value_check", None) for check in checks]
        self._fast = all(rule is not None for rule in rules)
        self._value_check = _memoised(rules) if rules and self._fast else None
        # Messages stored: a live batch counts one per reading (per concentrator outbox message).
        self.stored_messages = 0
        self.batches = 0  # live batches handled
        self.dead_lettered = 0
        self.ready = asyncio.Event()
        self._rejecting: set[asyncio.Task[None]] = set()  # dead-lettering what the store refused

    async def start(self) -> None:
        topic_filter = topics.shared(SHARE_GROUP, topics.ALL_METER_MESSAGES)
        batches = topics.shared(SHARE_GROUP, topics.ALL_READING_BATCHES)
        await self._session.subscribe(batches, self.handle_batch)
        await self._session.subscribe(topic_filter, self.handle, now=self.take)
        log.info("%s: subscribed to %s and %s", self.name, topic_filter, batches)
        self.ready.set()

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            flusher = tg.create_task(self._batcher.run(), name=f"{self.name}-batcher")
            if self._senders is not None:
                tg.create_task(self._senders.run(stop), name=f"{self.name}-senders")
            await self.start()
            await stop.wait()
            # Graceful stop: messages being handled get written, confirmed and acknowledged
            # (with the batcher still running); anything later is redelivered after a restart.
            await self._session.drain(timeout=self._batcher.max_delay + 10.0)
            flusher.cancel()

    async def handle(self, message: Message) -> None:
        """Store the message's readings, or dead-letter it with the reason; then it is acked."""
        refused = None
        try:
            parsed = self._parse(message.topic)
            if self._senders is not None and parsed.kind == "meter_message":
                assert parsed.concentrator is not None and parsed.meter is not None
                # A dict lookup when the sender is known; the registry is asked only on a miss.
                refused = await self._senders.check(parsed.concentrator, parsed.meter)
            if refused is None:
                concentrator, lines = self._encode(message, parsed)
        except ValueError as exc:
            try:
                concentrator, lines = await self._translated(message, exc)
            except ValueError as why:
                await self._reject(message, _reason(why))
                return
        if refused is not None:
            await self._reject(message, refused)
            return
        try:
            await self._batcher.submit(lines, concentrator_id=concentrator, seq=_seq(message))
        except StoreRejected as exc:
            await self._reject(message, f"store rejected the readings: {exc}")
            return
        self.stored_messages += 1

    def take(self, message: Message, settle: Settle) -> bool:
        """:meth:`handle` without a task, for a message the fast path stores as it is (the live
        shape: one reading per message): encoded now, added to the batch, and ``settle`` told
        after the write and the confirmation. False for anything else (a sender the registry must
        be asked about, an unusual or invalid payload): :meth:`handle` decides."""
        if not self._fast:
            return False
        try:
            parsed = self._parse(message.topic)
        except ValueError:
            return False
        if parsed.kind != "meter_message":
            return False
        concentrator, meter = parsed.concentrator, parsed.meter
        assert concentrator is not None and meter is not None
        if self._senders is not None and self._senders.problem(concentrator, meter) is not None:
            return False
        lines = encode_payload(message.payload, meter=meter, concentrator_id=concentrator,
                               value_check=self._value_check)
        if lines is None:
            return False
        self._batcher.add(lines, concentrator_id=concentrator, seq=_seq(message),
                          done=functools.partial(self._taken_stored, message, settle))
        return True

    def _taken_stored(self, message: Message, settle: Settle, failure: Exception | None) -> None:
        if failure is None:
            self.stored_messages += 1
            settle(None)
        elif isinstance(failure, StoreRejected):
            task = asyncio.get_running_loop().create_task(
                self._reject_taken(message, settle, failure), name=f"{self.name}-reject")
            self._rejecting.add(task)
            task.add_done_callback(self._rejecting.discard)
        else:
            settle(failure)

    async def _reject_taken(self, message: Message, settle: Settle, rejected: StoreRejected) -> None:
        try:
            await self._reject(message, f"store rejected the readings: {rejected}")
        except Exception as exc:  # noqa: BLE001 - settled as failed: the session redelivers it
            settle(exc)
        else:
            settle(None)

    async def confirm(self, seqs_by_concentrator: dict[str, list[int]]) -> None:
        """Tell each concentrator which of its messages are stored (or dead-lettered)."""
        await asyncio.gather(*(
            self._session.publish(topics.concentrator_ack(cid), DeliveryAck.of(seqs).to_wire(), qos=1)
            for cid, seqs in seqs_by_concentrator.items()
        ))

    async def handle_batch(self, message: Message) -> None:
        """Store a live batch's readings, each confirmed under its own sequence number; refuse
        those that cannot be stored, each with a reason code and a dead letter; then it is acked."""
        concentrator = self._parse(message.topic).concentrator  # the subscription's filter
        assert concentrator is not None
        self.batches += 1
        raw = message.user_properties.get(SEQ_PROPERTY)
        try:
            seqs = parse_seq_list(raw) if raw is not None else None
        except ValueError as exc:
            await self._refuse_batch(message, concentrator, None, PAYLOAD_FORMAT_INVALID, str(exc))
            return
        good = self._batch_fast(message, concentrator, seqs)
        refused: list[tuple[Refusal, bytes]] = []
        if good is None:
            try:
                good, refused = await self._batch_slow(message, concentrator, seqs)
            except ValueError as exc:
                await self._refuse_batch(message, concentrator, seqs, PAYLOAD_FORMAT_INVALID, _reason(exc))
                return
        failures = await self._store_batch(concentrator, good) if good else []
        for seq, failure in failures:
            if not isinstance(failure, StoreRejected):
                raise failure  # not stored or not confirmed: the broker sends the batch again
            refused.append((Refusal(seq=seq or 0, reason_code=PAYLOAD_FORMAT_INVALID,
                                    reason=f"store rejected the reading: {failure}"[:1000]), bytes(message.payload)))
        self.stored_messages += len(good) - len(failures)  # a reading each (one, without gw-seq)
        for refusal, payload in refused:
            await self._dead_letter(message.topic, payload, f"{refusal.reason} (gw-seq {refusal.seq})")
        if refused and seqs is not None:
            await self._session.publish(topics.concentrator_ack(concentrator),
                                        DeliveryAck.of((), refused=[r for r, _ in refused]).to_wire(), qos=1)

    def _batch_fast(self, message: Message, concentrator: str,
                    seqs: list[int] | None) -> list[tuple[list[str], int | None]] | None:
        """The batch's (lines, seq) to store when the fast path takes every reading; else None."""
        if not self._fast:
            return None
        encoded = encode_batch(message.payload, value_check=self._value_check)
        if encoded is None or (seqs is not None and len(seqs) != len(encoded)):
            return None
        if self._senders is not None:
            problem = self._senders.problem
            if any(problem(concentrator, meter) is not None for meter in {meter for meter, _ in encoded}):
                return None
        if seqs is None:
            return [([line for _, line in encoded], None)]
        return [([line], seq) for (_, line), seq in zip(encoded, seqs, strict=True)]

    async def _batch_slow(self, message: Message, concentrator: str, seqs: list[int] | None
                          ) -> tuple[list[tuple[list[str], int | None]], list[tuple[Refusal, bytes]]]:
        """Each reading validated on its own: (lines, seq) of those to store, and a Refusal (with
        the reading's JSON) for each of the others; ValueError if the batch itself is malformed."""
        items = parse_reading_batch(bytes(message.payload))
        if seqs is not None and len(seqs) != len(items):
            raise ValueError(f"gw-seq names {len(seqs)} messages, the batch holds {len(items)} readings")
        good: list[tuple[list[str], int | None]] = []
        refused: list[tuple[Refusal, bytes]] = []
        for n, (item, reading) in enumerate(items):
            seq = seqs[n] if seqs is not None else None
            code = PAYLOAD_FORMAT_INVALID
            try:
                if isinstance(reading, ValueError):
                    raise reading
                for check in self._checks:
                    if problem := check(reading):
                        raise ValueError(f"reading {reading.meter_reading_identifier}: {problem}")
                if self._senders is not None:
                    problem = await self._senders.check(concentrator, reading.meter_id)
                    if problem is not None:
                        code = NOT_AUTHORISED
                        raise ValueError(problem)
            except ValueError as exc:
                refused.append((Refusal(seq=seq if seq is not None else n, reason_code=code,
                                        reason=_reason(exc)[:1000]), pydantic_core.to_json(item)))
                continue
            good.append(([encode_reading(reading, concentrator_id=concentrator)], seq))
        return good, refused

    async def _store_batch(self, concentrator: str, good: list[tuple[list[str], int | None]]
                           ) -> list[tuple[int | None, Exception]]:
        """Add every (lines, seq) to the batcher; return once each is stored and confirmed, with
        the (seq, failure) of those that were not."""
        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failures: list[tuple[int | None, Exception]] = []
        waiting = len(good)

        def done(seq: int | None, failure: Exception | None) -> None:
            nonlocal waiting
            if failure is not None:
                failures.append((seq, failure))
            waiting -= 1
            if waiting == 0 and not finished.done():
                finished.set_result(None)

        for lines, seq in good:
            self._batcher.add(lines, concentrator_id=concentrator, seq=seq, done=functools.partial(done, seq))
        await finished
        return failures

    async def _refuse_batch(self, message: Message, concentrator: str, seqs: list[int] | None, code: int,
                            reason: str) -> None:
        """A batch that cannot be read at all: one dead letter, and every reading refused with ``code``."""
        await self._dead_letter(message.topic, bytes(message.payload), reason)
        if seqs:
            refusals = [Refusal(seq=seq, reason_code=code, reason=reason[:1000]) for seq in seqs]
            await self._session.publish(topics.concentrator_ack(concentrator),
                                        DeliveryAck.of((), refused=refusals).to_wire(), qos=1)

    async def _dead_letter(self, topic: str, payload: bytes, reason: str) -> None:
        log.warning("%s: dead-lettering on %s: %s (payload %r)", self.name, topic, reason, payload[:120])
        await self._dead_letters.add(DeadLetter.of(topic=topic, payload=payload, reason=reason,
                                                   received_at=datetime.now(UTC), consumer=self.name))
        self.dead_lettered += 1
        if self._metrics is not None:
            self._metrics.dead_lettered(reason)

    def _parse(self, topic: str) -> topics.ParsedTopic:
        parsed = self._topics.get(topic)
        if parsed is None:
            parsed = topics.parse(topic)  # TopicError (a ValueError) for a topic outside the tree
            if len(self._topics) >= _MEMO_LIMIT:
                self._topics.clear()
            self._topics[topic] = parsed
        return parsed

    def _encode(self, message: Message, parsed: topics.ParsedTopic | None = None) -> tuple[str, list[str]]:
        """The message's concentrator and its readings as line protocol; ValueError if invalid."""
        parsed = parsed or self._parse(message.topic)
        if self._fast and parsed.kind == "meter_message":
            assert parsed.concentrator is not None and parsed.meter is not None
            lines = encode_payload(message.payload, meter=parsed.meter, concentrator_id=parsed.concentrator,
                                   value_check=self._value_check)
            if lines is not None:
                return parsed.concentrator, lines
        # Unusual or invalid: the full validator accepts it or says exactly what is wrong.
        concentrator, readings = self._validate(message, parsed)
        return concentrator, [encode_reading(r, concentrator_id=concentrator) for r in readings]

    async def _translated(self, message: Message, refused: ValueError) -> tuple[str, list[str]]:
        """The message in another format its concentrator is set to send, checked like any; else ``refused``."""
        readings = await self._translate(message) if self._translate is not None else None
        if readings is None:
            raise refused
        concentrator = topics.parse(message.topic).concentrator
        assert concentrator is not None
        for reading in readings:
            for check in self._checks:
                if problem := check(reading):
                    raise ValueError(f"reading {reading.meter_reading_identifier}: {problem}")
        return concentrator, [encode_reading(r, concentrator_id=concentrator) for r in readings]

    def _validate(self, message: Message, parsed: topics.ParsedTopic | None = None) -> tuple[str, list[MeterReading]]:
        parsed = parsed or self._parse(message.topic)
        if parsed.kind != "meter_message":
            raise ValueError(f"not a meter message topic: {message.topic}")
        readings = parse_meter_message(bytes(message.payload))
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
        payload = bytes(message.payload)
        log.warning("%s: dead-lettering message on %s: %s (payload %r)", self.name, message.topic, reason,
                    payload[:120])
        await self._dead_letters.add(DeadLetter.of(topic=message.topic, payload=payload, reason=reason,
                                                   received_at=datetime.now(UTC), consumer=self.name))
        self.dead_lettered += 1
        if self._metrics is not None:
            self._metrics.dead_lettered(reason)
        # Kept, so the concentrator may forget it: sending it again would only fail again.
        seq, parsed = _seq(message), _concentrator_of(message.topic)
        if seq is not None and parsed is not None:
            await self.confirm({parsed: [seq]})


def _memoised(rules: list[ValueCheck | None]) -> ValueCheck:
    """All ``rules`` as one ValueCheck, each distinct value shape judged once (bounded)."""
    memo: dict[tuple[str, str | None, bool, str | None], bool] = {}

    def check(pid: str, unit: str | None, is_text: bool, meter_class: str | None) -> bool:
        key = (pid, unit, is_text, meter_class)
        verdict = memo.get(key)
        if verdict is None:
            verdict = all(rule(*key) for rule in rules if rule is not None)
            if len(memo) >= _MEMO_LIMIT:
                memo.clear()
            memo[key] = verdict
        return verdict

    return check


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
