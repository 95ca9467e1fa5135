"""The scheduler process: claims due runs from the database and publishes their requests.

Stateless apart from the database: start as many as you like; each run is published by the
one process that claimed it (see :mod:`cloud.scheduler.store`). The clock is injected so tests
step through hours of schedule in milliseconds; the loop sleeps in real time only between
ticks, never longer than ``poll_interval`` so schedules added by other processes are seen.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol

from paho.mqtt.properties import Properties

from broker.session import MqttError, publish_properties
from cloud.registry.models import utcnow
from cloud.scheduler.schemas import Run, run_key
from cloud.scheduler.store import Claim, ScheduleStore

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """What the scheduler needs from an MQTT session (:class:`broker.session.MqttSession` fits)."""

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False,
                properties: Properties | None = None) -> Awaitable[None]: ...


def default_instance_id() -> str:
    """A name for this process in ``claimed_by``: host and pid, so an operator can find it."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Scheduler:
    """Runs due schedules: ``await tick()`` once, or ``await run(stop)`` until ``stop`` is set."""

    def __init__(self, *, store: ScheduleStore, publisher: Publisher, clock: Callable[[], datetime] = utcnow,
                 instance_id: str | None = None, lease: timedelta = timedelta(minutes=2),
                 poll_interval: float = 5.0) -> None:
        self.store = store
        self.publisher = publisher
        self.clock = clock
        self.instance_id = instance_id or default_instance_id()
        self.lease = lease
        self.poll_interval = poll_interval
        # Runs this instance published (late: after their due time), publishes that failed; for metrics.
        self.runs = 0
        self.late_runs = 0
        self.failed_publishes = 0

    async def tick(self) -> list[Run]:
        """Claim and publish every run due now; return the runs this instance published."""
        runs: list[Run] = []
        for claim in await self.store.claim_due(owner=self.instance_id, lease=self.lease):
            try:
                await self._publish(claim)
            except MqttError:
                self.failed_publishes += 1
                # Left claimed: when the lease runs out some scheduler publishes it again.
                log.exception("schedule %d: publishing run %s failed; will retry after the lease",
                              claim.schedule_id, claim.due.isoformat())
                continue
            await self.store.complete(claim, owner=self.instance_id)
            self.runs += 1
            self.late_runs += int(claim.late)
            runs.append(Run(schedule_id=claim.schedule_id, due=claim.due, published_at=self.clock(),
                            late=claim.late, recovered=claim.recovered))
        return runs

    async def _publish(self, claim: Claim) -> None:
        key = run_key(claim.schedule_id, claim.due)
        props = publish_properties(
            correlation_data=key.encode(), message_expiry=claim.task.message_expiry,
            content_type="application/json",
            user_properties={"organisation": claim.organisation, "scheduleId": str(claim.schedule_id),
                             "scheduledFor": claim.due.isoformat(), "idempotencyKey": key})
        await self.publisher.publish(claim.task.topic, json.dumps(claim.task.payload).encode(), qos=1,
                                     properties=props)
        log.info("schedule %d: published run due %s to %s%s", claim.schedule_id, claim.due.isoformat(),
                 claim.task.topic, " (late)" if claim.late else "")

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set, sleeping until the next due run or ``poll_interval``."""
        log.info("scheduler %s running", self.instance_id)
        while not stop.is_set():
            await self.tick()
            earliest = await self.store.earliest_due()
            wait = self.poll_interval
            if earliest is not None:
                wait = max(0.0, min(wait, (earliest - self.clock()).total_seconds()))
            try:
                await asyncio.wait_for(stop.wait(), timeout=wait)
            except TimeoutError:
                pass
        log.info("scheduler %s stopped", self.instance_id)
