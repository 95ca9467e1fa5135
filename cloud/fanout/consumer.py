"""The fan-out consumer: stored readings republished to every organisation that may read them.

It reads the same meter messages as ingest, in a shared subscription of its own (``$share/fanout/
concentrator/+/smartMeterMessage/+/+``), so ingest neither knows nor waits for it: the broker
hands each message to both groups, and nothing an app or the fan-out does holds ingest back.
A reading is republished only *after* it is stored: the consumer holds each message until
ingest's confirmation of its sequence number (``concentrator/{cid}/ack``, the one ingest sends
the concentrator once the batch is written) and applies ingest's own checks, so a reading ingest
dead-lettered is not sent either. A message whose confirmation it did not see (it came before
this process subscribed, or the message carries no sequence number) is looked up in InfluxDB by
its reading id instead; one found nowhere within ``confirm_timeout`` is not republished (an app
that needs it reads it from the API once stored).

A concentrator's live batch (``concentrator/{cid}/batch/meterReading``, read in the same group) is
taken apart: each of its readings waits for ingest's confirmation of its own sequence number and
is republished as a live reading on its own meter's app topic, so apps see no difference.

Each reading goes, one MQTT message per reading (QoS 1), to ``app/{org}/metering/reading/{meter}``
for every organisation :class:`~cloud.fanout.access.ReadingAccess` says may read the meter. The
payload is the OMDP MeterReading; a reading recovered from the meter's load profile has
``"historical": true`` (and the user property ``historical``). Per organisation, an operator
may set a retained last value and a property filter (:class:`Delivery`). The consumer's own
message is acknowledged after every publish was acknowledged by the broker: killed before, the
broker gives the message again and an app may receive a reading twice (QoS 1: at least once;
the reading id tells repeats apart).
"""

from __future__ import annotations

import asyncio
import calendar
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC

from pydantic import ValidationError

from broker import topics
from broker.schemas import (SEQ_PROPERTY, DeliveryAck, MeterReading, parse_meter_message, parse_reading_batch,
                            parse_seq_list)
from broker.session import Message, MqttSession, publish_properties
from cloud.fanout.access import ReadingAccess
from cloud.fanout.confirmations import Confirmations
from cloud.ingest.fast_encode import ValueCheck, encode_payload
from cloud.ingest.reading_time import UnusualTime, to_ns
from cloud.ingest.wire_structs import decode
from cloud.ingest.senders import KnownSenders
from cloud.store.errors import StoreUnavailable
from cloud.store.line_protocol import check_reading

log = logging.getLogger(__name__)

SHARE_GROUP = "fanout"
# Ingest's confirmations are read at QoS 0: at QoS 1 they would count against the receive
# maximum the held readings fill, and readings waiting for confirmations queued behind them would
# wait for ever. One lost with a connection is made up for by looking the reading up in the store.
CONFIRMATIONS_QOS = 0
_MEMO_LIMIT = 4096
# Store look-ups at once (the fallback when a confirmation went by unseen).
_LOOKUPS = 8
HISTORICAL_PROPERTY = "historical"

ReadingCheck = Callable[[MeterReading], str | None]
# Looks a stored reading up by its id among the given meters: (meter, ns time) or None
# (InfluxStore.find_reading; naming the meter keeps the look-up to that meter's series).
FindReading = Callable[..., Awaitable[tuple[str, int] | None]]


@dataclass(frozen=True, slots=True)
class Delivery:
    """How an operator set the fan-out to serve organisations' apps."""

    # Organisations whose apps get each meter's latest live reading retained ("*": every one).
    retained: frozenset[str] = frozenset()
    # Per organisation, the property ids its apps receive (absent: every property).
    properties: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Seconds a republished reading may wait in an offline app's queue (MQTT message expiry).
    message_expiry: int = 3600

    def retains(self, org: str) -> bool:
        return "*" in self.retained or org in self.retained


