"""The processing process (``gridwire cloud processing``): its settings and its run, until stopped."""

from __future__ import annotations

import asyncio
import logging

from pydantic import Field

from broker.metrics import Registry as MetricsRegistry
from cloud.catalogue import default_catalogue
from cloud.ingest.senders import KnownSenders, UnknownSenders
from cloud.processing.consumer import ProcessingConsumer
from cloud.processing.facts import MeterFacts, MeterLocks
from cloud.processing.processor import Processor
from cloud.processing.rules import Thresholds
from cloud.processing.series import Estimation
from cloud.processing.store import ProcessingStore
from cloud.runtime import connected, influx_store, metrics_registry, session_metrics
from cloud.settings import CloudSettings, ConsumptionSettings, InfluxSettings, ProcessingOptions

log = logging.getLogger(__name__)


class ProcessingSettings(CloudSettings):
    """Where processing reads (broker, registry database) and writes (InfluxDB)."""

    influx: InfluxSettings = Field(default_factory=InfluxSettings)
    processing: ProcessingOptions = Field(default_factory=ProcessingOptions)
    consumption: ConsumptionSettings = Field(default_factory=ConsumptionSettings)


async def run_processing(settings: ProcessingSettings, stop: asyncio.Event, *,
                         ready: asyncio.Event | None = None) -> None:
    """Connect, subscribe, and process readings until ``stop`` is set; ``ready`` once subscribed."""
    options = settings.processing
    async with metrics_registry("processing", settings.metrics) as metrics, \
            connected("processing", settings, session_expiry=options.session_expiry) as (session, registry):
        session_metrics(metrics, session)
        store = influx_store(settings.influx)
        processor = Processor(store=ProcessingStore(store), facts=MeterFacts(registry.engine),
                              locks=MeterLocks(registry.engine), catalogue=default_catalogue(),
                              estimation=Estimation.of(options), thresholds=Thresholds.of(options),
                              zone=settings.consumption.zone())
        senders = (KnownSenders(engine=registry.engine, refresh_seconds=options.senders_refresh_seconds)
                   if options.unknown_senders == UnknownSenders.REFUSE else None)
        consumer = ProcessingConsumer(session=session, processor=processor, name=session.client_id, senders=senders)
        _watch(metrics, consumer, processor)
        try:
            async with asyncio.TaskGroup() as tasks:
                if senders is not None:
                    await senders.refresh()  # the registry must be migrated
                    # Returns once stop is set.
                    tasks.create_task(senders.run(stop), name=f"processing-senders-{session.client_id}")
                await consumer.start()
                if ready is not None:
                    ready.set()
                await stop.wait()
                await session.drain(timeout=30.0)
        finally:
            log.info("processing %s: %d messages (%d register values, %d failed validation), %d skipped",
                     session.client_id, consumer.messages, processor.values, processor.failed, consumer.skipped)
            await store.aclose()


def _watch(metrics: MetricsRegistry, consumer: ProcessingConsumer, processor: Processor) -> None:
    """Processing's counts, read at each scrape (labels bounded: two results, six rules)."""
    metrics.counter_fn("gridwire_processing_messages", "Meter messages processed",
                       lambda: {(): float(consumer.messages)})
    metrics.counter_fn("gridwire_processing_skipped", "Meter messages skipped (ingest refuses them too)",
                       lambda: {(): float(consumer.skipped)})
    metrics.counter_fn("gridwire_processing_values", "Register values judged, by result",
                       lambda: {("measured",): float(processor.values - processor.failed),
                                ("failed_validation",): float(processor.failed)}, labels=["result"])
    metrics.counter_fn("gridwire_processing_failed_rules", "Validation rules failed, by rule",
                       lambda: {(rule,): float(n) for rule, n in processor.failed_by_rule.items()}, labels=["rule"])
