"""The core's Prometheus metrics: commands by final status and operation, their round trip
(accepted to final) per operation, retries. Operations are the generic command names the core
knows (a bounded set); never a device or an organisation."""

from __future__ import annotations

from datetime import UTC, datetime

from broker.metrics import Registry
from cloud.core.functions import function_of

UNKNOWN = "unknown"


def operation(name: str) -> str:
    """The label for a command name: itself if the core knows it, else ``unknown``."""
    return name if function_of(name) is not None else UNKNOWN


class CoreMetrics:
    """Counted once per command outcome or retry (not per message)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._outcomes = registry.counter("gridwire_core_commands", "Commands ended, by final status and operation",
                                          ["status", "operation"])
        self._latency = registry.histogram("gridwire_core_command_seconds",
                                           "Accepted to final outcome, per operation", ["operation"])
        self._retries = registry.counter("gridwire_core_command_retries", "Attempts queued again after a "
                                         "transient failure", ["operation"])

    def finished(self, name: str, status: str, created_at: datetime, now: datetime) -> None:
        op = operation(name)
        self._outcomes.labels(status, op).inc()
        if created_at.tzinfo is None:
            created_at = created_at.replace(tzinfo=UTC)
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        self._latency.labels(op).observe(max(0.0, (now - created_at).total_seconds()))

    def retried(self, name: str) -> None:
        self._retries.labels(operation(name)).inc()