class FanoutConsumer:
    """Republishes stored readings to the organisations allowed to read them."""

    def __init__(self, *, session: MqttSession, access: ReadingAccess, confirmations: Confirmations,
                 find_reading: FindReading, delivery: Delivery = Delivery(),
                 checks: tuple[ReadingCheck, ...] = (), senders: KnownSenders | None = None,
                 confirm_wait: float = 30.0, confirm_timeout: float = 300.0, recheck_seconds: float = 5.0,
                 name: str = "fanout") -> None:
        self._session = session
        self._access = access
        self._confirmations = confirmations
        self._find = find_reading
        self._delivery = delivery
        self._checks = (check_reading, *checks)
        # Ingest's fast path, with the same checks: a check that says how to judge one value (the
        # catalogue's) is applied per distinct value shape; any other check needs the models.
        rules = [getattr(check, "value_check", None) for check in checks]
        self._value_check: ValueCheck | None = _memoised(rules) if all(r is not None for r in rules) else None
        self._senders = senders
        self._confirm_wait = confirm_wait
        self._confirm_timeout = confirm_timeout
        self._recheck = recheck_seconds
        self._lookups = asyncio.Semaphore(_LOOKUPS)
        self.name = name
        # Built once: the same two property sets go with every reading.
        self._properties = {
            historical: publish_properties(content_type="application/json", message_expiry=delivery.message_expiry,
                                           user_properties={HISTORICAL_PROPERTY: "true"} if historical else None)
            for historical in (False, True)}
        # Each meter's newest reading time retained so far: readings are confirmed in batches and
        # published concurrently, so an older one may come last and must not replace a newer one.
        self._retained_at: dict[str, int] = {}
        self._topics: dict[str, topics.ParsedTopic] = {}  # topics repeat: parsed once (bounded)
        self._stamps: dict[str, int] = {}  # reading times already converted (to_ns's memo)
        self.delivered = 0  # messages published to apps
        self.readings = 0  # readings republished (to one organisation or more)
        self.unreadable = 0  # readings nobody may read
        self.skipped = 0  # messages not republished: refused by ingest's checks or never stored
        self.ready = asyncio.Event()

    def route(self) -> None:
        """Name the handlers before connecting: a resumed session's backlog arrives right after CONNACK."""
        self._session.route(topics.ALL_CONCENTRATOR_ACKS, self.handle_confirmation, qos=CONFIRMATIONS_QOS)
        self._session.route(topics.shared(SHARE_GROUP, topics.ALL_METER_MESSAGES), self.handle_reading)
        self._session.route(topics.shared(SHARE_GROUP, topics.ALL_READING_BATCHES), self.handle_batch)

    async def start(self) -> None:
        # Confirmations first: a reading received before the subscription to them could wait for
        # one that already went by.
        await self._session.subscribe(topics.ALL_CONCENTRATOR_ACKS, self.handle_confirmation, qos=CONFIRMATIONS_QOS)
        await self._session.subscribe(topics.shared(SHARE_GROUP, topics.ALL_METER_MESSAGES), self.handle_reading)
        await self._session.subscribe(topics.shared(SHARE_GROUP, topics.ALL_READING_BATCHES), self.handle_batch)
        log.info("%s: republishing stored readings to app/{org}/%s/%s/{meter}", self.name, topics.METERING_DOMAIN,
                 topics.READING_KIND)
        self.ready.set()

    async def handle_confirmation(self, message: Message) -> None:
        try:
            cid = topics.parse(message.topic).concentrator
            seqs = DeliveryAck.model_validate_json(message.payload).expand()
        except (ValueError, ValidationError) as exc:
            log.warning("%s: ignoring a confirmation on %s: %s", self.name, message.topic, exc)
            return
        assert cid is not None
        self._confirmations.confirmed(cid, seqs)

    async def handle_reading(self, message: Message) -> None:
        """Republish the message's readings once stored; then the message is acknowledged."""
        parsed = self._parse(message.topic)
        assert parsed.concentrator is not None and parsed.meter is not None  # the subscription's filter
        payload = bytes(message.payload)
        held = self._fast_path(payload, parsed)
        if held is None:  # unusual or refused: the full validator decides, and says why
            try:
                readings = parse_meter_message(payload)
            except ValueError as exc:
                self._skip(message, f"not a MeterReading: {str(exc)[:200]}")
                return
            problem = self._problem(parsed, readings)
            if problem is not None:
                self._skip(message, problem)
                return
            held = [_Held.of(reading, raw=payload if len(readings) == 1 else None) for reading in readings]
        if self._senders is not None:
            problem = await self._senders.check(parsed.concentrator, parsed.meter)
            if problem is not None:
                self._skip(message, problem)
                return
        if not await self._stored(parsed.concentrator, _seq(message), held):
            self._skip(message, f"not confirmed stored within {self._confirm_timeout:.0f} s")
            return
        historical = parsed.topic == topics.ReadingTopic.HISTORICAL
        if len(held) == 1:  # the live shape: no task per reading
            await self._republish(held[0], historical=historical or held[0].historical)
        else:
            await asyncio.gather(*(self._republish(one, historical=historical or one.historical) for one in held))

    async def handle_batch(self, message: Message) -> None:
        """A live batch: each reading republished, as a live reading of its own meter, once ingest
        confirmed its own sequence number; those ingest refuses are skipped. Then it is acknowledged."""
        concentrator = self._parse(message.topic).concentrator
        assert concentrator is not None  # the subscription's filter
        raw = message.user_properties.get(SEQ_PROPERTY)
        try:
            seqs = parse_seq_list(raw) if raw is not None else None
            items = parse_reading_batch(bytes(message.payload))
            if seqs is not None and len(seqs) != len(items):
                raise ValueError(f"gw-seq names {len(seqs)} messages, the batch holds {len(items)} readings")
        except ValueError as exc:
            self._skip(message, f"not a live batch: {str(exc)[:200]}")
            return

        async def one(reading: MeterReading | ValueError, seq: int | None) -> None:
            if isinstance(reading, ValueError):
                self._skip(message, f"not a MeterReading: {str(reading)[:200]}")
                return
            problem = next((p for check in self._checks if (p := check(reading))), None)
            if problem is None and self._senders is not None:
                problem = await self._senders.check(concentrator, reading.meter_id)
            if problem is not None:
                self._skip(message, f"{reading.meter_id}: {problem}")
                return
            held = _Held.of(reading, raw=None)
            if not await self._stored(concentrator, seq, [held]):
                self._skip(message, f"{reading.meter_id}: not confirmed stored within {self._confirm_timeout:.0f} s")
                return
            await self._republish(held, historical=held.historical)

        await asyncio.gather(*(one(reading, seqs[n] if seqs is not None else None)
                               for n, (_, reading) in enumerate(items)))

    def _parse(self, topic: str) -> topics.ParsedTopic:
        parsed = self._topics.get(topic)
        if parsed is None:
            if len(self._topics) >= _MEMO_LIMIT:
                self._topics.clear()
            parsed = self._topics[topic] = topics.parse(topic)
        return parsed

    def _fast_path(self, payload: bytes, parsed: topics.ParsedTopic) -> list[_Held] | None:
        """The one reading of a usual live message that ingest's own fast path accepts (the same
        checks, without building models); None when the full validator must decide."""
        assert parsed.concentrator is not None and parsed.meter is not None
        if self._value_check is None or encode_payload(payload, meter=parsed.meter, concentrator_id=parsed.concentrator,
                                                      value_check=self._value_check) is None:
            return None
        wire = decode(payload)
        if wire is None or len(wire) != 1:
            return None
        one = wire[0]
        if len(self._stamps) >= _MEMO_LIMIT:
            self._stamps.clear()
        try:
            at = to_ns(one.readingTime, self._stamps)
        except UnusualTime:
            return None
        return [_Held(meter=parsed.meter, reading_id=one.meterReadingIdentifier, at=at, historical=one.historical,
                      raw=payload)]

    def _problem(self, parsed: topics.ParsedTopic, readings: list[MeterReading]) -> str | None:
        """Why ingest refused these readings (its own checks, in its order), or None."""
        for reading in readings:
            if reading.meter_id != parsed.meter:
                return f"meterIndividualId {reading.meter_id!r} does not match the topic's meter {parsed.meter!r}"
            for check in self._checks:
                if problem := check(reading):
                    return problem
        return None

    async def _stored(self, concentrator: str, seq: int | None, held: list[_Held]) -> bool:
        """Whether ingest stored these readings: its confirmation, or else the store itself."""
        if seq is not None and await self._confirmations.wait(concentrator, seq, timeout=self._confirm_wait):
            return True
        waited = self._confirm_wait if seq is not None else 0.0
        while True:
            if await self._found(held):
                return True
            if waited >= self._confirm_timeout:
                return False
            if seq is not None and await self._confirmations.wait(concentrator, seq, timeout=self._recheck):
                return True
            if seq is None:
                await asyncio.sleep(self._recheck)
            waited += self._recheck

    async def _found(self, held: list[_Held]) -> bool:
        try:
            for one in held:
                async with self._lookups:
                    found = await self._find(one.reading_id, meters=frozenset((one.meter,)))
                if found is None:
                    return False
        except StoreUnavailable as exc:
            log.warning("%s: cannot look readings up: %s", self.name, exc)
            return False
        return True

    async def _republish(self, held: _Held, *, historical: bool) -> None:
        readers = self._access.readers(held.meter)
        if not readers:
            self.unreadable += 1
            return
        sends = []
        newest = not historical and bool(self._delivery.retained) and self._newest(held)
        for org in readers:
            payload = self._payload(org, held, historical=historical)
            if payload is None:
                continue
            # A recovered reading is older than the live one a retained value stands for.
            retain = newest and self._delivery.retains(org)
            sends.append(self._session.publish(topics.app_reading(org, held.meter), payload, qos=1,
                                               retain=retain, properties=self._properties[historical]))
        if len(sends) == 1:
            await sends[0]
        else:
            await asyncio.gather(*sends)
        self.delivered += len(sends)
        self.readings += 1

    def _newest(self, held: _Held) -> bool:
        """Whether ``held`` is its meter's newest reading so far (and remember it)."""
        latest = self._retained_at.get(held.meter)
        if latest is not None and held.at < latest:
            return False
        self._retained_at[held.meter] = held.at
        return True

    def _payload(self, org: str, held: _Held, *, historical: bool) -> bytes | None:
        wanted = self._delivery.properties.get(org)
        if wanted is None and held.raw is not None and historical == held.historical:
            return held.raw  # the reading as the meter sent it (one reading per message: the live shape)
        reading = held.reading()
        update: dict[str, object] = {"historical": historical}
        if wanted is not None:
            values = [v for v in reading.property_values if v.property_id in wanted]
            if not values:
                return None
            update["property_values"] = values
        return reading.model_copy(update=update).model_dump_json(by_alias=True, exclude_none=True).encode()

    def _skip(self, message: Message, reason: str) -> None:
        self.skipped += 1
        log.info("%s: not republishing %s: %s", self.name, message.topic, reason)


