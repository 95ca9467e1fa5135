"""The domain layer's Prometheus metrics: functional requests completed, by domain, operation and
status, and their round trip (requested to completed). Domains and operations are the catalogue's
(bounded); never a device or an organisation."""

from __future__ import annotations

from datetime import UTC, datetime

from broker.metrics import Registry


class DomainMetrics:
    """Counted once per completed request."""

    def __init__(self, registry: Registry) -> None:
        self._done = registry.counter("gridwire_domain_requests", "Functional requests completed",
                                      ["domain", "operation", "status"])
        self._latency = registry.histogram("gridwire_domain_request_seconds", "Requested to completed",
                                           ["domain", "operation"])

    def completed(self, domain: str, operation: str, status: str, created_at: datetime) -> None:
        self._done.labels(domain, operation, status).inc()
        start = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)
        self._latency.labels(domain, operation).observe(max(0.0, (datetime.now(UTC) - start).total_seconds()))
