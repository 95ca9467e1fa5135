"""The cloud's time service: answers concentrators' NTP-style requests, records meter drift.

Both consumers sit on MQTT 5 shared subscriptions, so several time-service processes split the
requests. The reference clock is injected (default: this host's clock, itself kept by NTP).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pydantic import ValidationError

from broker import topics
from broker.metrics import Histogram
from broker.schemas.timesync import EXCHANGE_EXPIRY_SECONDS, DriftReport, TimeRequest, TimeResponse
from broker.session import Message, MqttSession, publish_properties
from cloud.monitoring.events import EventType, make_event
from cloud.monitoring.notifier import Notifier
from cloud.timesync.store import DriftStore

log = logging.getLogger(__name__)

SHARE_GROUP = "timesync"
ALL_DRIFT_REPORTS = topics.ALL_DRIFT_REPORTS


class TimeService:
    """Answers ``concentrator/+/time/request`` with receive (t2) and transmit (t3) stamps."""

    def __init__(self, *, session: MqttSession, clock: Callable[[], float] = time.time) -> None:
        self.session = session
        self.clock = clock
        self.answered = 0

    async def start(self, *, group: str = SHARE_GROUP) -> None:
        await self.session.subscribe(topics.shared(group, topics.ALL_TIME_REQUESTS), self.handle_request)

    async def handle_request(self, message: Message) -> None:
        t2 = self.clock()  # first: everything after this counts as our processing time, not delay
        try:
            cid = topics.parse(message.topic).concentrator
            request = TimeRequest.model_validate_json(message.payload)
        except (topics.TopicError, ValidationError) as exc:
            log.warning("bad time request on %s: %s; payload %r", message.topic, exc, message.payload[:200])
            return
        assert cid is not None
        # Answer only on the requester's own response topic, whatever it asked for: a concentrator
        # must not be able to make the cloud publish elsewhere.
        reply_to = topics.concentrator_time(cid, "response")
        if message.response_topic not in (None, reply_to):
            log.warning("time request from %s asked for response topic %r; answering on %s", cid,
                        message.response_topic, reply_to)
        props = publish_properties(correlation_data=message.correlation_data or request.request_id.encode(),
                                   message_expiry=EXCHANGE_EXPIRY_SECONDS)
        response = TimeResponse(request_id=request.request_id, t1=request.t1, t2=t2, t3=self.clock())
        await self.session.publish(reply_to, response.model_dump_json(by_alias=True), qos=1, properties=props)
        self.answered += 1


class DriftRecorder:
    """Stores meter drift reports from ``concentrator/+/time/drift``; large drift raises CLOCK_DRIFT."""

    def __init__(self, *, store: DriftStore, notifier: Notifier | None = None, alarm_seconds: float = 10.0,
                 drift: Histogram | None = None) -> None:
        self.store = store
        # Absolute drift of every report (seconds), for metrics: a histogram, never per meter.
        self._drift = drift
        self.alarms = 0
        self.notifier = notifier
        # A drift this large is worth telling people about even though the meter was set.
        self.alarm_seconds = alarm_seconds

    async def start(self, session: MqttSession, *, group: str = SHARE_GROUP) -> None:
        await session.subscribe(topics.shared(group, ALL_DRIFT_REPORTS), self.handle_report)

    async def handle_report(self, message: Message) -> None:
        cid = message.topic.split("/")[1]
        try:
            report = DriftReport.model_validate_json(message.payload)
        except ValidationError as exc:
            log.warning("bad drift report on %s: %s; payload %r", message.topic, exc, message.payload[:200])
            return
        await self.store.record(report, concentrator_id=cid)
        if self._drift is not None:
            self._drift.observe(abs(report.drift_seconds))
        if abs(report.drift_seconds) > self.alarm_seconds:
            self.alarms += 1
        if self.notifier is not None and abs(report.drift_seconds) > self.alarm_seconds:
            await self.notifier.raise_event(make_event(
                EventType.CLOCK_DRIFT, report.meter_id, at=report.measured_at, driftSeconds=report.drift_seconds,
                corrected=report.corrected, concentratorId=cid))
