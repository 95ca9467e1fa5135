"""Run one domain process: the domain consumer(s) and the results consumer with webhooks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from cloud.core.commands import CommandStore
from cloud.core.service import BrokerLogin
from cloud.domains.catalogue import DOMAINS
from cloud.domains.consumer import DomainConsumer
from cloud.notify.consumer import ResultsConsumer
from cloud.notify.webhook import WebhookSender
from cloud.registry import Registry

log = logging.getLogger(__name__)


async def run_domain(stop: asyncio.Event, *, registry_url: str, broker: BrokerLogin,
                     domains: Sequence[str] | None = None, results: bool = True,
                     client_id: str | None = None) -> None:
    """Serve ``domains`` (all by default) and, unless ``results`` is False, the results path."""
    chosen = [DOMAINS[name] for name in (domains or DOMAINS)]
    async with Registry(url=registry_url) as registry, broker.session("domain", client_id=client_id) as session:
        store = CommandStore(registry.engine)
        webhooks = WebhookSender(engine=registry.engine)
        try:
            await DomainConsumer(session=session, store=store, domains=chosen).start()
            if results:
                await ResultsConsumer(session=session, store=store, webhooks=webhooks, domains=DOMAINS.values()).start()
            log.info("domain consumer %s serving %s", session.client_id, ", ".join(d.name for d in chosen))
            await stop.wait()
        finally:
            await webhooks.close()
