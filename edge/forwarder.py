"""Moves messages from the durable outbox to the cloud; deletes each only when the cloud
confirms it stored it, and publishes it again if that confirmation does not come.

An external adapter (``gridwire adapter run``) forwards its own outbox the same way to a
concentrator's local listener: the concentrator confirms on ``adapter/{adapter}/ack``, which
the adapter names as each message's Response Topic.

**Live batches** (the concentrator's ``live_batch`` option, :class:`LiveBatch`): live
``meterReading`` messages are held for at most ``window_s`` and published together on
``concentrator/{cid}/batch/meterReading`` as one ``{"meterReadings": [...]}``, their payloads
joined as they are (no parsing), with every sequence number in ``gw-seq``. Nothing else changes:
each reading keeps its outbox row until the cloud confirms its own sequence number, and one not
confirmed in time goes out again (in a later batch)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from broker import topics
from broker.lean import SEQ_PROPERTY, DeliveryAck, seq_list
from broker.session import Message, MqttError, MqttSession, NegativeAckError, publish_properties
from edge.outbox import Outbox, OutboxMessage

log = logging.getLogger(__name__)

# A batch goes out before its payload passes this many bytes, whatever ``max_readings`` says.
MAX_BATCH_BYTES = 1024 * 1024
_BATCH_HEAD, _BATCH_TAIL = b'{"meterReadings":[', b"]}"


@dataclass(frozen=True, slots=True)
class LiveBatch:
    """How live readings are batched: held at most ``window_s`` seconds, at most ``max_readings`` a batch."""

    window_s: float = 0.25
    max_readings: int = 500


class Forwarder:
    """Publishes outbox messages at QoS 1, each with its sequence number.

    ``window`` bounds publishes awaiting PUBACK; ``max_unconfirmed`` bounds messages the
    broker has but the cloud has not confirmed. A message unconfirmed for ``confirm_timeout``
    seconds is published again (the cloud stores idempotently), and so is one the session could
    not take (an :class:`~broker.session.MqttError`, logged). A message the broker refuses
    (not authorised, too large) can never succeed: it is logged, kept in ``rejected`` and
    deleted, so it cannot block the queue; so is one the confirmation names as refused (with
    its reason code).

    The confirmations come on ``concentrator/{concentrator_id}/ack``, or on ``ack_topic``;
    ``response_topic`` is set on every publish (an adapter's, to tell the concentrator where).
    ``live_batch`` (with ``concentrator_id`` only) batches live readings (see the module).
    """

    def __init__(self, *, outbox: Outbox, session: MqttSession, concentrator_id: str | None = None,
                 ack_topic: str | None = None, response_topic: str | None = None, window: int = 200,
                 max_unconfirmed: int = 1000, confirm_timeout: float = 30.0, delete_interval: float = 0.05,
                 live_batch: LiveBatch | None = None) -> None:
        if (concentrator_id is None) == (ack_topic is None):
            raise ValueError("give exactly one of concentrator_id and ack_topic")
        if live_batch is not None and concentrator_id is None:
            raise ValueError("live batches are a concentrator's: give concentrator_id")
        self._outbox = outbox
        self._session = session
        self._ack_topic = ack_topic or topics.concentrator_ack(concentrator_id or "")
        self._response_topic = response_topic
        self._window = window
        self._max_unconfirmed = max_unconfirmed
        self._confirm_timeout = confirm_timeout
        self._delete_interval = delete_interval
        self._wakeup = asyncio.Event()
        self._cursor = 0
        self._in_flight: set[int] = set()
        self._unconfirmed: dict[int, float] = {}
        self._resend: list[int] = []
        self._confirmed: list[int] = []
        self.published = 0
        self.republished = 0
        self.confirmed = 0
        self.rejected: list[tuple[str, str]] = []
        self.expired = 0
        self._batching = live_batch
        if live_batch is not None:
            assert concentrator_id is not None
            self._batch_topic = topics.concentrator_reading_batch(concentrator_id)
            # What a live reading's outbox row looks like (the concentrator writes them so).
            self._live_prefix = f"{topics.CONCENTRATOR}/{concentrator_id}/{topics.SMART_METER_MESSAGE}/"
            self._live_suffix = f"/{topics.ReadingTopic.METER_READING}"
        # Live readings held for the next batch, and since when (monotonic) the first one waits.
        self._held: list[OutboxMessage] = []
        self._held_since = 0.0
        self.batches = 0  # batch messages published

    @property
    def in_flight(self) -> int:
        """Messages published and not yet confirmed by the cloud (awaiting PUBACK or confirmation)."""
        return len(self._in_flight) + len(self._unconfirmed)

    def notify(self) -> None:
        """Tell the forwarder new messages are in the outbox."""
        self._wakeup.set()

    async def start(self) -> None:
        """Subscribe to the cloud's confirmations (call once the session is connected)."""
        await self._session.subscribe(self._ack_topic, self._on_ack)

    def route(self) -> None:
        """Route the cloud's confirmations before the session connects: subscribed on every connection."""
        self._session.route(self._ack_topic, self._on_ack)

    async def run(self) -> None:
        """Publish what the outbox holds, while the session is connected (messages stay in the
        outbox, not in memory, while it is not)."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._housekeeping(), name="outbox-housekeeping")
            slots = asyncio.Semaphore(self._window)
            while True:
                if not self._session.connected.is_set():
                    await self._session.connected.wait()
                fetched = self._next_batch()
                batch = self._hold(fetched) if self._batching is not None and fetched else fetched
                for message in batch:
                    await slots.acquire()
                    self._in_flight.add(message.seq)
                    tg.create_task(self._publish(message, slots), name=f"outbox-publish-{message.seq}")
                wait = self._held_wait() if self._held and self._batching is not None else None
                if wait == 0.0:
                    for group in self._take_held():
                        await slots.acquire()
                        tg.create_task(self._publish_batch(group, slots), name=f"outbox-batch-{group[0].seq}")
                    continue
                if fetched:
                    continue  # more may be waiting in the outbox: look before waiting
                self._wakeup.clear()
                if wait is None:
                    await self._wakeup.wait()
                else:  # new rows, or the end of the held readings' window
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), wait)
                    except TimeoutError:
                        pass

    def _hold(self, batch: list[OutboxMessage]) -> list[OutboxMessage]:
        """Keep the live readings of ``batch`` for the next live batch; return the others."""
        others = []
        prefix, suffix = self._live_prefix, self._live_suffix
        for message in batch:
            topic = message.topic
            if (message.expires is None and topic.startswith(prefix) and topic.endswith(suffix)
                    and message.payload[:1] == b"{" and not message.payload.startswith(b'{"meterReadings"')):
                if not self._held:
                    self._held_since = time.monotonic()
                self._held.append(message)
                self._in_flight.add(message.seq)  # counted against max_unconfirmed from now on
            else:
                others.append(message)
        return others

    def _held_wait(self) -> float:
        """0.0 when the held readings are to go now (a full batch, the window passed, or no room
        for more), else the seconds left of their window."""
        assert self._batching is not None
        if len(self._held) >= self._batching.max_readings:
            return 0.0
        if self._max_unconfirmed - len(self._unconfirmed) - len(self._in_flight) <= 0:
            return 0.0
        return max(0.0, self._held_since + self._batching.window_s - time.monotonic())

    def _take_held(self) -> list[list[OutboxMessage]]:
        """The held readings in batches of at most max_readings and MAX_BATCH_BYTES."""
        assert self._batching is not None
        held, self._held = self._held, []
        groups: list[list[OutboxMessage]] = []
        group: list[OutboxMessage] = []
        size = 0
        for message in held:
            if group and (len(group) >= self._batching.max_readings or size + len(message.payload) > MAX_BATCH_BYTES):
                groups.append(group)
                group, size = [], 0
            group.append(message)
            size += len(message.payload) + 1
        if group:
            groups.append(group)
        return groups

    async def _publish_batch(self, group: list[OutboxMessage], slots: asyncio.Semaphore) -> None:
        seqs = [message.seq for message in group]
        try:
            payload = b"".join((_BATCH_HEAD, b",".join(message.payload for message in group), _BATCH_TAIL))
            props = publish_properties(response_topic=self._response_topic,
                                       user_properties={SEQ_PROPERTY: seq_list(seqs)})
            await self._session.publish(self._batch_topic, payload, qos=1, properties=props)
            self.published += len(group)
            self.batches += 1
            now = time.monotonic()
            for seq in seqs:
                if seq in self._in_flight:  # not confirmed while we waited for the PUBACK
                    self._unconfirmed[seq] = now
        except NegativeAckError as exc:
            # Not the readings' fault: the broker will not take the batch topic (an ACL from before
            # it, a size limit). Nothing is given up: they go again, one per meter's topic, as
            # does everything after them until this process restarts.
            log.error("broker refused the live batch topic %s (reason %s); sending live readings on their meters' "
                      "topics from now on", self._batch_topic, exc.reason_code)
            self._batching = None
            self._resend.extend(seq for seq in seqs if seq in self._in_flight)
            held, self._held = self._held, []
            for message in held:
                self._in_flight.discard(message.seq)
                self._resend.append(message.seq)
        except MqttError as exc:
            log.warning("could not publish a live batch of %d readings (%s); publishing them again in %.0fs",
                        len(group), exc, self._confirm_timeout)
            now = time.monotonic()
            for seq in seqs:
                if seq in self._in_flight:
                    self._unconfirmed[seq] = now
        finally:
            for seq in seqs:
                self._in_flight.discard(seq)
            slots.release()
            self._wakeup.set()

    def _next_batch(self) -> list[OutboxMessage]:
        room = self._max_unconfirmed - len(self._unconfirmed) - len(self._in_flight)
        if room <= 0:
            return []
        if self._resend:
            seqs, self._resend = self._resend[:room], self._resend[room:]
            batch = self._outbox.get(seqs)
            self.republished += len(batch)
            return batch
        batch = self._outbox.after(self._cursor, limit=min(room, self._window))
        if batch:
            self._cursor = batch[-1].seq
        return batch

    async def _publish(self, message: OutboxMessage, slots: asyncio.Semaphore) -> None:
        try:
            expiry = None
            if message.expires is not None:
                remaining = message.expires - time.time()
                if remaining <= 0:
                    self.expired += 1
                    self._confirm([message.seq])
                    return
                expiry = int(remaining) + 1
            props = publish_properties(message_expiry=expiry, response_topic=self._response_topic,
                                       user_properties={SEQ_PROPERTY: str(message.seq)})
            await self._session.publish(message.topic, message.payload, qos=1, properties=props)
            self.published += 1
            if message.seq in self._in_flight:  # not confirmed while we waited for the PUBACK
                self._unconfirmed[message.seq] = time.monotonic()
        except NegativeAckError as exc:
            log.error("broker refused %s (reason %s); message removed from the outbox", message.topic,
                      exc.reason_code)
            self.rejected.append((message.topic, str(exc)))
            self._confirm([message.seq])
        except MqttError as exc:
            # The session could not take it now (it is closing, or paho would not queue it); the
            # broker did not refuse it. Keep it: it goes out again after confirm_timeout, as an
            # unconfirmed message does, and in any case stays in the outbox for the next start.
            log.warning("could not publish outbox message %d to %s (%s); publishing it again in %.0fs",
                        message.seq, message.topic, exc, self._confirm_timeout)
            if message.seq in self._in_flight:  # not confirmed meanwhile
                self._unconfirmed[message.seq] = time.monotonic()
        finally:
            self._in_flight.discard(message.seq)
            slots.release()

    async def _on_ack(self, message: Message) -> None:
        try:
            ack = DeliveryAck.parse(message.payload)
            seqs = ack.expand()
        except ValueError as exc:
            log.warning("ignoring malformed delivery confirmation on %s: %s", message.topic, exc)
            return
        for refusal in ack.refused:
            # Sending it again cannot succeed: like a message the broker refused, it is given up.
            log.error("message %d refused for good (reason 0x%02X): %s; removed from the outbox", refusal.seq,
                      refusal.reason_code, refusal.reason)
            self.rejected.append((f"seq {refusal.seq}", f"0x{refusal.reason_code:02X} {refusal.reason}"))
            seqs.append(refusal.seq)
        self._confirm(seqs)

    def _confirm(self, seqs: list[int]) -> None:
        for seq in seqs:
            self._unconfirmed.pop(seq, None)
            self._in_flight.discard(seq)
        self._confirmed.extend(seqs)
        self._wakeup.set()

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self._delete_interval)
            self.flush()
            deadline = time.monotonic() - self._confirm_timeout
            late = [seq for seq, sent in self._unconfirmed.items() if sent < deadline]
            if late:
                log.warning("%d messages unconfirmed after %.0fs; publishing them again", len(late),
                            self._confirm_timeout)
                for seq in late:
                    del self._unconfirmed[seq]
                self._resend.extend(late)
                self._wakeup.set()

    def flush(self) -> None:
        """Delete everything confirmed so far."""
        if self._confirmed:
            done, self._confirmed = self._confirmed, []
            before = len(self._outbox)
            self._outbox.delete(done)
            self.confirmed += before - len(self._outbox)