def _memoised(rules: list[ValueCheck | None]) -> ValueCheck:
    """Every rule as one ValueCheck, each distinct value shape judged once."""
    @functools.lru_cache(maxsize=_MEMO_LIMIT)
    def check(pid: str, unit: str | None, is_text: bool, meter_class: str | None) -> bool:
        return all(rule(pid, unit, is_text, meter_class) for rule in rules if rule is not None)

    return check


@dataclass(slots=True)
class _Held:
    """A reading held until it is stored: what republishing it needs, its model built only if needed."""

    meter: str
    reading_id: str
    at: int  # reading time, ns since the epoch
    historical: bool
    raw: bytes | None  # the reading's own JSON, when it was the whole message
    model: MeterReading | None = None

    @classmethod
    def of(cls, reading: MeterReading, *, raw: bytes | None) -> _Held:
        at = reading.reading_time.astimezone(UTC)
        return cls(meter=reading.meter_id, reading_id=str(reading.meter_reading_identifier),
                   at=calendar.timegm(at.timetuple()) * 10**9 + at.microsecond * 1000,
                   historical=reading.historical, raw=raw, model=reading)

    def reading(self) -> MeterReading:
        if self.model is None:
            assert self.raw is not None
            self.model = MeterReading.model_validate_json(self.raw)
        return self.model


def _seq(message: Message) -> int | None:
    raw = message.user_properties.get(SEQ_PROPERTY)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None
