"""Concentrator time: an NTP-style exchange with the cloud over MQTT, and meter clock drift.

The exchange (four timestamps, as NTP): the concentrator sends ``t1`` on
``concentrator/{cid}/time/request``; the cloud stamps ``t2`` on receipt and ``t3`` on
transmit and answers on ``concentrator/{cid}/time/response``; the concentrator stamps ``t4``.
Then ``offset = ((t2 - t1) + (t3 - t4)) / 2`` (reference minus local) and
``delay = (t4 - t1) - (t3 - t2)``. Whatever the split of the delay between the two
directions, the true offset lies within ``delay / 2`` of the computed one, so the filter keeps
the sample with the smallest delay of the last N (the tightest bound), as NTP's clock filter does.

Meter clocks: each meter gives an async ``read_clock()`` / ``set_clock(dt)`` pair (the DLMS
adapter's clock object, or anything else); :func:`decide` is the pure policy and
:func:`check_meter` measures, decides and corrects one meter.

The wire models (both the concentrator and the cloud read them) are in
``broker/schemas/timesync.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from broker import topics
from broker.lean import ContractError
from broker.lean.timesync import EXCHANGE_EXPIRY_SECONDS, DriftReport, TimeRequest, TimeResponse
from broker.session import Message, MqttSession, publish_properties

log = logging.getLogger(__name__)


# --- pure math -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One exchange: reference-minus-local offset and round-trip delay, in seconds."""

    offset: float
    delay: float
    t4: float


def compute(t1: float, t2: float, t3: float, t4: float) -> Sample:
    """Offset and delay from the four NTP timestamps (t1, t4 local; t2, t3 reference)."""
    return Sample(offset=((t2 - t1) + (t3 - t4)) / 2, delay=(t4 - t1) - (t3 - t2), t4=t4)


class ClockFilter:
    """Keeps the last ``size`` samples; the estimate is the one with the smallest delay."""

    def __init__(self, size: int = 8) -> None:
        if size < 1:
            raise ValueError("the filter needs room for at least one sample")
        self._samples: deque[Sample] = deque(maxlen=size)

    def add(self, sample: Sample) -> None:
        if sample.delay < 0:
            # Only possible if a clock stepped mid-exchange; such a sample bounds nothing.
            log.warning("discarding time sample with negative delay %.6f s", sample.delay)
            return
        self._samples.append(sample)

    @property
    def estimate(self) -> Sample | None:
        return min(self._samples, key=lambda s: s.delay, default=None)

    def __len__(self) -> int:
        return len(self._samples)


@dataclass(frozen=True, slots=True)
class ClockDecision:
    """What to do about one meter clock: its drift, and whether to set it."""

    drift_seconds: float
    set_clock: bool


def decide(meter_clock: datetime, reference_time: datetime, threshold: timedelta) -> ClockDecision:
    """Set the meter's clock when it is off by more than ``threshold`` (either way)."""
    drift = (meter_clock - reference_time).total_seconds()
    return ClockDecision(drift_seconds=drift, set_clock=abs(drift) > threshold.total_seconds())


# --- meter clocks ----------------------------------------------------------------------------


class MeterClock(Protocol):
    """A meter's clock as the protocol adapter exposes it (the DLMS clock object, 0.0.1.0.0.255)."""

    def read_clock(self) -> Awaitable[datetime]: ...

    def set_clock(self, value: datetime) -> Awaitable[None]: ...


async def check_meter(meter_id: str, meter: MeterClock, *, reference: Callable[[], datetime],
                      threshold: timedelta) -> DriftReport:
    """Read one meter's clock, compare it with ``reference``, set it if :func:`decide` says so."""
    before = reference()
    meter_time = await meter.read_clock()
    after = reference()
    # The meter stamped its answer somewhere during the read; the middle halves the error.
    midpoint = before + (after - before) / 2
    decision = decide(meter_time, midpoint, threshold)
    if decision.set_clock:
        await meter.set_clock(reference())
        log.info("meter %s clock was %+.3f s off; set", meter_id, decision.drift_seconds)
    return DriftReport(meter_id=meter_id, measured_at=midpoint, drift_seconds=decision.drift_seconds,
                       corrected=decision.set_clock)


# --- the MQTT exchange -----------------------------------------------------------------------


class TimeSyncClient:
    """The concentrator side: exchanges with the cloud's time service and keeps the estimate."""

    def __init__(self, *, session: MqttSession, concentrator_id: str, clock: Callable[[], float] = time.time,
                 filter_size: int = 8) -> None:
        self.session = session
        self.cid = concentrator_id
        self.clock = clock
        self.filter = ClockFilter(filter_size)
        self._waiting: dict[str, tuple[float, asyncio.Future[Sample]]] = {}
        self._response_topic = topics.concentrator_time(concentrator_id, "response")

    async def start(self) -> None:
        """Subscribe to the answers (before the first request, so none is missed)."""
        await self.session.subscribe(self._response_topic, self._on_response)

    async def exchange(self, *, timeout: float = 5.0) -> Sample:
        """One request/response; the sample is added to the filter and returned."""
        request_id = uuid.uuid4().hex
        future: asyncio.Future[Sample] = asyncio.get_running_loop().create_future()
        t1 = self.clock()
        self._waiting[request_id] = (t1, future)
        try:
            props = publish_properties(correlation_data=request_id.encode(), response_topic=self._response_topic,
                                       message_expiry=EXCHANGE_EXPIRY_SECONDS)
            await self.session.publish(topics.concentrator_time(self.cid, "request"),
                                       TimeRequest(request_id=request_id, t1=t1).dump_json(),
                                       qos=1, properties=props)
            sample = await asyncio.wait_for(future, timeout)
        finally:
            self._waiting.pop(request_id, None)
        self.filter.add(sample)
        return sample

    async def _on_response(self, message: Message) -> None:
        t4 = self.clock()  # first, before any parsing adds to the measured delay
        try:
            response = TimeResponse.parse(message.payload)
        except ContractError as exc:
            log.warning("bad time response on %s: %s; payload %r", message.topic, exc, message.payload[:200])
            return
        waiting = self._waiting.get(response.request_id)
        if waiting is None or waiting[1].done():
            log.info("time response %s matches no open request (late or duplicate)", response.request_id)
            return
        t1, future = waiting
        if response.t1 != t1:
            log.warning("time response %s echoes t1 %r, sent %r; ignored", response.request_id, response.t1, t1)
            return
        future.set_result(compute(t1, response.t2, response.t3, t4))

    def reference_now(self) -> datetime:
        """The cloud's time now as best estimated (local time if no exchange succeeded yet)."""
        estimate = self.filter.estimate
        offset = estimate.offset if estimate is not None else 0.0
        return datetime.fromtimestamp(self.clock() + offset, UTC)

    async def run(self, stop: asyncio.Event, *, interval: float = 64.0) -> None:
        """Exchange every ``interval`` seconds until ``stop`` is set; failures are logged and retried."""
        while not stop.is_set():
            try:
                sample = await self.exchange()
                log.debug("time offset %+.6f s, delay %.6f s", sample.offset, sample.delay)
            except TimeoutError:
                log.warning("no time response within the timeout; keeping the previous estimate")
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass


async def publish_drift(session: MqttSession, concentrator_id: str, report: DriftReport) -> None:
    """Send one drift measurement to the cloud (QoS 1; returns once the broker has it)."""
    await session.publish(topics.concentrator_time(concentrator_id, "drift"), report.dump_json(), qos=1)
