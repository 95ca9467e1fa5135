"""InfluxStore against a real influxd: round trip, idempotence, filters, paging, delete, outages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from cloud.store import InfluxStore, PropertyFilter, ReadingQuery, StoreRejected, StoreUnavailable
from tests.cloud.store.factories import T0, reading, series
from tests.fixtures.influx import InfluxServer
from tests.fixtures.procs import free_port

DAY = ReadingQuery(start=T0, end=T0 + timedelta(days=1))


@pytest.fixture
async def store(influxd: InfluxServer, influx_db: str) -> AsyncIterator[InfluxStore]:
    async with InfluxStore(url=influxd.url, database=influx_db, timeout=5.0) as s:
        yield s


async def test_round_trip_keeps_every_attribute(store: InfluxStore) -> None:
    sent = [
        reading("E0001", T0, energy=1234.5, power=2.25, text="tariff 2, \"peak\"", fault="F17", sequence=7),
        reading("E0002", T0 + timedelta(minutes=15), energy=None, text="door open", historical=True),
    ]
    assert await store.write_readings(sent, concentrator_id="conc-1") == 2
    got = await store.query_readings(DAY)
    assert [g.meter_reading_identifier for g in got] == [s.meter_reading_identifier for s in sent]
    first, second = got
    assert first.reading_time == T0 and first.reading_time.utcoffset() == timedelta(0)
    assert first.fault_code == "F17" and first.sequence_number == 7 and not first.historical
    by_id = {v.property_id: v for v in first.property_values}
    assert by_id["OBIS_1.8.1"].numerical_value == 1234.5 and by_id["OBIS_1.8.1"].unit == "kWh"
    assert by_id["OBIS_1.7.0"].date == T0 - timedelta(seconds=5) and by_id["OBIS_1.7.0"].unit == "kW"
    assert by_id["OBIS_0.0.96.13.0"].text_value == 'tariff 2, "peak"'
    assert second.historical and second.fault_code is None
    assert [(v.property_id, v.text_value) for v in second.property_values] == [("OBIS_0.0.96.13.0", "door open")]


async def test_duplicate_delivery_creates_no_duplicate(store: InfluxStore) -> None:
    batch = series(["E1", "E2"], 10)
    await store.write_readings(batch)
    await store.write_readings(batch[:7])
    await store.write_readings(batch)
    assert await store.count_readings(DAY) == 20
    assert len(await store.query_readings(DAY)) == 20


async def test_filters(store: InfluxStore) -> None:
    await store.write_readings(series(["A", "B", "C"], 10))  # energy 100..109, power i % 7
    await store.write_readings([reading("D", T0, energy=None, text="alarm"), reading("D", T0 + timedelta(hours=1),
                                                                                    energy=None, text="ok")])

    async def count(**changes: object) -> int:
        query = ReadingQuery(**{"start": T0, "end": T0 + timedelta(days=1), **changes})
        n = await store.count_readings(query)
        assert len(await store.query_readings(query)) == n
        return n

    assert await count() == 32
    assert await count(meters=frozenset({"A", "C"})) == 20
    assert await count(meters=frozenset()) == 0
    assert await count(end=T0 + timedelta(minutes=30)) == 3 * 3 + 1  # inclusive of both ends
    assert await count(start=T0 + timedelta(minutes=15), end=T0 + timedelta(minutes=15)) == 3
    gt = PropertyFilter(property_id="OBIS_1.8.1", greater_than=105)
    assert await count(filters=(gt,)) == 12
    both = PropertyFilter(property_id="OBIS_1.8.1", greater_than=101, less_than=104)
    assert await count(filters=(both,)) == 6
    assert await count(filters=(PropertyFilter(property_id="OBIS_1.8.1", equal_to=100.0),)) == 3
    assert await count(filters=(PropertyFilter(property_id="OBIS_1.7.0", equal_to=0),
                                PropertyFilter(property_id="OBIS_1.8.1", less_than=105))) == 3
    text = PropertyFilter(property_id="OBIS_0.0.96.13.0", text_equal_to="alarm")
    assert await count(filters=(text,)) == 1
    assert await count(filters=(text,), meters=frozenset({"A"})) == 0


def test_filter_validation() -> None:
    with pytest.raises(ValueError, match="no condition"):
        PropertyFilter(property_id="OBIS_1.8.1")
    with pytest.raises(ValueError, match="reserved"):
        PropertyFilter(property_id="reading_id", equal_to=1)
    with pytest.raises(ValueError, match="after end"):
        ReadingQuery(start=T0 + timedelta(days=1), end=T0)


async def test_paging_visits_every_reading_once(store: InfluxStore) -> None:
    await store.write_readings(series(["P1", "P2", "P3"], 11))
    seen = []
    for offset in range(0, 40, 7):
        page = await store.query_readings(DAY, limit=7, offset=offset)
        assert len(page) == min(7, max(0, 33 - offset))
        seen.extend(page)
    assert len({r.meter_reading_identifier for r in seen}) == 33
    assert [r.reading_time for r in seen] == sorted(r.reading_time for r in seen)


async def test_stream_in_chunks(store: InfluxStore) -> None:
    await store.write_readings(series(["S1", "S2"], 25))
    streamed = [r async for r in store.stream_readings(DAY, chunk_size=7)]
    assert len({r.meter_reading_identifier for r in streamed}) == 50
    limited = [r async for r in store.stream_readings(DAY, chunk_size=7, limit=12)]
    assert len(limited) == 12


async def test_delete_by_reading_id(store: InfluxStore) -> None:
    batch = series(["X1", "X2"], 3)
    await store.write_readings(batch)
    victim = batch[4]
    assert not await store.delete_reading(victim.meter_reading_identifier, meters=frozenset({"X1"}))
    assert await store.delete_reading(victim.meter_reading_identifier)
    left = await store.query_readings(DAY)
    assert len(left) == 5 and victim.meter_reading_identifier not in {r.meter_reading_identifier for r in left}
    assert not await store.delete_reading(victim.meter_reading_identifier)


async def test_bad_reading_rejects_whole_batch_before_writing(store: InfluxStore) -> None:
    good = reading("fine", T0)
    bad = reading("back\\slash", T0)
    with pytest.raises(StoreRejected) as info:
        await store.write_readings([good, bad])
    assert info.value.reading_ids == (str(bad.meter_reading_identifier),)
    assert await store.count_readings(DAY) == 0


async def test_missing_database_is_unavailable_not_rejected(influxd: InfluxServer) -> None:
    async with InfluxStore(url=influxd.url, database="never_created") as s:
        with pytest.raises(StoreUnavailable, match="database not found"):
            await s.write_readings([reading("m", T0)])
        await s.ensure_database()
        assert await s.write_readings([reading("m", T0)]) == 1
        assert await s.count_readings(DAY) == 1
        await s._query('DROP DATABASE "never_created"', database=False)


async def test_nothing_listening_is_unavailable() -> None:
    async with InfluxStore(url=f"http://127.0.0.1:{free_port()}", database="x", timeout=2.0) as s:
        with pytest.raises(StoreUnavailable):
            await s.ping()
        with pytest.raises(StoreUnavailable):
            await s.write_readings([reading("m", T0)])


async def test_outage_then_restart_on_same_port_keeps_data(influxd: InfluxServer, store: InfluxStore) -> None:
    await store.write_readings(series(["O1"], 5))
    assert await store.ping()
    influxd.kill()  # a crash: only the WAL carries the points over
    try:
        with pytest.raises(StoreUnavailable):
            await store.write_readings(series(["O2"], 5))
        with pytest.raises(StoreUnavailable):
            await store.count_readings(DAY)
    finally:
        influxd.start()
    assert await store.count_readings(DAY) == 5
    # The caller's retry after the outage stores the batch that failed.
    assert await store.write_readings(series(["O2"], 5)) == 5
    assert await store.count_readings(DAY) == 10
