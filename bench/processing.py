"""Consumption aggregates (docs/PROCESSING.md): time from scratch and cost per late reading.

1. From scratch, pure: N meters x D days of 15-minute register readings, every 15-minute, hour,
   day and month consumption computed (cloud.processing.series, no I/O), one meter at a time.
2. Through the store: M meters' readings written into a fresh influxd, then the same from scratch
   reading them back and writing the aggregates (what a rebuild would cost per meter).
3. Late readings: K readings sent for random quarter-hours of those meters through the Processor
   as the consumer runs it (neighbours and the days it touches read, the value judged, every
   changed interval rewritten, each month made from its ends and its days): milliseconds each.

    python bench/processing.py --meters 10000 --days 30 --store-meters 20 --late 200
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from broker.schemas import MeterReading
from cloud.catalogue import default_catalogue
from cloud.migrations import migrate
from cloud.processing.facts import MeterFacts, MeterLocks
from cloud.processing.intervals import INTERVALS
from cloud.processing.processor import Processor
from cloud.processing.rules import RegisterPoint
from cloud.processing.series import Series
from cloud.processing.store import NewPoint, ProcessingStore
from cloud.registry.db import create_engine
from cloud.store.influx import InfluxStore
from cloud.store.line_protocol import to_ns
from gridwire.procs import free_port
from gridwire.services import LocalInfluxd

Q = 900 * 10**9
PROPERTY = "OBIS_1.8.0"


def series_points(meter: int, start: int, quarters: int) -> list[RegisterPoint]:
    rng = random.Random(meter)
    value, points = 1000.0 + meter, []
    for k in range(quarters + 1):
        points.append(RegisterPoint(t=start + k * Q, value=value))
        value += rng.choice((0.0, 0.125, 0.25, 0.5))
    return points


def from_scratch(points: list[RegisterPoint], start: int, end: int) -> int:
    series = Series(points)
    return sum(len(series.aggregate(start, end - 1, interval)) for interval in INTERVALS)


def pure(meters: int, start: int, quarters: int) -> None:
    end = start + quarters * Q
    began = time.process_time()
    intervals = sum(from_scratch(series_points(m, start, quarters), start, end) for m in range(meters))
    spent = time.process_time() - began
    print(f"pure from scratch: {meters} meters x {quarters // 96} days ({meters * (quarters + 1):,} readings, "
          f"{intervals:,} intervals): {spent:.1f} s CPU, {spent / meters * 1000:.2f} ms per meter")


async def stored(influxd: LocalInfluxd, meters: int, start: int, quarters: int, late: int, tmp: Path) -> None:
    end = start + quarters * Q
    async with InfluxStore(url=influxd.url, database="bench") as influx:
        await influx.ensure_database()
        store = ProcessingStore(influx)
        for m in range(meters):
            points = [NewPoint(point=p, unit="kWh", reading_id=f"r{m}-{p.t}") for p in series_points(m, start, quarters)]
            await store.write(f"meter-{m}", PROPERTY, points=points, consumption=(), unit="kWh")
        began, cpu = time.perf_counter(), time.process_time()
        for m in range(meters):
            points = await store.window(f"meter-{m}", PROPERTY, start, end + 1)
            series = Series(points)
            changed = [(interval, one) for interval in INTERVALS for one in series.aggregate(start, end - 1, interval)]
            await store.write(f"meter-{m}", PROPERTY, points=(), consumption=changed, unit="kWh")
        wall, spent = time.perf_counter() - began, time.process_time() - cpu
        print(f"through influxd from scratch: {meters} meters: {wall / meters * 1000:.0f} ms per meter wall "
              f"({spent / meters * 1000:.0f} ms CPU here); 10,000 meters would take about {wall / meters * 10_000 / 60:.0f} "
              "min on one process")

        url = f"sqlite+aiosqlite:///{tmp}/registry.sqlite"
        await migrate(url)
        engine = create_engine(url)
        now = end + 86_400 * 10**9
        processor = Processor(store=store, facts=MeterFacts(engine), locks=MeterLocks(engine),
                              catalogue=default_catalogue(), clock=lambda: now)
        rng = random.Random(7)
        times = []
        cpu = time.process_time()
        for _ in range(late):
            m, k = rng.randrange(meters), rng.randrange(1, quarters)
            truth = series_points(m, start, quarters)[k]
            when = datetime.fromtimestamp(truth.t / 1e9, UTC)
            reading = MeterReading.model_validate({
                "meterReadingIdentifier": str(MeterReading.derive_id(f"meter-{m}", when)), "readingTime": when.isoformat(),
                "historical": True, "meterIndividual": {"meterIndividualId": f"meter-{m}"},
                "propertyValues": [{"unit": "kWh", "date": when.isoformat(), "numericalValue": truth.value,
                                    "operationalPropertyDefinition": {"propertyId": PROPERTY}}]})
            began = time.perf_counter()
            await processor.process(f"meter-{m}", [reading])
            times.append(time.perf_counter() - began)
        spent = time.process_time() - cpu
        await engine.dispose()
        times.sort()
        print(f"late readings: {late} through the Processor: median {statistics.median(times) * 1000:.1f} ms, "
              f"p95 {times[int(len(times) * 0.95)] * 1000:.1f} ms wall each, {spent / late * 1000:.1f} ms CPU here "
              "(neighbours, the days it touches, each month from its ends and days, every changed interval rewritten)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--store-meters", type=int, default=20)
    parser.add_argument("--late", type=int, default=200)
    args = parser.parse_args()
    start = to_ns(datetime(2026, 11, 1, tzinfo=UTC))
    quarters = args.days * 96
    pure(args.meters, start, quarters)
    with tempfile.TemporaryDirectory() as tmp:
        influxd = LocalInfluxd(directory=Path(tmp), port=free_port())
        influxd.start()
        try:
            await stored(influxd, args.store_meters, start, quarters, args.late, Path(tmp))
        finally:
            influxd.stop()


if __name__ == "__main__":
    asyncio.run(main())
