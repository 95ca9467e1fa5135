"""How a P1 meter's readings reach the durable outbox, and its latest reading, live.

A meter's forwarding policy (``forward`` in its config):
- ``aggregate`` (the default for P1): one reading per interval (``aggregate_s``, 15 minutes),
  with each property's mean, minimum, maximum and last value and the interval
  (:mod:`edge.p1.aggregate`): one outbox write per interval instead of 900;
- ``every``: every telegram's reading, written to the outbox in batches of ``batch_s`` seconds
  (one transaction, one fsync, per batch instead of per telegram).
Either way the latest reading is published live, retained at QoS 0 and outside the outbox (it is
superseded a second later, so it needs no durability), on ``concentrator/{cid}/live/{meter}``
at most every ``live_s`` seconds.

What is held in memory (an open interval, a batch) is written out when the reader stops
cleanly; a power cut loses it, as it loses the telegrams the meter sends while the appliance
is down (P1 is push-only: docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Literal

from broker import topics
from broker.lean import MeterReading
from broker.session import MqttError, MqttSession
from edge.p1.aggregate import Aggregator

log = logging.getLogger(__name__)

Policy = Literal["every", "aggregate"]


class LiveReadings:
    """The latest reading of each P1 meter, published retained at QoS 0 when it changed."""

    def __init__(self) -> None:
        self._latest: dict[str, MeterReading] = {}
        self._every: dict[str, float] = {}
        self._sent: dict[str, float] = {}
        self.published = 0

    def offer(self, reading: MeterReading, *, every_s: float | None) -> None:
        if every_s is None:
            return
        self._latest[reading.meter_id] = reading
        self._every[reading.meter_id] = every_s

    async def publish_due(self, session: MqttSession, concentrator_id: str, *, now: float) -> None:
        for meter_id, reading in list(self._latest.items()):
            if now - self._sent.get(meter_id, -float("inf")) < self._every[meter_id]:
                continue
            del self._latest[meter_id]
            self._sent[meter_id] = now
            try:
                await session.publish(topics.concentrator_live(concentrator_id, meter_id),
                                      reading.wire_bytes(),
                                      qos=0, retain=True)
            except MqttError as exc:  # offline: the next reading is published when the link is back
                log.debug("live reading of %s not published: %s", meter_id, exc)
                continue
            self.published += 1


class P1Forwarding:
    """One P1 meter's way to the outbox (``submit``) under its policy, and to the live topic."""

    def __init__(self, *, policy: Policy, submit: Callable[[list[MeterReading]], None], live: LiveReadings,
                 aggregate_s: float = 900.0, batch_s: float = 10.0, live_s: float | None = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._submit = submit
        self._live = live
        self._live_s = live_s
        self._aggregator = Aggregator(period_s=aggregate_s) if policy == "aggregate" else None
        self._batch_s = batch_s
        self._batch: list[MeterReading] = []
        self._batch_since = 0.0
        self._clock = clock

    def add(self, readings: list[MeterReading]) -> None:
        """Take the readings of one telegram."""
        for reading in readings:
            self._live.offer(reading, every_s=self._live_s)
        if self._aggregator is not None:
            closed = [summary for reading in readings for summary in self._aggregator.add(reading)]
            if closed:
                self._submit(closed)
            return
        self.tick()  # a batch is the telegrams of batch_s seconds: this one may start the next
        if not self._batch:
            self._batch_since = self._clock()
        self._batch += readings
        if self._batch_s == 0:
            self._write_batch()

    def tick(self) -> None:
        """Write out a batch that is due (called per telegram and by the live loop when the meter is quiet)."""
        if self._batch and self._clock() - self._batch_since >= self._batch_s:
            self._write_batch()

    def flush(self) -> None:
        """Write out everything held (the reader is stopping)."""
        if self._aggregator is not None:
            closed = self._aggregator.flush()
            if closed:
                self._submit(closed)
        if self._batch:
            self._write_batch()

    def _write_batch(self) -> None:
        batch, self._batch = self._batch, []
        self._submit(batch)


async def run_live(session: MqttSession, concentrator_id: str, *, live: LiveReadings,
                   forwardings: Callable[[], list[P1Forwarding]], interval: float = 1.0) -> None:
    """Publish due live readings and write out due batches, every ``interval`` seconds, until cancelled."""
    while True:
        await asyncio.sleep(interval)
        for forwarding in forwardings():
            forwarding.tick()
        if session.connected.is_set():
            await live.publish_due(session, concentrator_id, now=time.monotonic())
