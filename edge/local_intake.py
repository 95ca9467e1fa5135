"""The concentrator's local listener: readings from SmartMeterAdapters on other devices.

An external adapter (``gridwire adapter run``, an ESP32, the OMDP reference adapter) publishes
``smartMeterMessage/{meter}/{topic}`` at QoS 1 to the concentrator's local broker. The
concentrator subscribes to ``smartMeterMessage/+/+`` there with a durable session, and for
each message:

1. checks the topic (an OMDP reading topic), the meter (one of an allowed adapter's, the broker
   ACL's rule again, for a broker it is only pointed at) and the payload (MeterReadings of that
   meter, as the ones it reads itself);
   The payload may also be the OMDP reference adapter's flat document (``readingTime``,
   ``meterId``, ``propertyValues`` with ``propertyName``), which it publishes on
   ``smartMeterMessage/{meter}/readings`` without a sequence number or Response Topic: it is read
   into a MeterReading (``broker/lean/omdp_reference.py``, the id derived from meter and time)
   and then takes the same path; such an adapter hears only the broker's PUBACK;
2. puts the readings into the durable outbox (:meth:`Concentrator.submit`: committed, fsynced;
   the messages that arrive within a few milliseconds share one commit);
3. only then acknowledges the message to the local broker (the session's PUBACK-after-handler),
   and confirms it to the adapter on ``adapter/{adapter}/ack`` (its Response Topic) with the
   adapter's sequence number, so the adapter deletes its copy only once the concentrator's
   outbox holds it, whatever the local broker loses (a killed broker, its last save).

A message that can never be taken is refused for good: the adapter gets its sequence number
back with an MQTT 5 reason code and the reason (0x99 payload format invalid, 0x90 topic name
invalid, 0x87 not authorised), the refusal is logged and counted in the concentrator's status
(``localIntake``), and it is not forwarded. A full outbox is not the adapter's fault: no
confirmation then, so the adapter sends the message again later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from broker import topics
from broker.errors import Invalid
from broker.lean import (
    SEQ_PROPERTY,
    DeliveryAck,
    LocalIntakeState,
    MeterIndividual,
    MeterReading,
    Refusal,
    parse_meter_message,
)
from broker.lean.omdp_reference import REFERENCE_TOPIC, parse_reference_message
from broker.session import Message, MqttError, MqttSession

log = logging.getLogger(__name__)

NOT_AUTHORISED = 0x87
TOPIC_NAME_INVALID = 0x90
PAYLOAD_FORMAT_INVALID = 0x99
_LOGGED = 200
# Messages arriving within this many seconds share one outbox commit, up to COMMIT_MAX of them.
COMMIT_LINGER = 0.005
COMMIT_MAX = 200
# Gridwire's reading topics, and the OMDP reference adapter's (live readings).
_READING_TOPICS = (*topics.ReadingTopic, REFERENCE_TOPIC)

# Puts readings into the outbox; False when it could not keep them (full).
Submit = Callable[[list[MeterReading]], bool]


class Refused(Invalid):
    """A message the concentrator will never take: its reason code and why."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def adapter_meters(adapter_configs: Iterable[tuple[str, Path]]) -> dict[str, str]:
    """{meterIndividualId: adapter id} from each adapter's OMDP config (main meter and sub-meters)."""
    from devices.adapter_config import load_adapter_config

    owners: dict[str, str] = {}
    for adapter_id, path in adapter_configs:
        config = load_adapter_config(path)
        for meter in (config.meter_individual_id, *(s.meter_individual_id for s in config.sub_meters)):
            if meter in owners and owners[meter] != adapter_id:
                raise ValueError(f"meter {meter} belongs to adapters {owners[meter]} and {adapter_id}")
            owners[meter] = adapter_id
    return owners


def adapter_individuals(adapter_configs: Iterable[tuple[str, Path]]) -> dict[str, MeterIndividual]:
    """{meterIndividualId: its MeterIndividual} (class, element) from each adapter's OMDP config:
    what a reading in the reference adapter's shape, which names only the meter, is given."""
    from devices.adapter_config import load_adapter_config

    found: dict[str, MeterIndividual] = {}
    for _, path in adapter_configs:
        config = load_adapter_config(path)
        found[config.meter_individual_id] = config.meter_individual()
        found.update((sub.meter_individual_id, sub.meter_individual()) for sub in config.sub_meters)
    return found


