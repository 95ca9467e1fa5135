"""Unknown senders (issue 9 item 6): ingest as deployed refuses readings from a concentrator or
meter the registry does not know, or from a meter of another concentrator, into dead letters
with the reason; the accept mode stores them. Real ingest process, broker, influxd, SQLite registry."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from cloud.deadletters import DeadLetterStore
from cloud.ingest.senders import KnownSenders
from cloud.registry import Registry
from cloud.registry.enums import DeviceType, Protocol
from cloud.registry.schemas import DeviceCreate, DeviceUpdate
from tests.cloud.ingest.rig import Concentrator, IngestProcess, batch_payload, registered_fleet, stored_points
from tests.factories import payload
from tests.fixtures.waiting import poll_until


async def _dead(url: str) -> list[tuple[str, str]]:
    store = DeadLetterStore.from_url(url)
    try:
        letters = await store.list(limit=1000)
    finally:
        await store.aclose()
    return sorted((letter.topic, letter.reason) for letter in letters)


def _meters(influxd, database: str) -> set[str]:
    return {meter for meter, _stamp in stored_points(influxd, database)}


@pytest.fixture
async def registry_url(tmp_path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/registry.sqlite"
    await registered_fleet(url, {"conc-1": ["m1", "m2"], "conc-2": ["n1"]})
    async with Registry(url=url) as registry:
        # A street light talks to the broker itself: it sends its own readings on its own
        # subtree, and nobody else's.
        await registry.create_device(DeviceCreate(identification="conc-3", device_type=DeviceType.STREET_LIGHT,
                                                  protocol=Protocol.MQTT))
    return url


async def test_unknown_senders_are_dead_lettered_with_the_reason_and_known_ones_stored(
        mosquitto, influxd, influx_db, tmp_path, registry_url):
    ingest = IngestProcess(mosquitto=mosquitto, influxd=influxd, database=influx_db, client_id="ingest-senders",
                           directory=tmp_path, registry=registry_url)
    await asyncio.to_thread(ingest.start)
    seq = itertools.count(1)
    try:
        async with Concentrator(mosquitto, "conc-1") as one, Concentrator(mosquitto, "conc-2") as two, \
                Concentrator(mosquitto, "conc-3") as three:
            sent = {one: [(next(seq), "m1"), (next(seq), "stranger"), (next(seq), "n1")],
                    two: [(next(seq), "n1"), (next(seq), "m2")],
                    three: [(next(seq), "conc-3"), (next(seq), "m2")]}
            for conc, messages in sent.items():
                for number, meter in messages:
                    await conc.publish(number, meter, batch_payload(meter, 0, 2))
            # Refused messages are confirmed too: the concentrator may forget them.
            for conc, messages in sent.items():
                await conc.wait_acked(lambda acked, m=messages: acked >= {n for n, _ in m})
            assert _meters(influxd, influx_db) == {"m1", "n1", "conc-3"}
            prefix = "concentrator/{}/smartMeterMessage/{}/meterReading"
            assert await _dead(registry_url) == sorted([
                (prefix.format("conc-1", "n1"), "unknown sender: meter 'n1' belongs to concentrator 'conc-2', "
                                                "not to 'conc-1'"),
                (prefix.format("conc-1", "stranger"), "unknown sender: meter 'stranger' is not in the registry"),
                (prefix.format("conc-2", "m2"), "unknown sender: meter 'm2' belongs to concentrator 'conc-1', "
                                                "not to 'conc-2'"),
                (prefix.format("conc-3", "m2"), "unknown sender: 'conc-3' is a STREET_LIGHT, "
                                                    "not a concentrator or gateway"),
            ])

            # A live batch (several meters, one message): each reading is taken or refused on its
            # own, the refused ones with 0x87 (not authorised) and a dead letter each.
            numbers = [next(seq) for _ in range(4)]
            await one.publish_batch(numbers, b'{"meterReadings":[%s]}' % b",".join(
                payload(meter, 10) for meter in ("m1", "stranger", "n1", "m2")))
            await one.wait_acked(lambda acked: acked >= {numbers[0], numbers[3]} and len(one.refused) == 2)
            assert {n: code for n, (code, _) in one.refused.items()} == {numbers[1]: 0x87, numbers[2]: 0x87}
            assert _meters(influxd, influx_db) == {"m1", "m2", "n1", "conc-3"}
            batch = "concentrator/conc-1/batch/meterReading"
            assert [d for d in await _dead(registry_url) if d[0] == batch] == sorted([
                (batch, f"unknown sender: meter 'n1' belongs to concentrator 'conc-2', not to 'conc-1' "
                        f"(gw-seq {numbers[2]})"),
                (batch, f"unknown sender: meter 'stranger' is not in the registry (gw-seq {numbers[1]})")])

            # A meter registered a moment ago is taken at once (a miss makes ingest look again).
            async with Registry(url=registry_url) as registry:
                await registry.create_device(DeviceCreate(identification="late", device_type=DeviceType.SMART_METER,
                                                          protocol=Protocol.DLMS, concentrator_id="conc-1"))
                number = next(seq)
                await one.publish(number, "late", batch_payload("late", 0, 1))
                await one.wait_acked(lambda acked: number in acked)
                assert "late" in _meters(influxd, influx_db)

                # A meter moved to another concentrator is refused on the old one's topic once
                # the view has the change (refreshed in the background, here every 0.2 s).
                await registry.update_device("m1", DeviceUpdate(concentrator_id="conc-2"))

                async def refused_on_conc_1() -> bool:
                    number = next(seq)
                    await one.publish(number, "m1", batch_payload("m1", 100 + number, 1))
                    await one.wait_acked(lambda acked: number in acked)
                    return any("meter 'm1' belongs to concentrator 'conc-2'" in reason
                               for _topic, reason in await _dead(registry_url))

                await poll_until(refused_on_conc_1, bool, timeout=15, what="m1 refused on conc-1 after its move")
    finally:
        await asyncio.to_thread(ingest.stop)
    assert ingest.summary()["dead"] >= 5


async def test_accept_mode_stores_readings_of_senders_the_registry_does_not_know(
        mosquitto, influxd, influx_db, tmp_path):
    ingest = IngestProcess(mosquitto=mosquitto, influxd=influxd, database=influx_db, client_id="ingest-accept",
                           directory=tmp_path)  # no registry: GRIDWIRE_INGEST_UNKNOWN_SENDERS=accept
    await asyncio.to_thread(ingest.start)
    try:
        async with Concentrator(mosquitto, "conc-2") as conc:
            await conc.publish(1, "anyone", batch_payload("anyone", 0, 3))
            await conc.wait_acked(lambda acked: 1 in acked)
    finally:
        await asyncio.to_thread(ingest.stop)
    assert _meters(influxd, influx_db) == {"anyone"}
    assert "UNKNOWN_SENDERS=accept" in ingest.log.read_text()


async def test_the_view_waits_for_the_registry_instead_of_refusing_while_it_is_down(tmp_path):
    from broker.errors import Unavailable
    from cloud.registry.db import create_engine

    url = f"sqlite+aiosqlite:///{tmp_path}/registry.sqlite"
    await registered_fleet(url, {"conc-1": ["m1"]})
    engine = create_engine(url)
    senders = KnownSenders(engine=engine, miss_seconds=0.0)
    try:
        await senders.refresh()
        assert await senders.check("conc-1", "m1") is None
        (tmp_path / "registry.sqlite").rename(tmp_path / "gone.sqlite")
        await engine.dispose()  # the next look opens the file again: it is not there
        with pytest.raises(Unavailable):
            await senders.check("conc-1", "m9")
        assert senders.problem("conc-1", "m1") is None  # the last view is kept
    finally:
        await engine.dispose()


async def test_known_senders_cost_no_query_and_retired_ones_are_refused(tmp_path):
    from sqlalchemy import event

    from cloud.registry.db import create_engine

    url = f"sqlite+aiosqlite:///{tmp_path}/registry.sqlite"
    await registered_fleet(url, {"conc-1": ["m1", "m2"], "conc-2": ["n1"]})
    engine = create_engine(url)
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    senders = KnownSenders(engine=engine, miss_seconds=0.0)
    try:
        await senders.refresh()
        statements.clear()
        for _ in range(1000):
            assert await senders.check("conc-1", "m1") is None
        assert statements == []  # a known sender is a dict lookup
        async with Registry(url=url) as registry:
            await registry.decommission("m2")
            await registry.decommission("conc-2")
        # A known sender is not looked up again: the background refresh (every refresh_seconds) brings changes.
        assert await senders.check("conc-1", "m2") is None
        await senders.refresh()
        assert await senders.check("conc-1", "m2") == "unknown sender: meter 'm2' is decommissioned"
        assert await senders.check("conc-2", "n1") == "unknown sender: concentrator 'conc-2' is decommissioned"
        assert await senders.check("conc-9", "m1") == "unknown sender: concentrator 'conc-9' is not in the registry"
        assert senders.loads == 1  # changes came in as changes, not by reading everything again
    finally:
        await engine.dispose()
