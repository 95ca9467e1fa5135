"""The write batcher with several writes in flight, against a real influxd."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from broker.session import Backoff
from cloud.ingest.batcher import WriteBatcher
from cloud.store.errors import StoreUnavailable
from cloud.store.influx import InfluxStore
from tests.fixtures.waiting import wait_for


def point(meter: str, index: int) -> str:
    return f'meter_reading,meter={meter} reading_id="r{index}",x={float(index)} {1_767_225_600_000_000_000 + index}'


def stored(influxd, db: str) -> list[int]:
    doc = influxd.query('SELECT "x" FROM meter_reading', database=db)
    series = doc["results"][0].get("series", [])
    return sorted(int(row[1]) for s in series for row in s["values"])


class HeldWriter:
    """The real store's write, held at a gate so a test can see how many are in flight."""

    def __init__(self, store: InfluxStore) -> None:
        self.store = store
        self.gate = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0
        self.failures_left = 0

    async def __call__(self, lines: Sequence[str]) -> int:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
            if self.failures_left:
                self.failures_left -= 1
                raise StoreUnavailable("influxd held back by the test")
            return await self.store.write_lines(lines)
        finally:
            self.in_flight -= 1


async def test_two_writes_in_flight_store_every_message_once(influxd, influx_db) -> None:
    store = InfluxStore(url=influxd.url, database=influx_db)
    writer = HeldWriter(store)
    confirmed: list[int] = []

    async def confirm(seqs: dict[str, list[int]]) -> None:
        confirmed.extend(seqs["c1"])

    batcher = WriteBatcher(write=writer, max_readings=10, max_delay=0.01, max_writes=2, confirm=confirm,
                           backoff=Backoff(initial=0.01, maximum=0.02))
    runner = asyncio.create_task(batcher.run())

    def send(seqs: range) -> list[asyncio.Task]:
        return [asyncio.create_task(batcher.submit([point("m1", i * 10 + k) for k in range(10)],
                                                   concentrator_id="c1", seq=i)) for i in seqs]

    async def until_in_flight(count: int) -> None:
        await wait_for(lambda: writer.in_flight >= count, timeout=10, interval=0.01, what=f"{count} writes in flight")

    messages = send(range(3))          # the first batch: its write is held at the gate
    await until_in_flight(1)
    messages += send(range(3, 6))      # the second batch goes out beside it
    await until_in_flight(2)
    assert not any(m.done() for m in messages)     # nothing is acknowledged before its write
    writer.failures_left = 2                       # both held writes fail once, then are retried
    writer.gate.set()
    await asyncio.wait_for(asyncio.gather(*messages), 10)
    runner.cancel()
    await store.aclose()

    assert writer.most_in_flight == 2
    assert batcher.retries == 2
    assert sorted(confirmed) == list(range(6))
    assert stored(influxd, influx_db) == list(range(60))
