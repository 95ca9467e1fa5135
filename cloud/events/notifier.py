"""Handing a device event to the organisations that want it and may have it.

An organisation gets an event when it subscribed to the event's type and
:func:`cloud.registry.functions.authorise` allows it RECEIVE_EVENTS on the device (MONITORING
or OWNER, an enabled organisation, a device not decommissioned). Each channel it chose is
served: its apps' topic ``app/{org}/monitoring/{eventType}`` and its webhook (through the
durable webhook outbox, under a delivery id derived from the event and the organisation, so a
repeat stores nothing new and receivers de-duplicate on ``X-Gridwire-Delivery``).
"""

from __future__ import annotations

import logging

from broker import topics
from broker.session import publish_properties
from cloud.events.store import EventStore
from cloud.monitoring.events import MONITORING_DOMAIN, MonitoringEvent
from cloud.monitoring.notifier import Publisher
from cloud.notify.webhook import WebhookSender
from cloud.registry import Registry
from cloud.registry.functions import DeviceFunction

log = logging.getLogger(__name__)


class EventNotifier:
    """Publishes and queues webhooks for one event, for every entitled subscriber."""

    def __init__(self, *, store: EventStore, registry: Registry, publisher: Publisher,
                 webhooks: WebhookSender | None) -> None:
        self.store = store
        self.registry = registry
        self.publisher = publisher
        self.webhooks = webhooks

    async def notify(self, event: MonitoringEvent) -> set[str]:
        """Serve every subscriber's channels; the organisations served."""
        served: set[str] = set()
        for sub in await self.store.subscriptions(event_type=event.event_type):
            decision = await self.registry.permission(sub.organisation, event.device_id,
                                                      DeviceFunction.RECEIVE_EVENTS)
            if not decision.allowed:
                log.info("event %s of %s not sent to %s: %s", event.event_type, event.device_id, sub.organisation,
                         decision.reason)
                continue
            payload = event.to_wire()
            if sub.mqtt:
                props = publish_properties(correlation_data=event.event_id.bytes, content_type="application/json",
                                           user_properties={"organisation": sub.organisation,
                                                            "severity": event.severity.value})
                await self.publisher.publish(topics.app_topic(sub.organisation, MONITORING_DOMAIN,
                                                              event.event_type.value), payload, qos=1, properties=props)
            if sub.webhook and self.webhooks is not None:
                await self.webhooks.submit(sub.organisation, payload, event=f"event.{event.event_type.value}",
                                           key=f"event:{event.event_id}:{sub.organisation}")
            served.add(sub.organisation)
        return served
