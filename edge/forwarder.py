"""Moves messages from the durable outbox to the cloud; deletes each only when the cloud
confirms it stored it, and publishes it again if that confirmation does not come.

An external adapter (``gridwire adapter run``) forwards its own outbox the same way to a
concentrator's local listener: the concentrator confirms on ``adapter/{adapter}/ack``, which
the adapter names as each message's Response Topic."""

from __future__ import annotations

import asyncio
import logging
import time

from broker import topics
from broker.schemas import SEQ_PROPERTY, DeliveryAck
from broker.session import Message, MqttError, MqttSession, NegativeAckError, publish_properties
from edge.outbox import Outbox, OutboxMessage

log = logging.getLogger(__name__)


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
    """

    def __init__(self, *, outbox: Outbox, session: MqttSession, concentrator_id: str | None = None,
                 ack_topic: str | None = None, response_topic: str | None = None, window: int = 200,
                 max_unconfirmed: int = 1000, confirm_timeout: float = 30.0, delete_interval: float = 0.05) -> None:
        if (concentrator_id is None) == (ack_topic is None):
            raise ValueError("give exactly one of concentrator_id and ack_topic")
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
                batch = self._next_batch()
                if not batch:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                for message in batch:
                    await slots.acquire()
                    self._in_flight.add(message.seq)
                    tg.create_task(self._publish(message, slots), name=f"outbox-publish-{message.seq}")

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
            ack = DeliveryAck.model_validate_json(message.payload)
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
