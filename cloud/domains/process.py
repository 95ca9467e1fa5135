"""Run one domain process: the domain consumers, the results consumer, the device event consumer,
the keepers of schedules devices hold themselves and the webhook delivery loop."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from pydantic import Field

from broker.session import Backoff, MqttSession
from cloud.domains.catalogue import DOMAINS
from cloud.domains.consumer import DomainConsumer
from cloud.domains.concentrator_schedules import ConcentratorScheduleKeeper
from cloud.domains.device_schedules import DeviceScheduleState, DeviceScheduleStore, Resend
from cloud.domains.metrics import DomainMetrics
from cloud.domains.publiclighting.keeper import LightScheduleKeeper
from cloud.domains.requests import RequestStore
from cloud.domains.results_consumer import ResultsConsumer
from cloud.domains.submit import Submitter
from cloud.deadletters import DeadLetterStore
from cloud.events import DeviceEventConsumer, EventNotifier, EventStore
from cloud.notify.delivery import DeliveryPolicy, WebhookDelivery
from cloud.notify.webhook import WebhookSender
from cloud.registry import Registry, webhook_secrets
from cloud.runtime import connected, metrics_registry, session_metrics
from cloud.settings import CloudSettings, Section

log = logging.getLogger(__name__)


# The wait before a webhook's second attempt; later waits double up to backoff_max_seconds.
WEBHOOK_FIRST_WAIT = 1.0


class WebhookOptions(Section):
    """Webhook delivery (``GRIDWIRE_WEBHOOK_*``): a notification is tried ``max_attempts`` times over
    about an hour (backoff doubling from 1 s to ``backoff_max_seconds``); delivered ones are
    deleted from the outbox after ``retention_hours``."""

    max_attempts: int = Field(default=15, ge=1)
    # At least the first wait: a Backoff refuses a ceiling below its start, and the process
    # would stop at start-up instead of naming the setting.
    backoff_max_seconds: float = Field(default=600.0, ge=WEBHOOK_FIRST_WAIT)
    retention_hours: float = Field(default=24.0, gt=0)

    def policy(self) -> DeliveryPolicy:
        return DeliveryPolicy(max_attempts=self.max_attempts,
                              backoff=Backoff(initial=WEBHOOK_FIRST_WAIT, maximum=self.backoff_max_seconds),
                              retention=timedelta(hours=self.retention_hours))


def resend_as_requested(*, session: MqttSession, registry: Registry, requests: RequestStore) -> Resend:
    """Sends a kept schedule again as a functional request of the organisation that set it
    (authorised again, recorded, with its own result URL and notification)."""

    async def resend(state: DeviceScheduleState) -> str:
        submitter = Submitter(org=state.organisation, registry=registry, requests=requests, mqtt=session)
        accepted = await submitter.submit(DOMAINS[state.domain], state.operation, state.device, state.parameters)
        return str(accepted.correlation_id)

    return resend


class DomainSettings(CloudSettings):
    """What a domain process reads: broker, database, the sealing key ring (the webhook secrets
    it signs with) and webhook delivery."""

    webhook: WebhookOptions = Field(default_factory=WebhookOptions)


async def run_domain(settings: DomainSettings, stop: asyncio.Event, *, ready: asyncio.Event | None = None) -> None:
    """Serve every domain, the results path and the webhook delivery loop (which also sends what
    stopped or crashed processes left in the outbox) until ``stop``; ``ready`` is set once subscribed."""
    sealing = settings.sealing()  # a malformed key refuses before anything starts
    async with metrics_registry("domain", settings.metrics) as metrics, \
            connected("domain", settings) as (session, registry):
        # The delivery loop signs with the webhook secrets: refuse to start unable to open them.
        await webhook_secrets.check_ring(registry.engine, sealing)
        session_metrics(metrics, session)
        requests = RequestStore(registry.engine)
        webhooks = WebhookSender(engine=registry.engine, sealing=sealing)
        delivery = WebhookDelivery(sender=webhooks, policy=settings.webhook.policy(), worker=session.client_id)
        results = ResultsConsumer(session=session, requests=requests, webhooks=webhooks, domains=DOMAINS.values(),
                                  metrics=DomainMetrics(metrics))
        try:
            await DomainConsumer(session=session, requests=requests, domains=DOMAINS.values()).start()
            await results.start()
            # Device events from the concentrators: stored once, to subscribers' topics and webhooks.
            events, dead_letters = EventStore(registry.engine), DeadLetterStore(engine=registry.engine)
            await dead_letters.create_schema()
            await DeviceEventConsumer(session=session, store=events, dead_letters=dead_letters,
                                      notifier=EventNotifier(store=events, registry=registry, publisher=session,
                                                             webhooks=webhooks)).start()
            # Lights that come back without the schedule they should keep get it again, and so do
            # the devices behind a concentrator that connects.
            schedules = DeviceScheduleStore(registry.engine)
            resend = resend_as_requested(session=session, registry=registry, requests=requests)
            await LightScheduleKeeper(session=session, store=schedules, resend=resend).start()
            await ConcentratorScheduleKeeper(session=session, store=schedules, requests=requests, registry=registry,
                                             resend=resend).start()
            delivery.start()
            log.info("domain consumer %s serving %s", session.client_id, ", ".join(DOMAINS))
            if ready is not None:
                ready.set()
            await stop.wait()
        finally:
            await results.close()
            await delivery.close()
            await webhooks.close()