class LocalIntake:
    """Takes external adapters' readings off the local listener into the concentrator's outbox."""

    def __init__(self, *, session: MqttSession, owners: dict[str, str], submit: Submit,
                 ack_interval: float = 0.05, individuals: dict[str, MeterIndividual] | None = None) -> None:
        self.session = session
        self._owners = owners
        self._individuals = individuals or {}
        self._submit = submit
        self._ack_interval = ack_interval
        self._acks: dict[str, tuple[list[int], list[Refusal]]] = {}
        # Readings of messages handled in the same turn of the loop, committed together (see _keep).
        self._pending: list[tuple[list[MeterReading], asyncio.Future[bool]]] = []
        self._commit_timer: asyncio.TimerHandle | None = None
        self._wakeup = asyncio.Event()
        self.accepted = 0
        self.refused: dict[str, int] = {}
        self.last_refused: str | None = None

    def route(self) -> None:
        """Route adapters' messages before the session connects (a durable session's broker
        sends what it holds right after CONNACK)."""
        self.session.route(topics.ALL_LOCAL_METER_MESSAGES, self._on_message)

    def state(self) -> LocalIntakeState:
        return LocalIntakeState(accepted=self.accepted, refused=dict(self.refused), lastRefused=self.last_refused)

    async def run(self) -> None:
        """Send the confirmations, gathered for ``ack_interval`` seconds per adapter."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await asyncio.sleep(self._ack_interval)
            pending, self._acks = self._acks, {}
            for topic, (seqs, refusals) in pending.items():
                try:
                    await self.session.publish(topic, DeliveryAck.of(seqs, refused=refusals).to_wire(), qos=1)
                except MqttError as exc:
                    # The adapter sends these again after its confirm timeout: kept once more, stored once.
                    log.warning("could not confirm %d messages to %s: %s", len(seqs) + len(refusals), topic, exc)

    async def _on_message(self, message: Message) -> None:
        owner = self._owner_of_reply(message)
        seq = _seq(message)
        try:
            readings = self._check(message)
        except Refused as exc:
            self._refuse(message, exc, owner=owner, seq=seq)
            return
        if not await self._keep(readings):
            return  # outbox full: no confirmation, the adapter sends it again later
        self.accepted += 1
        if owner is not None and seq is not None:
            self._confirm(owner, seq)

    async def _keep(self, readings: list[MeterReading]) -> bool:
        """Commit with the other messages that arrive within COMMIT_LINGER seconds: one outbox
        transaction (one fsync, milliseconds on a flash card) for all of them, each message
        acknowledged after it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        if not self._pending:
            self._commit_timer = loop.call_later(COMMIT_LINGER, self._commit)
        self._pending.append((readings, future))
        if len(self._pending) >= COMMIT_MAX and self._commit_timer is not None:
            self._commit_timer.cancel()
            self._commit()
        return await future

    def _commit(self) -> None:
        self._commit_timer = None
        batch, self._pending = self._pending, []
        try:
            kept = self._submit([reading for readings, _ in batch for reading in readings])
        except Exception as exc:  # noqa: BLE001 - each handler raises it: its message is redelivered
            for _, future in batch:
                if not future.done():  # its handler was cancelled meanwhile (the session closing)
                    future.set_exception(exc)
            return
        for _, future in batch:
            if not future.done():
                future.set_result(kept)

    def close(self) -> None:
        """Commit nothing more (call once the session is closed, before the outbox is)."""
        if self._commit_timer is not None:
            self._commit_timer.cancel()
            self._commit_timer = None
        for _, future in self._pending:
            future.cancel()
        self._pending = []

    def _check(self, message: Message) -> list[MeterReading]:
        try:
            parsed = topics.parse(message.topic)
        except topics.TopicError as exc:
            raise Refused(TOPIC_NAME_INVALID, str(exc)) from exc
        if parsed.kind != "local_meter_message" or parsed.topic not in _READING_TOPICS:
            raise Refused(TOPIC_NAME_INVALID, f"{message.topic}: not a reading topic (specific topic must be "
                                              f"{' or '.join(_READING_TOPICS)})")
        assert parsed.meter is not None
        if parsed.meter not in self._owners:
            raise Refused(NOT_AUTHORISED, f"meter {parsed.meter} is not one of this concentrator's adapters'")
        if message.response_topic is not None and message.response_topic != topics.adapter_ack(
                self._owners[parsed.meter]):
            raise Refused(NOT_AUTHORISED, f"meter {parsed.meter} belongs to adapter {self._owners[parsed.meter]}, "
                                          f"not to the one its Response Topic names ({message.response_topic})")
        historical = parsed.topic == topics.ReadingTopic.HISTORICAL
        try:
            readings = parse_meter_message(message.payload)
        except ValueError as exc:
            readings = self._reference(message, meter=parsed.meter, historical=historical)
            if readings is None:
                raise Refused(PAYLOAD_FORMAT_INVALID, f"not a MeterReading: {_short(exc)}") from exc
        for reading in readings:
            if reading.meter_id != parsed.meter:
                raise Refused(PAYLOAD_FORMAT_INVALID,
                              f"reading of meter {reading.meter_id} on the topic of meter {parsed.meter}")
            if reading.historical != historical:
                raise Refused(PAYLOAD_FORMAT_INVALID, f"historical is {str(reading.historical).lower()} on "
                                                      f"topic {parsed.topic}")
        return readings

    def _reference(self, message: Message, *, meter: str, historical: bool) -> list[MeterReading] | None:
        """The readings of a payload in the OMDP reference adapter's flat shape (None: not that
        shape), the meter as its adapter config describes it; one in that shape that cannot be
        read is refused with the reason."""
        try:
            return parse_reference_message(message.payload, meter=meter, historical=historical,
                                           individual=self._individuals.get(meter))
        except ValueError as exc:
            raise Refused(PAYLOAD_FORMAT_INVALID, f"OMDP reference payload: {_short(exc)}") from exc

    def _owner_of_reply(self, message: Message) -> str | None:
        """The adapter to confirm to: the one its Response Topic names, if that is an allowed
        adapter's (a confirmation sent to another adapter would make it delete its own message)."""
        if message.response_topic is None:
            return None
        try:
            parsed = topics.parse(message.response_topic)
        except topics.TopicError:
            return None
        if parsed.kind != "adapter_ack" or parsed.device not in self._owners.values():
            return None
        return message.response_topic

    def _refuse(self, message: Message, refusal: Refused, *, owner: str | None, seq: int | None) -> None:
        code = f"0x{refusal.code:02X}"
        self.refused[code] = self.refused.get(code, 0) + 1
        self.last_refused = f"{code} {message.topic[:_LOGGED]}: {refusal.reason}"
        log.warning("refused %s from the local listener (%s): %s; payload %r", message.topic[:_LOGGED], code,
                    refusal.reason, bytes(message.payload[:_LOGGED]))
        # Only the meter's own adapter hears of it: a refusal sent where another adapter's Response
        # Topic points would make that adapter delete a message of its own with the same number.
        if owner is not None and seq is not None and self._owns(owner, message):
            self._acks.setdefault(owner, ([], []))[1].append(Refusal(seq=seq, reasonCode=refusal.code,
                                                                      reason=refusal.reason[:1000]))
            self._wakeup.set()

    def _owns(self, ack_topic: str, message: Message) -> bool:
        parts = message.topic.split("/")
        return len(parts) == 3 and topics.adapter_ack(self._owners.get(parts[1], "-")) == ack_topic

    def _confirm(self, ack_topic: str, seq: int) -> None:
        self._acks.setdefault(ack_topic, ([], []))[0].append(seq)
        self._wakeup.set()


def _seq(message: Message) -> int | None:
    raw = message.user_properties.get(SEQ_PROPERTY)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _short(exc: Exception) -> str:
    text = str(exc).replace("\n", "; ")
    return text if len(text) <= 300 else text[:300] + "..."
