"""Run one domain process: the domain consumer(s), the results consumer and the webhook delivery loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from cloud.core.commands import CommandStore
from cloud.core.service import BrokerLogin, open_registry
from cloud.domains.catalogue import DOMAINS
from cloud.domains.consumer import DomainConsumer
from cloud.notify.consumer import ResultsConsumer
from cloud.notify.delivery import DeliveryPolicy, WebhookDelivery
from cloud.notify.webhook import WebhookSender

log = logging.getLogger(__name__)


async def run_domain(stop: asyncio.Event, *, registry_url: str, broker: BrokerLogin,
                     domains: Sequence[str] | None = None, results: bool = True,
                     client_id: str | None = None, engine_options: Mapping[str, Any] | None = None,
                     ready: asyncio.Event | None = None, webhook_policy: DeliveryPolicy = DeliveryPolicy()) -> None:
    """Serve ``domains`` (all by default) and, unless ``results`` is False, the results path and the
    webhook delivery loop (which also sends what stopped or crashed processes left in the outbox);
    ``ready`` is set once subscribed."""
    chosen = [DOMAINS[name] for name in (domains or DOMAINS)]
    async with open_registry(registry_url, engine_options) as registry, \
            broker.session("domain", client_id=client_id) as session:
        store = CommandStore(registry.engine)
        webhooks = WebhookSender(engine=registry.engine)
        delivery = WebhookDelivery(sender=webhooks, policy=webhook_policy, worker=session.client_id)
        try:
            await DomainConsumer(session=session, store=store, domains=chosen).start()
            if results:
                await ResultsConsumer(session=session, store=store, webhooks=webhooks, domains=DOMAINS.values()).start()
                delivery.start()
            log.info("domain consumer %s serving %s", session.client_id, ", ".join(d.name for d in chosen))
            if ready is not None:
                ready.set()
            await stop.wait()
        finally:
            await delivery.close()
            await webhooks.close()
