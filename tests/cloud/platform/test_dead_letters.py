"""A cloud process's session dead-letters a message its handler keeps failing on into the
process's database, but never one that fails only because a collaborator (InfluxDB,
PostgreSQL) is down: that one waits and is stored once the collaborator is back. On the real
broker, influxd and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import sqlalchemy as sa

from broker.backoff import Backoff
from broker.errors import Invalid
from broker.schemas import MeterReading
from broker.session import Message
from cloud.deadletters import DeadLetterStore
from cloud.migrations import migrate
from cloud.registry.db import create_engine
from cloud.runtime import connected, mqtt_session
from cloud.store import InfluxStore, ReadingQuery
from tests.cloud.platform.test_platform import cloud_login, platform_settings
from tests.cloud.store.factories import T0, reading
from tests.fixtures.influx import InfluxServer
from tests.fixtures.ingest import concentrator_session
from tests.fixtures.mosquitto import MosquittoServer
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.relay import TcpRelay
from tests.fixtures.waiting import wait_for

FAST = Backoff(initial=0.02, maximum=0.2)
DELIVERIES = 2  # the cap: a message failing for its own sake is given up on after this many


def _topic(meter: str) -> str:
    return f"concentrator/conc-1/smartMeterMessage/{meter}/meterReading"


async def _publish(broker: MosquittoServer, topic: str, *payloads: bytes) -> None:
    async with concentrator_session(broker) as conc:
        for payload in payloads:
            await conc.publish(topic, payload)


async def test_a_poison_message_is_dead_lettered_once_and_the_consumer_keeps_working(
        shared_mosquitto: MosquittoServer, tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    await migrate(url)
    settings = platform_settings(shared_mosquitto, url, mqtt=cloud_login(shared_mosquitto,
                                                                         client_id=f"sched-{uuid.uuid4().hex[:6]}"))
    topic = _topic(f"poison-{uuid.uuid4().hex[:6]}")
    handled: list[bytes] = []

    async def handler(message: Message) -> None:
        handled.append(bytes(message.payload))
        if message.payload == b"poison":
            raise Invalid("not a reading at all")

    async with connected("scheduler", settings, max_deliveries=DELIVERIES, backoff=FAST) as (session, registry):
        await session.subscribe(topic, handler)
        await _publish(shared_mosquitto, topic, b"poison", b"good")
        await wait_for(lambda: b"good" in handled, what="the message after the poison handled")
        await wait_for(lambda: session.dead_lettered == 1, what="the poison dead-lettered")
        letters = await DeadLetterStore(engine=registry.engine).list()
        await _publish(shared_mosquitto, topic, b"after")
        await wait_for(lambda: b"after" in handled, what="a later message handled")
        assert await DeadLetterStore(engine=registry.engine).count() == 1
    assert handled.count(b"poison") == DELIVERIES
    [letter] = letters
    assert (letter.topic, letter.payload, letter.consumer) == (topic, "poison", "scheduler")
    assert f"failed on {DELIVERIES} deliveries" in letter.reason and "Invalid: not a reading at all" in letter.reason


async def _waits_for_its_collaborator(broker: MosquittoServer, dead_letters: DeadLetterStore, payload: bytes, *,
                                      handle: Callable[[Message], Awaitable[None]],
                                      outage: Callable[[], Awaitable[None]], back: Callable[[], Awaitable[None]],
                                      stored: Callable[[], Awaitable[bool]]) -> list[str]:
    """Publish one message while ``outage`` holds; it is tried more often than the cap, never
    dead-lettered, and ``stored`` once ``back`` ends the outage. Returns each failure's type."""
    topic = _topic(f"waits-{uuid.uuid4().hex[:6]}")
    failures: list[str] = []
    done = asyncio.Event()

    async def handler(message: Message) -> None:
        try:
            await handle(message)
        except Exception as exc:
            failures.append(type(exc).__name__)
            raise
        done.set()

    session = mqtt_session("ingest", cloud_login(broker, client_id=f"waits-{uuid.uuid4().hex[:6]}"),
                           dead_letters=dead_letters, max_deliveries=DELIVERIES, backoff=FAST)
    session.route(topic, handler)
    async with session:
        await outage()
        await _publish(broker, topic, payload)
        await wait_for(lambda: len(failures) > 2 * DELIVERIES, what="deliveries beyond the cap")
        await back()
        await asyncio.wait_for(done.wait(), 60)
    assert await stored()
    assert session.dead_lettered == 0 and await dead_letters.count() == 0
    return failures


async def test_a_reading_failing_while_influxdb_is_down_waits_and_is_stored_once_it_is_back(
        mosquitto: MosquittoServer, influxd: InfluxServer, influx_db: str, dead_letters: DeadLetterStore) -> None:
    one = reading("M-WAITS", T0).model_dump_json(by_alias=True, exclude_none=True).encode()
    async with InfluxStore(url=influxd.url, database=influx_db, timeout=2.0) as store:

        async def write(message: Message) -> None:
            await store.write_readings([MeterReading.model_validate_json(message.payload)])

        async def stop() -> None:
            influxd.stop()

        async def start() -> None:
            influxd.start()

        async def stored() -> bool:
            return await store.count_readings(ReadingQuery(start=T0, end=T0 + timedelta(minutes=1))) == 1

        failures = await _waits_for_its_collaborator(mosquitto, dead_letters, one, handle=write, outage=stop,
                                                      back=start, stored=stored)
    assert set(failures) == {"StoreUnavailable"}


async def test_a_command_failing_while_postgresql_is_unreachable_waits_and_is_stored_once_it_is_back(
        mosquitto: MosquittoServer, postgres_server: PostgresServer, postgres_url: str,
        dead_letters: DeadLetterStore) -> None:
    table = sa.Table("received", sa.MetaData(), sa.Column("payload", sa.String(64), primary_key=True))
    # The database unreachable, as the cloud sees a network fault: connections dropped, new ones refused.
    link = TcpRelay(host=postgres_server.host, target_port=postgres_server.port)
    await link.up()
    engine = create_engine(postgres_url.replace(f":{postgres_server.port}/", f":{link.port}/"))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.create_all)

        async def insert(message: Message) -> None:
            async with engine.begin() as conn:
                await conn.execute(table.insert().values(payload=bytes(message.payload).decode()))

        async def stored() -> bool:
            async with engine.connect() as conn:
                return (await conn.execute(sa.select(table.c.payload))).scalars().all() == ["command"]

        failures = await _waits_for_its_collaborator(mosquitto, dead_letters, b"command", handle=insert,
                                                      outage=link.down, back=link.up, stored=stored)
    finally:
        await engine.dispose()
        await link.down()
    # The pooled connection found broken, then every new one refused (asyncpg's refusal raised as
    # SQLAlchemy's OperationalError by cloud.registry.db): both wait.
    assert "OperationalError" in failures and set(failures) <= {"InterfaceError", "DBAPIError", "OperationalError"}


async def test_processes_starting_together_each_make_the_dead_letter_table(postgres_url: str) -> None:
    """Every process that dead-letters makes the table on first use; on PostgreSQL two doing so
    at once used to fail one of them (both saw no table, both created it)."""
    engines = [create_engine(postgres_url) for _ in range(6)]
    try:
        stores = [DeadLetterStore(engine=engine) for engine in engines]
        await asyncio.gather(*(store.create_schema() for store in stores))
        assert await stores[0].count() == 0
    finally:
        for engine in engines:
            await engine.dispose()
