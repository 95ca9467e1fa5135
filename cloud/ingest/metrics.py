"""Ingest's Prometheus metrics: counted per write, never per reading.

Readings, messages, writes and retries are counts the batcher and the consumer keep anyway, read
at scrape time. Per write the batcher observes three histograms: its size, its latency, and the
lag of its first reading (reading time to stored: the reading that waited longest in the batch
is usually the oldest). Dead letters are counted by a reason class, never by meter or concentrator.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from broker.metrics import SIZE_BUCKETS, Registry


class _Batcher(Protocol):
    written: int
    batches: int
    retries: int

    @property
    def pending(self) -> int: ...


class _Consumer(Protocol):
    stored_messages: int

# Lag: from seconds (live) to days (a backfill after a long outage).
LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0)
# Dead-letter reasons by class: the reason text itself names the meter and is unbounded.
REASONS = ("store_rejected", "catalogue", "topic", "invalid")


def reason_class(reason: str) -> str:
    """The bounded label for a dead-letter reason."""
    if reason.startswith("unknown sender"):
        return "unknown_sender"
    if reason.startswith("store rejected"):
        return "store_rejected"
    if "catalogue" in reason or "unit" in reason or "operational property" in reason:
        return "catalogue"
    if "topic" in reason:
        return "topic"
    return "invalid"


class IngestMetrics:
    """What ingest exposes; :meth:`written` is the batcher's one call per write."""

    def __init__(self, registry: Registry) -> None:
        self._batch = registry.histogram("gridwire_ingest_batch_readings", "Readings per InfluxDB write",
                                         buckets=SIZE_BUCKETS)
        self._write = registry.histogram("gridwire_ingest_write_seconds", "Duration of one InfluxDB write")
        self._lag = registry.histogram("gridwire_ingest_lag_seconds",
                                       "Reading time to stored, of the first reading of each write",
                                       buckets=LAG_BUCKETS)
        self._last_lag = registry.gauge("gridwire_ingest_lag_last_seconds", "The lag of the last write's first reading")
        self._dead = registry.counter("gridwire_ingest_dead_letters", "Messages dead-lettered, by reason class",
                                      ["reason"], max_series=len(REASONS))
        self._registry = registry

    def watch(self, *, consumer: _Consumer, batcher: _Batcher) -> None:
        """Expose the counts ``consumer`` and ``batcher`` keep."""
        r = self._registry
        r.counter_fn("gridwire_ingest_readings", "Readings stored", lambda: batcher.written)
        r.counter_fn("gridwire_ingest_writes", "InfluxDB writes that succeeded", lambda: batcher.batches)
        r.counter_fn("gridwire_ingest_write_retries", "InfluxDB writes retried (store unavailable)",
                     lambda: batcher.retries)
        r.counter_fn("gridwire_ingest_messages", "MQTT messages stored", lambda: consumer.stored_messages)
        r.gauge_fn("gridwire_ingest_pending_readings", "Readings waiting for a write", lambda: batcher.pending)

    def written(self, lines: Sequence[str], seconds: float) -> None:
        self._batch.observe(len(lines))
        self._write.observe(seconds)
        if lines:
            stamp = lines[0].rpartition(" ")[2]
            if stamp.isdigit():
                lag = max(0.0, time.time() - int(stamp) / 1e9)
                self._lag.observe(lag)
                self._last_lag.set(lag)

    def dead_lettered(self, reason: str) -> None:
        self._dead.labels(reason_class(reason)).inc()
