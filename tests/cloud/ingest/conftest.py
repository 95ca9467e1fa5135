"""Ingest wired to the real broker, influxd and a SQLite dead-letter store."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from broker.session import MqttSession
from cloud.deadletters import DeadLetterStore
from cloud.ingest import IngestConsumer, WriteBatcher
from cloud.store.influx import InfluxStore


@dataclass
class IngestRig:
    consumer: IngestConsumer
    store: InfluxStore
    dead_letters: DeadLetterStore
    batcher: WriteBatcher


@pytest.fixture
async def dead_letters(tmp_path) -> AsyncIterator[DeadLetterStore]:
    store = DeadLetterStore.from_url(f"sqlite+aiosqlite:///{tmp_path}/dead.sqlite")
    await store.create_schema()
    yield store
    await store.aclose()


def cloud_session(server, *, client_id: str | None = None, receive_maximum: int = 1000) -> MqttSession:
    return MqttSession(client_id=client_id or f"ingest-{uuid.uuid4().hex[:8]}", host=server.host, port=server.port,
                       receive_maximum=receive_maximum, **server.credentials("gridwire-cloud"))


def concentrator_session(server, cid: str = "conc-1") -> MqttSession:
    return MqttSession(client_id=f"{cid}-{uuid.uuid4().hex[:6]}", host=server.host, port=server.port,
                       **server.credentials(cid))


@pytest.fixture
async def ingest(mosquitto, influxd, influx_db, dead_letters) -> AsyncIterator[IngestRig]:
    store = InfluxStore(url=influxd.url, database=influx_db)
    batcher = WriteBatcher(write=store.write_readings, max_readings=500, max_delay=0.05)
    session = cloud_session(mosquitto)
    consumer = IngestConsumer(session=session, batcher=batcher, dead_letters=dead_letters)
    stop = asyncio.Event()
    await session.connect()
    task = asyncio.create_task(consumer.run(stop))
    await asyncio.wait_for(consumer.ready.wait(), 10)
    yield IngestRig(consumer=consumer, store=store, dead_letters=dead_letters, batcher=batcher)
    stop.set()
    await task
    await session.close()
    await store.aclose()
