"""Device events: stored once from the concentrators, read by history, sent to subscribers."""

from cloud.events.consumer import DeviceEventConsumer
from cloud.events.notifier import EventNotifier
from cloud.events.store import EventStore, Recorded, Subscription, monitoring_event

__all__ = ["DeviceEventConsumer", "EventNotifier", "EventStore", "Recorded", "Subscription", "monitoring_event"]
