"""The fan-out process (``gridwire cloud fanout``): its settings and its run, until stopped."""

from __future__ import annotations

import asyncio
import logging

from pydantic import Field

from cloud.fanout.access import ReadingAccess
from cloud.fanout.confirmations import Confirmations
from cloud.fanout.consumer import Delivery, FanoutConsumer
from cloud.ingest.checks import catalogue_check
from cloud.ingest.senders import KnownSenders, UnknownSenders
from cloud.runtime import database_engine, influx_store, metrics_registry, mqtt_session, session_metrics
from cloud.settings import CloudSettings, InfluxSettings, Section

log = logging.getLogger(__name__)


class FanoutOptions(Section):
    """The fan-out's own settings (``GRIDWIRE_FANOUT_*``)."""

    # How long the broker keeps this process's session (and its share of the readings) while it
    # is away; restarted with the same client id within it, it carries on where it stopped.
    session_expiry: int = Field(default=300, ge=0)
    # Readings held at once waiting for ingest's confirmation (the broker's max_inflight_messages caps it).
    receive_maximum: int = Field(default=1000, ge=1, le=65535)
    # How often the registry's authorisations are read again: a revoked authorisation stops
    # the stream within this many seconds (plus one read of the registry).
    access_refresh_seconds: float = Field(default=5.0, gt=0)
    # Seconds to wait for ingest's confirmation before looking the reading up in InfluxDB, and
    # how long to go on looking (then it is not republished: ingest refused it, or is down).
    confirm_wait: float = Field(default=30.0, gt=0)
    confirm_timeout: float = Field(default=300.0, gt=0)
    # Seconds a republished reading may wait in an offline app's queue (MQTT message expiry):
    # an app away longer loses the older live values, never ingest's throughput, and reads them
    # from the API. A retained value goes too once its meter has sent nothing for this long.
    message_expiry: int = Field(default=3600, ge=1)
    # Organisations whose apps get each meter's last live reading retained (["*"]: all), as JSON.
    retained: list[str] = Field(default_factory=list)
    # Per organisation, the only property ids its apps receive, as JSON ({"org": ["1-0:1.8.0"]}).
    properties: dict[str, list[str]] = Field(default_factory=dict)
    # The same checks ingest applies (GRIDWIRE_INGEST_CATALOGUE_CHECK, _UNKNOWN_SENDERS): a
    # reading ingest dead-letters is not republished.
    catalogue_check: bool = True
    unknown_senders: UnknownSenders = UnknownSenders.REFUSE

    def delivery(self) -> Delivery:
        return Delivery(retained=frozenset(self.retained),
                        properties={org: frozenset(ids) for org, ids in self.properties.items()},
                        message_expiry=self.message_expiry)


class FanoutSettings(CloudSettings):
    """Where the fan-out reads readings and confirmations (broker), authorisations (database)
    and, when a confirmation went by unseen, the readings themselves (InfluxDB)."""

    influx: InfluxSettings = Field(default_factory=InfluxSettings)
    fanout: FanoutOptions = Field(default_factory=FanoutOptions)


async def run_fanout(settings: FanoutSettings, stop: asyncio.Event, *, ready: asyncio.Event | None = None) -> None:
    """Connect, subscribe, and republish stored readings until ``stop``; ``ready`` once subscribed."""
    options = settings.fanout
    async with metrics_registry("fanout", settings.metrics) as registry:
        engine = database_engine("fanout", settings.database)
        store = influx_store(settings.influx)
        access = ReadingAccess(engine=engine, refresh_seconds=options.access_refresh_seconds)
        senders = (KnownSenders(engine=engine) if options.unknown_senders is UnknownSenders.REFUSE else None)
        session = mqtt_session("fanout", settings.mqtt, receive_maximum=options.receive_maximum,
                               session_expiry=options.session_expiry)
        consumer = FanoutConsumer(session=session, access=access, confirmations=Confirmations(),
                                  find_reading=store.find_reading, delivery=options.delivery(),
                                  checks=(catalogue_check(),) if options.catalogue_check else (),
                                  senders=senders, confirm_wait=options.confirm_wait,
                                  confirm_timeout=options.confirm_timeout, name=session.client_id)
        if settings.metrics.port is not None:
            session_metrics(registry, session)
            registry.counter_fn("gridwire_fanout_delivered", "Readings published to organisations' apps",
                                lambda: consumer.delivered)
            registry.counter_fn("gridwire_fanout_skipped", "Meter messages not republished (refused or not stored)",
                                lambda: consumer.skipped)
        try:
            await access.refresh()  # the registry must be migrated: republishing to nobody is no default
            if senders is not None:
                await senders.refresh()
            consumer.route()
            await session.connect()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(access.run(stop), name=f"fanout-access-{session.client_id}")
                if senders is not None:
                    tg.create_task(senders.run(stop), name=f"fanout-senders-{session.client_id}")
                await consumer.start()
                if ready is not None:
                    ready.set()
                await stop.wait()
                await session.drain(timeout=10.0)
        finally:
            log.info("fanout %s: %d readings republished in %d messages, %d not republished", session.client_id,
                     consumer.readings, consumer.delivered, consumer.skipped)
            await session.close()
            await store.aclose()
            await engine.dispose()
