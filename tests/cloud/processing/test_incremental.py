"""Incremental equals from scratch: readings processed one message at a time in a shuffled order
(late readings, a backfill, a spike, across a month's end) leave in InfluxDB exactly the
consumption a computation from scratch over the final register values gives, for every interval
of the four kinds."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from broker.schemas import MeterReading
from cloud.catalogue import default_catalogue
from cloud.migrations import migrate
from cloud.processing.facts import MeterFacts, MeterLocks
from cloud.processing.intervals import INTERVALS
from cloud.processing.processor import Processor
from cloud.processing.series import Series
from cloud.processing.store import ProcessingStore
from cloud.registry.db import create_engine
from cloud.store.influx import InfluxStore
from cloud.store.line_protocol import to_ns

START = datetime(2026, 10, 31, 20, tzinfo=UTC)  # four hours before November
QUARTER = timedelta(minutes=15)
METER = "meter-inc"


def _reading(k: int, value: float) -> MeterReading:
    when = START + k * QUARTER
    return MeterReading.model_validate({
        "meterReadingIdentifier": str(MeterReading.derive_id(METER, when)), "readingTime": when.isoformat(),
        "meterIndividual": {"meterIndividualId": METER, "physicalMeterType": {"physicalMeterClass": "ELECTRICITY"}},
        "propertyValues": [{"unit": "kWh", "date": when.isoformat(), "numericalValue": value,
                            "operationalPropertyDefinition": {"propertyId": "OBIS_1.8.0"}}]})


@pytest.mark.parametrize(("seed", "zone"), [(1, "UTC"), (2, "Europe/Amsterdam"), (3, "Asia/Kolkata")])
async def test_shuffled_arrival_ends_as_from_scratch(seed: int, zone: str, influxd, influx_db, tmp_path) -> None:
    """Days and months in UTC, in a whole-hour zone and in a half-hour one."""
    rng = random.Random(seed)
    value, values = 100.0, {}
    for k in range(0, 40):  # ten hours, across the month's end
        value += rng.choice((0.0, 0.125, 0.25, 0.5))
        if rng.random() < 0.8:
            values[k] = value
    values[rng.randrange(40)] = 9999.0  # a spike somewhere
    order = list(values)
    rng.shuffle(order)
    url = f"sqlite+aiosqlite:///{tmp_path}/registry.sqlite"
    await migrate(url)
    engine = create_engine(url)
    try:
        async with InfluxStore(url=influxd.url, database=influx_db) as influx:
            store = ProcessingStore(influx)
            processor = Processor(store=store, facts=MeterFacts(engine), locks=MeterLocks(engine),
                                  catalogue=default_catalogue(), clock=lambda: to_ns(START + timedelta(days=1)),
                                  zone=ZoneInfo(zone))
            for k in order:
                await processor.process(METER, [_reading(k, values[k])])
            first, last = to_ns(START - timedelta(days=40)), to_ns(START + timedelta(days=40))
            points = await store.window(METER, "OBIS_1.8.0", first, last)
            assert len(points) == len(values)
            scratch = Series(points)
            for interval in INTERVALS:
                expected = {c.start: c for c in scratch.aggregate(to_ns(START), to_ns(START + 40 * QUARTER), interval,
                                                                   zone=ZoneInfo(zone))
                            if c.readings or c.value is not None or c.rules}
                stored = {c.start: c for c in await store.consumption(METER, "OBIS_1.8.0", interval, first, last)}
                assert set(stored) >= set(expected), interval
                for start, want in expected.items():
                    got = stored[start]
                    assert (got.value, got.quality, got.rules, got.method, got.readings) == (
                        want.value, want.quality, want.rules, want.method, want.readings), (interval, start)
    finally:
        await engine.dispose()
