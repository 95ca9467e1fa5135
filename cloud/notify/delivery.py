"""The webhook delivery loop: send what the outbox holds, at least once, whatever restarts.

Each round claims due notifications under a lease (:meth:`WebhookOutbox.claim`), POSTs them
concurrently (each bounded well inside the lease, so no other loop takes a notification while
it is being sent) and records the outcome: DELIVERED on 2xx, FAILED on a refusal (4xx other
than 408/429) or after ``max_attempts``, else PENDING again after a capped backoff. A loop that
dies leaves its claims to run out; another loop, or this one restarted, then sends them again
under the same ``X-Gridwire-Delivery`` id, which receivers de-duplicate on. DELIVERED rows are
deleted after ``retention``; FAILED rows stay for operators.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError

from broker.session import Backoff
from cloud.notify.outbox import Delivery, WebhookOutbox
from cloud.notify.webhook import Attempt, Verdict, WebhookSender

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How hard and how often the loop tries."""

    max_attempts: int = 15
    # 1 s doubling to 10 min: 15 attempts span about an hour.
    backoff: Backoff = Backoff(initial=1.0, maximum=600.0)
    # How long a claimed notification is this loop's alone; an attempt is cut off at half of it.
    lease: timedelta = timedelta(seconds=60)
    batch: int = 50
    # How often the outbox is looked at when nothing was submitted in this process.
    poll_interval: float = 1.0
    retention: timedelta = timedelta(hours=24)
    purge_interval: float = 600.0


class WebhookDelivery:
    """Sends the outbox's due notifications; run one per domain process (any number may run)."""

    def __init__(self, *, sender: WebhookSender, outbox: WebhookOutbox | None = None,
                 policy: DeliveryPolicy = DeliveryPolicy(), worker: str | None = None) -> None:
        if policy.lease.total_seconds() <= 2 * sender.timeout:
            raise ValueError(f"the delivery lease ({policy.lease}) must be longer than twice the HTTP "
                             f"timeout ({sender.timeout} s)")
        self._sender = sender
        self._outbox = outbox or sender.outbox
        self.policy = policy
        self.worker = worker or f"{socket.gethostname()}-{os.getpid()}"
        self._task: asyncio.Task[None] | None = None
        self._next_purge = 0.0
        self._stop = asyncio.Event()

    async def run_once(self) -> int:
        """One round: claim due notifications, send them, record the outcomes; how many were claimed."""
        if time.monotonic() >= self._next_purge:
            self._next_purge = time.monotonic() + self.policy.purge_interval
            purged = await self._outbox.purge(older_than=self.policy.retention)
            if purged:
                log.info("deleted %d delivered webhook notifications older than %s", purged, self.policy.retention)
        claimed = await self._outbox.claim(worker=self.worker, limit=self.policy.batch, lease=self.policy.lease)
        outcomes = await asyncio.gather(*(self._deliver(d) for d in claimed), return_exceptions=True)
        for failure in (o for o in outcomes if isinstance(o, BaseException)):
            if not isinstance(failure, (SQLAlchemyError, OSError)):
                raise failure
            # The claim stays until its lease runs out; then the notification is tried again.
            log.warning("webhook delivery not recorded (%s: %s)", type(failure).__name__, failure)
        return len(claimed)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Rounds until ``stop`` is set (or cancelled); a database error is logged and retried."""
        stop = stop or asyncio.Event()
        failures = 0
        while not stop.is_set():
            self._sender.submitted.clear()
            try:
                full = await self.run_once() >= self.policy.batch
                failures = 0
            except (SQLAlchemyError, OSError) as exc:
                delay = self.policy.backoff.delay(failures)
                failures += 1
                log.warning("webhook delivery round failed (%s: %s); again in %.1fs", type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                continue
            if full:
                continue
            try:
                await asyncio.wait_for(self._sender.submitted.wait(), self.policy.poll_interval)
            except TimeoutError:
                pass

    def start(self) -> asyncio.Task[None]:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.run(self._stop), name=f"webhook-delivery-{self.worker}")
        return self._task

    async def close(self, *, grace: float = 5.0) -> None:
        """Stop after the current round (its database work finishes and returns its connections);
        a round still running after ``grace`` seconds (a slow receiver) is cancelled, and its
        claims are taken up again when their lease runs out."""
        if self._task is None:
            return
        self._stop.set()
        self._sender.submitted.set()  # wake the wait between rounds
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace)
        except TimeoutError:
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def _deliver(self, delivery: Delivery) -> None:
        target = await self._sender.target(delivery.organisation)
        if target is None:
            await self._outbox.failed(delivery, "the organisation has no webhook (or no secret) any more")
            log.warning("webhook notification %s for %s dropped: no webhook", delivery.id, delivery.organisation)
            return
        try:
            async with asyncio.timeout(self.policy.lease.total_seconds() / 2):
                attempt = await self._sender.post(target, delivery.body, event=delivery.event, delivery=delivery.id)
        except TimeoutError:
            attempt = Attempt(Verdict.RETRY, "no answer within half the delivery lease")
        if attempt.verdict is Verdict.DELIVERED:
            await self._outbox.delivered(delivery)
        elif attempt.verdict is Verdict.REFUSED:
            log.warning("webhook of %s refused notification %s (%s); not retried", delivery.organisation,
                        delivery.id, attempt.reason)
            await self._outbox.failed(delivery, attempt.reason)
        elif delivery.attempts >= self.policy.max_attempts:
            log.warning("webhook of %s: notification %s given up after %d attempts (%s)", delivery.organisation,
                        delivery.id, delivery.attempts, attempt.reason)
            await self._outbox.failed(delivery, f"gave up after {delivery.attempts} attempts: {attempt.reason}")
        else:
            delay = self.policy.backoff.delay(delivery.attempts - 1)
            log.info("webhook of %s failed (%s), attempt %d of notification %s; again in %.2fs",
                     delivery.organisation, attempt.reason, delivery.attempts, delivery.id, delay)
            await self._outbox.retry(delivery, attempt.reason, after=timedelta(seconds=delay))
