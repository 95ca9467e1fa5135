"""Moves messages from the durable outbox to the broker, deleting each only after its PUBACK."""

from __future__ import annotations

import asyncio
import logging
import time

from broker.session import MqttError, MqttSession, NegativeAckError, publish_properties
from edge.outbox import Outbox, OutboxMessage

log = logging.getLogger(__name__)


class Forwarder:
    """Publishes outbox messages at QoS 1 with a bounded number in flight.

    Acknowledged messages are deleted in small batches (one fsync per batch rather than per
    message). A message the broker refuses (not authorised, too large) can never succeed: it
    is moved to ``rejected`` with the reason and deleted, so it cannot block the queue.
    """

    def __init__(self, *, outbox: Outbox, session: MqttSession, window: int = 200,
                 delete_batch: int = 100, delete_interval: float = 0.05) -> None:
        self._outbox = outbox
        self._session = session
        self._window = window
        self._delete_batch = delete_batch
        self._delete_interval = delete_interval
        self._wakeup = asyncio.Event()
        self._in_flight: set[int] = set()
        self._acked: list[int] = []
        self._acked_event = asyncio.Event()
        self.published = 0
        self.rejected: list[tuple[str, str]] = []
        self.expired = 0

    def notify(self) -> None:
        """Tell the forwarder new messages are in the outbox."""
        self._wakeup.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._deleter(), name="outbox-deleter")
            slots = asyncio.Semaphore(self._window)
            while True:
                batch = self._outbox.peek(limit=self._window, exclude=self._in_flight)
                if not batch:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                for message in batch:
                    await slots.acquire()
                    self._in_flight.add(message.seq)
                    tg.create_task(self._publish(message, slots), name=f"outbox-publish-{message.seq}")

    async def _publish(self, message: OutboxMessage, slots: asyncio.Semaphore) -> None:
        try:
            props = None
            if message.expires is not None:
                remaining = message.expires - time.time()
                if remaining <= 0:
                    self.expired += 1
                    self._done(message.seq)
                    return
                props = publish_properties(message_expiry=int(remaining) + 1)
            await self._session.publish(message.topic, message.payload, qos=1, properties=props)
            self.published += 1
            self._done(message.seq)
        except NegativeAckError as exc:
            log.error("broker refused %s (reason %s); message removed from the outbox", message.topic,
                      exc.reason_code)
            self.rejected.append((message.topic, str(exc)))
            self._done(message.seq)
        except MqttError:
            # Session closing; the message stays in the outbox for the next start.
            self._in_flight.discard(message.seq)
        finally:
            slots.release()

    def _done(self, seq: int) -> None:
        self._acked.append(seq)
        if len(self._acked) >= self._delete_batch:
            self._acked_event.set()

    async def _deleter(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._acked_event.wait(), self._delete_interval)
            except TimeoutError:
                pass
            self._acked_event.clear()
            self.flush()

    def flush(self) -> None:
        """Delete everything acknowledged so far."""
        if self._acked:
            done, self._acked = self._acked, []
            self._outbox.delete(done)
            self._in_flight.difference_update(done)
