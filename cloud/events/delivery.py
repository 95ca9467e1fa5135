"""Events monitoring raises itself, served like device events: the subscriptions' channels.

The monitor (CONCENTRATOR_OFFLINE, DEVICE_OFFLINE, ...) and the time service (CLOCK_DRIFT) sit
below this package; the platform hands them :func:`subscription_deliveries`, so each event they
raise reaches every subscribed organisation allowed RECEIVE_EVENTS on the device on the channels
its subscription names: its apps' topic and its webhook, through the durable webhook outbox
(under the delivery key ``event:{eventId}:{org}``) that the domain processes' delivery loops send.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cloud.events.notifier import EventNotifier
from cloud.events.store import EventStore
from cloud.monitoring.events import MonitoringEvent
from cloud.monitoring.notifier import Deliver, Publisher
from cloud.notify.webhook import WebhookSender
from cloud.registry import Registry


@asynccontextmanager
async def subscription_deliveries(publisher: Publisher, registry: Registry) -> AsyncIterator[Deliver | None]:
    """A Deliver serving event subscriptions (app topic, webhook outbox) for the process's life;
    the event is marked notified once served."""
    webhooks = WebhookSender(engine=registry.engine)
    store = EventStore(registry.engine)
    notifier = EventNotifier(store=store, registry=registry, publisher=publisher, webhooks=webhooks)

    async def deliver(event: MonitoringEvent) -> set[str]:
        served = await notifier.notify(event)
        await store.mark_notified(event)
        return served

    try:
        yield deliver
    finally:
        await webhooks.close()
