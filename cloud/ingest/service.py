"""The ingest service as a process: settings from ``GRIDWIRE_*`` variables, run until stopped."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from broker.session import MqttSession
from cloud.deadletters import DeadLetterStore
from cloud.ingest.batcher import WriteBatcher
from cloud.ingest.checks import catalogue_check
from cloud.ingest.consumer import IngestConsumer
from cloud.store.influx import InfluxStore

log = logging.getLogger(__name__)


class IngestSettings(BaseSettings):
    """Where ingest reads from and writes to; e.g. ``GRIDWIRE_MQTT_HOST``, ``GRIDWIRE_INFLUX_URL``."""

    model_config = SettingsConfigDict(env_prefix="GRIDWIRE_", extra="ignore")

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str = "gridwire-cloud"
    mqtt_password: SecretStr | None = None
    # Set it per instance and keep it across restarts (ingest-1, ingest-2, ...) so a restart
    # resumes the durable session; the default (host and pid) is unique but new each start.
    ingest_client_id: str = Field(default_factory=lambda: f"ingest-{socket.gethostname()}-{os.getpid()}")
    # How long the broker keeps this process's session while it is away. Within it, a restart
    # with the same client id resumes the session and gets back the messages it held. The
    # broker goes on giving an absent session its turn in the shared subscription, so one
    # that never comes back would hold 1/N of the stream until expiry; after expiry the broker
    # drops the session and the concentrators' outboxes send again what was never confirmed.
    ingest_session_expiry: int = Field(default=300, ge=0)
    # The broker's max_inflight_messages (1000) caps this further.
    ingest_receive_maximum: int = Field(default=500, ge=1, le=65535)
    # One write body per batch; a write in flight while the next batch fills.
    ingest_batch_readings: int = Field(default=20_000, ge=1)
    ingest_batch_delay: float = Field(default=0.1, gt=0)
    # Writes to InfluxDB in flight at once, each with its own batch.
    ingest_writes_in_flight: int = Field(default=1, ge=1, le=16)
    influx_url: str = "http://127.0.0.1:8086"
    influx_database: str = "gridwire"
    influx_username: str | None = None
    influx_password: SecretStr | None = None
    influx_token: SecretStr | None = None
    database_url: str = "sqlite+aiosqlite:///var/gridwire.sqlite"
    # Dead-letter readings the OMDP catalogue does not allow (unknown property, wrong unit).
    ingest_catalogue_check: bool = True


async def run_ingest(settings: IngestSettings, stop: asyncio.Event, *, ready: asyncio.Event | None = None) -> None:
    """Connect, subscribe, and store readings until ``stop`` is set."""
    store = InfluxStore(url=settings.influx_url, database=settings.influx_database,
                        username=settings.influx_username,
                        password=settings.influx_password.get_secret_value() if settings.influx_password else None,
                        token=settings.influx_token.get_secret_value() if settings.influx_token else None,
                        batch_size=settings.ingest_batch_readings)
    dead_letters = DeadLetterStore.from_url(settings.database_url)
    session = MqttSession(client_id=settings.ingest_client_id, host=settings.mqtt_host, port=settings.mqtt_port,
                          username=settings.mqtt_username,
                          password=settings.mqtt_password.get_secret_value() if settings.mqtt_password else None,
                          receive_maximum=settings.ingest_receive_maximum,
                          session_expiry=settings.ingest_session_expiry, payload_views=True)
    batcher = WriteBatcher(write=store.write_lines, max_readings=settings.ingest_batch_readings,
                           max_delay=settings.ingest_batch_delay, max_writes=settings.ingest_writes_in_flight)
    checks = (catalogue_check(),) if settings.ingest_catalogue_check else ()
    consumer = IngestConsumer(session=session, batcher=batcher, dead_letters=dead_letters,
                              name=settings.ingest_client_id, checks=checks)
    try:
        await dead_letters.create_schema()
        await _ensure_database(store)
        await session.connect()
        log.info("ingest %s: reading from %s:%d into %s/%s", settings.ingest_client_id, settings.mqtt_host,
                 settings.mqtt_port, settings.influx_url, settings.influx_database)
        if ready is not None:
            asyncio.get_running_loop().create_task(_signal_when(consumer.ready, ready))
        await consumer.run(stop)
    finally:
        log.info("ingest %s: stored %d messages (%d readings in %d writes, %d retries), dead-lettered %d",
                 settings.ingest_client_id, consumer.stored_messages, batcher.written, batcher.batches,
                 batcher.retries, consumer.dead_lettered)
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
