"""Webhook targets and single signed POSTs; :meth:`WebhookSender.submit` puts a notification in the outbox.

The target (URL and sealed secret) is read from the registry's organisation row and kept for
``TARGET_CACHE_SECONDS``, so a changed webhook takes effect within that time (reading it for
every notification was a database round trip per switched light). A notification is stored in
the ``webhook_delivery`` outbox (:mod:`cloud.notify.outbox`) and sent by the delivery loop
(:mod:`cloud.notify.delivery`); :meth:`WebhookSender.post` is one attempt, judged here: a 2xx
answer is a delivery; 4xx other than 408/429 is the receiver refusing the body and is not
retried; anything else (5xx, timeouts, refused connections) may be retried.

The secret stays sealed (:mod:`cloud.registry.webhook_secrets`) until :meth:`WebhookSender.post`
opens it to sign, with the sender's ``sealing`` key ring; one it cannot open (no ring, another
key) is an attempt to retry, with the reason, so a platform restarted with the right key sends it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass, field

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.sealing import KeyRing, SealingError
from cloud.core.access import autocommit
from cloud.notify.outbox import WebhookOutbox
from cloud.notify.signing import SIGNATURE_HEADER, sign
from cloud.registry import webhook_secrets
from cloud.registry.models import Organisation
from cloud.registry.secrets import NoSealingKey

log = logging.getLogger(__name__)

_RETRYABLE_4XX = frozenset({408, 429})
TARGET_CACHE_SECONDS = 5.0
DELIVERY_HEADER = "X-Gridwire-Delivery"
EVENT_HEADER = "X-Gridwire-Event"


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    organisation: str
    url: str
    sealed_secret: str = field(repr=False)


class Verdict(enum.Enum):
    DELIVERED = "delivered"
    REFUSED = "refused"  # the receiver refused the body: sending it again will not help
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class Attempt:
    verdict: Verdict
    reason: str


class WebhookSender:
    """Organisations' webhook targets, one signed POST at a time, and the outbox to submit into.
    ``sealing`` opens the secrets to sign with; a process that only submits needs none."""

    def __init__(self, *, engine: AsyncEngine, sealing: KeyRing | None = None, outbox: WebhookOutbox | None = None,
                 client: httpx.AsyncClient | None = None, timeout: float = 10.0) -> None:
        self._engine = engine
        self._sealing = sealing
        self.outbox = outbox or WebhookOutbox(engine)
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._owns_client = client is None
        self.timeout = timeout
        self._targets: dict[str, tuple[float, WebhookTarget | None]] = {}
        # Set by submit so a delivery loop in this process sends at once instead of at its next poll.
        self.submitted = asyncio.Event()

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
        return WebhookTarget(organisation=organisation, url=row.webhook_url, sealed_secret=row.webhook_secret)

    async def submit(self, organisation: str, body: bytes, *, event: str = "notification",
                     key: str | None = None) -> str | None:
        """Store the notification in the outbox (durably, before this returns) if the organisation has
        a webhook; its delivery id, or None when there is nothing to send. ``key`` names the
        notification: submitting the same key again stores nothing new and returns the same id."""
        if await self.target(organisation) is None:
            return None
        ident, added = await self.outbox.add(organisation, body, event=event, key=key)
        if added:
            self.submitted.set()
        return ident

    async def post(self, target: WebhookTarget, body: bytes, *, event: str, delivery: str) -> Attempt:
        """One signed POST of ``body`` and what it means for the delivery."""
        try:
            secret = webhook_secrets.reveal(self._sealing, target.organisation, target.sealed_secret)
        except (SealingError, NoSealingKey) as exc:
            log.warning("webhook of %s: delivery %s not signed: %s", target.organisation, delivery, exc)
            return Attempt(Verdict.RETRY, f"the webhook secret cannot be opened: {exc}")
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body),
                   EVENT_HEADER: event, DELIVERY_HEADER: delivery}
        try:
            answer = await self._client.post(target.url, content=body, headers=headers)
        except httpx.InvalidURL as exc:
            return Attempt(Verdict.REFUSED, f"invalid webhook URL: {exc}")
        except httpx.HTTPError as exc:
            return Attempt(Verdict.RETRY, f"{type(exc).__name__}: {exc}")
        reason = f"HTTP {answer.status_code}"
        if answer.is_success:
            return Attempt(Verdict.DELIVERED, reason)
        if answer.is_client_error and answer.status_code not in _RETRYABLE_4XX:
            return Attempt(Verdict.REFUSED, reason)
        return Attempt(Verdict.RETRY, reason)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()
