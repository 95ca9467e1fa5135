"""The ingest process (``gridwire cloud ingest``): its settings and its run, until stopped."""

from __future__ import annotations

import asyncio
import logging

from pydantic import Field

from broker.metrics import Registry
from cloud.deadletters import DeadLetterStore
from cloud.ingest.batcher import WriteBatcher
from cloud.ingest.checks import catalogue_check
from cloud.ingest.consumer import IngestConsumer
from cloud.ingest.metrics import IngestMetrics
from cloud.ingest.omdp_reference import ReferenceAdapter, registry_lookup
from cloud.ingest.senders import KnownSenders, UnknownSenders
from cloud.registry import Registry
from cloud.runtime import database_engine, influx_store, metrics_registry, mqtt_session, session_metrics
from cloud.settings import CloudSettings, InfluxSettings, Section
from cloud.store.influx import InfluxStore

log = logging.getLogger(__name__)


class IngestOptions(Section):
    """Ingest's own settings (``GRIDWIRE_INGEST_*``)."""

    # How long the broker keeps this process's session while it is away. Within it, a restart
    # with the same client id resumes the session and gets back the messages it held. The
    # broker goes on giving an absent session its turn in the shared subscription, so one
    # that never comes back would hold 1/N of the stream until expiry; after expiry the broker
    # drops the session and the concentrators' outboxes send again what was never confirmed.
    session_expiry: int = Field(default=300, ge=0)
    # Messages the broker may send before ingest acknowledges them (larger than mqtt.inflight:
    # ingest acknowledges a batch at a time). The broker's max_inflight_messages (1000) caps it.
    receive_maximum: int = Field(default=500, ge=1, le=65535)
    # One write body per batch; a write in flight while the next batch fills.
    batch_readings: int = Field(default=20_000, ge=1)
    batch_delay: float = Field(default=0.1, gt=0)
    # Writes to InfluxDB in flight at once, each with its own batch.
    writes_in_flight: int = Field(default=1, ge=1, le=16)
    # Dead-letter readings the OMDP catalogue does not allow (unknown property, wrong unit).
    catalogue_check: bool = True
    # Readings from a concentrator or meter the registry does not know, or from a meter of
    # another concentrator: ``refuse`` (dead letters, with the reason) or ``accept`` (stored
    # anyway, for commissioning a fleet before it is registered).
    unknown_senders: UnknownSenders = UnknownSenders.REFUSE
    # How often ingest reads the registry's changed devices into its view of known senders
    # (a sender it does not know makes it look at once).
    senders_refresh_seconds: float = Field(default=5.0, gt=0)


class IngestSettings(CloudSettings):
    """Where ingest reads from (broker) and writes to (InfluxDB; dead letters in the database)."""

    influx: InfluxSettings = Field(default_factory=InfluxSettings)
    ingest: IngestOptions = Field(default_factory=IngestOptions)


async def run_ingest(settings: IngestSettings, stop: asyncio.Event, *, ready: asyncio.Event | None = None) -> None:
    """Connect, subscribe, and store readings until ``stop`` is set; ``ready`` once subscribed."""
    async with metrics_registry("ingest", settings.metrics) as registry:
        await _run(settings, stop, ready, registry)


async def _run(settings: IngestSettings, stop: asyncio.Event, ready: asyncio.Event | None,
               registry: Registry) -> None:
    options = settings.ingest
    # Metrics off (no port): not even counted, so they cost nothing (bench/ingest.py --metrics off,on).
    metrics = IngestMetrics(registry) if settings.metrics.port is not None else None
    store = influx_store(settings.influx, batch_size=options.batch_readings)
    # One engine for dead letters, the registry view and the reference-format lookups (the
    # dead-letter store disposes it).
    engine = database_engine("ingest", settings.database)
    dead_letters = DeadLetterStore(engine=engine)
    # Concentrators set to send the OMDP reference format are looked up in the registry.
    reference = ReferenceAdapter(lookup=registry_lookup(Registry(engine=engine)))
    senders = (KnownSenders(engine=engine, refresh_seconds=options.senders_refresh_seconds)
               if options.unknown_senders is UnknownSenders.REFUSE else None)
    session = mqtt_session("ingest", settings.mqtt, dead_letters=dead_letters,
                           receive_maximum=options.receive_maximum, session_expiry=options.session_expiry,
                           payload_views=True)
    batcher = WriteBatcher(write=store.write_lines, max_readings=options.batch_readings,
                           max_delay=options.batch_delay, max_writes=options.writes_in_flight, metrics=metrics)
    checks = (catalogue_check(),) if options.catalogue_check else ()
    consumer = IngestConsumer(session=session, batcher=batcher, dead_letters=dead_letters,
                              name=session.client_id, checks=checks, metrics=metrics, translate=reference,
                              senders=senders)
    if metrics is not None:
        metrics.watch(consumer=consumer, batcher=batcher)
        session_metrics(registry, session)
    signal: asyncio.Task[None] | None = None
    try:
        await dead_letters.create_schema()
        if senders is not None:
            await senders.refresh()  # the registry must be migrated: refusing every reading is no default
        else:
            log.warning("ingest: GRIDWIRE_INGEST_UNKNOWN_SENDERS=accept: readings from senders the registry "
                        "does not know are stored (commissioning only)")
        if settings.influx.create_database:
            await _ensure_database(store)
        await session.connect()
        log.info("ingest %s: reading from %s:%d into %s/%s", session.client_id, settings.mqtt.host,
                 settings.mqtt.port, settings.influx.url, settings.influx.database)
        if ready is not None:
            signal = asyncio.get_running_loop().create_task(_signal_when(consumer.ready, ready),
                                                            name=f"ingest-ready-{session.client_id}")
        await consumer.run(stop)
    finally:
        log.info("ingest %s: stored %d messages (%d readings in %d writes, %d retries), dead-lettered %d",
                 session.client_id, consumer.stored_messages, batcher.written, batcher.batches,
                 batcher.retries, consumer.dead_lettered)
        if signal is not None:
            signal.cancel()
        await session.close()
        await store.aclose()
        await dead_letters.aclose()


async def _signal_when(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


async def _ensure_database(store: InfluxStore) -> None:
    from cloud.store.errors import StoreUnavailable

    delay = 0.2
    while True:
        try:
            await store.ensure_database()
            return
        except StoreUnavailable as exc:
            log.warning("InfluxDB not ready (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
