"""Webhook delivery per organisation: signed POSTs, retried with capped backoff.

The target (URL and secret) is read from the registry's organisation row and kept for
``TARGET_CACHE_SECONDS``, so a changed webhook takes effect within that time (reading it for
every notification was a database round trip per switched light). A 2xx answer is a delivery; 4xx other than 408/429 is
the receiver refusing the body and is not retried; anything else (5xx, timeouts, refused
connections) is retried until ``max_attempts``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.session import Backoff
from cloud.core.access import autocommit
from cloud.notify.signing import SIGNATURE_HEADER, sign
from cloud.registry.models import Organisation

log = logging.getLogger(__name__)

_RETRYABLE_4XX = frozenset({408, 429})
TARGET_CACHE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    url: str
    secret: str


class WebhookSender:
    """Sends notifications to organisations' webhooks; :meth:`submit` runs a delivery in the background."""

    def __init__(self, *, engine: AsyncEngine, client: httpx.AsyncClient | None = None, max_attempts: int = 6,
                 backoff: Backoff = Backoff(initial=0.5, maximum=60.0), timeout: float = 10.0) -> None:
        self._engine = engine
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._owns_client = client is None
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._tasks: set[asyncio.Task[bool]] = set()
        self._targets: dict[str, tuple[float, WebhookTarget | None]] = {}

    async def target(self, organisation: str) -> WebhookTarget | None:
        """The organisation's webhook, or None if it has none (or no secret to sign with)."""
        cached = self._targets.get(organisation)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        found = await self._read_target(organisation)
        self._targets[organisation] = (time.monotonic() + TARGET_CACHE_SECONDS, found)
        return found

    async def _read_target(self, organisation: str) -> WebhookTarget | None:
        async with autocommit(self._engine).connect() as conn:
            row = (await conn.execute(select(Organisation.webhook_url, Organisation.webhook_secret)
                                      .where(Organisation.identification == organisation))).first()
        if row is None or not row.webhook_url or not row.webhook_secret:
            return None
        return WebhookTarget(url=row.webhook_url, secret=row.webhook_secret)

    async def send(self, organisation: str, body: bytes, *, event: str = "notification") -> bool:
        """Deliver ``body`` to the organisation's webhook; True once accepted, False if given up."""
        target = await self.target(organisation)
        if target is None:
            return False
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(target.secret, body),
                   "X-Gridwire-Event": event}
        for attempt in range(self._max_attempts):
            try:
                answer = await self._client.post(target.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if answer.is_success:
                    return True
                reason = f"HTTP {answer.status_code}"
                if answer.is_client_error and answer.status_code not in _RETRYABLE_4XX:
                    log.warning("webhook of %s refused a notification (%s); not retried", organisation, reason)
                    return False
            if attempt + 1 < self._max_attempts:
                delay = self._backoff.delay(attempt)
                log.info("webhook of %s failed (%s), attempt %d; retrying in %.2fs", organisation, reason,
                         attempt + 1, delay)
                await asyncio.sleep(delay)
        log.warning("webhook of %s: gave up after %d attempts", organisation, self._max_attempts)
        return False

    def submit(self, organisation: str, body: bytes, *, event: str = "notification") -> asyncio.Task[bool] | None:
        """Deliver in the background (the caller does not wait for a slow receiver); None when the
        organisation is known (recently) to have no webhook, so there is nothing to do."""
        cached = self._targets.get(organisation)
        if cached is not None and cached[1] is None and cached[0] > time.monotonic():
            return None
        task = asyncio.create_task(self.send(organisation, body, event=event), name=f"webhook-{organisation}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._owns_client:
            await self._client.aclose()
