"""The poller with scripted sources: schedules, exclusivity, bus bounds, retries, health, recovery."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timedelta

import pytest

from broker.backoff import Backoff
from broker.schemas import MeterHealth
from edge.polling import MeterCommunicationError, MeterPoller, MeterProtocolError, MeterSource
from tests.edge.polling.sources import Gauge, RecordingSink, ScriptedSource, Watch

FAST = Backoff(initial=0.01, maximum=0.04, randomness=0.0)


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def sink(watch: Watch) -> RecordingSink:
    return RecordingSink(watch)


async def test_each_meter_is_read_at_its_own_interval(watch: Watch, sink: RecordingSink) -> None:
    fast = ScriptedSource("fast", watch=watch, interval=0.02, bus="a")
    slow = ScriptedSource("slow", watch=watch, interval=0.2, bus="b")
    assert isinstance(fast, MeterSource)
    async with MeterPoller(sink=sink, jitter=0.0) as poller:
        poller.add_all([fast, slow])
        await watch.until(lambda: sink.count("fast") >= 15)
    assert sink.count("slow") <= 4  # 15 fast reads span about 0.3 s: at most 2 slow ticks, plus slack
    times = [r.reading_time for r in sink.readings["fast"]]
    assert times == sorted(times)
    assert all(h.healthy and h.protocol == "test" for h in poller.health())


async def test_reads_per_bus_are_bounded(watch: Watch, sink: RecordingSink) -> None:
    gauge = Gauge()
    sources = [ScriptedSource(f"a{i}", watch=watch, bus="bus-a", interval=0.01, work=0.01, gauge=gauge)
               for i in range(6)]
    sources += [ScriptedSource(f"b{i}", watch=watch, bus="bus-b", interval=0.01, work=0.01, gauge=gauge)
                for i in range(3)]
    async with MeterPoller(sink=sink, bus_limits={"bus-a": 2}, default_bus_limit=1) as poller:
        poller.add_all(sources)
        await watch.until(lambda: all(sink.count(s.meter_id) >= 3 for s in sources))
    assert gauge.peak == {"bus-a": 2, "bus-b": 1}


async def test_a_command_holding_the_meter_lock_blocks_its_reads(watch: Watch, sink: RecordingSink) -> None:
    held = ScriptedSource("held", watch=watch, bus="a", interval=0.01)
    other = ScriptedSource("other", watch=watch, bus="b", interval=0.01)
    async with MeterPoller(sink=sink) as poller:
        poller.add_all([held, other])
        await watch.until(lambda: sink.count("held") >= 1)
        async with poller.exclusive("held"):
            assert poller.lock_for("held").locked()
            before = len(held.attempts)
            start = sink.count("other")
            await watch.until(lambda: sink.count("other") >= start + 5)
            assert len(held.attempts) == before  # no read while the command holds the meter
        await watch.until(lambda: len(held.attempts) > before)


async def test_transient_failures_back_off_mark_unhealthy_and_recover(watch: Watch, sink: RecordingSink) -> None:
    flaky = ScriptedSource("flaky", watch=watch, bus="a", interval=0.5)
    steady = ScriptedSource("steady", watch=watch, bus="b", interval=0.02)
    recovered: list[tuple[str, datetime, datetime]] = []

    async def on_recovered(meter_id: str, down_since: datetime, now: datetime) -> None:
        recovered.append((meter_id, down_since, now))
        await watch.notify()

    async with MeterPoller(sink=sink, on_recovered=on_recovered, backoff=FAST, unhealthy_after=3,
                           jitter=0.0) as poller:
        poller.add_all([flaky, steady])
        flaky.failure = MeterCommunicationError("no answer")
        await watch.until(lambda: flaky.failures >= 6)
        health = poller.health_of("flaky")
        assert not health.healthy and health.consecutive_failures >= 6
        assert health.last_error == "MeterCommunicationError: no answer"
        assert poller.health_of("steady").healthy
        steady_during_outage = sink.count("steady")
        assert steady_during_outage >= 1

        first_failure = flaky.attempts[-flaky.failures]
        gaps = [(b - a).total_seconds() for a, b in zip(flaky.attempts[-flaky.failures:], flaky.attempts[-flaky.failures + 1:])]
        # Retries come well before the 0.5 s interval, and never sooner than the backoff says.
        for attempt, gap in enumerate(gaps):
            assert gap >= FAST.ceiling(attempt) - 0.002
        assert max(gaps) < 0.5

        flaky.failure = None
        await watch.until(lambda: bool(recovered))
        await watch.until(lambda: sink.count("steady") > steady_during_outage)
    meter_id, down_since, now = recovered[0]
    assert meter_id == "flaky"
    assert down_since <= first_failure and first_failure - down_since < timedelta(seconds=0.05)
    assert now >= flaky.attempts[-1] and now > down_since
    assert poller.health_of("flaky").healthy and poller.health_of("flaky").last_success == now


async def test_permanent_failures_wait_for_the_next_tick(watch: Watch, sink: RecordingSink) -> None:
    broken = ScriptedSource("broken", watch=watch, bus="a", interval=0.05)
    broken.failure = MeterProtocolError("illegal data address")
    async with MeterPoller(sink=sink, backoff=FAST, jitter=0.0, unhealthy_after=2) as poller:
        poller.add(broken)
        await watch.until(lambda: broken.failures >= 4)
        health: MeterHealth = poller.health_of("broken")
    # One attempt per tick and no backoff retries in between: each attempt falls in a later tick
    # slot than the one before (a retry would share its slot, whatever the machine's load).
    slots = [math.floor(attempt.timestamp() / 0.05) for attempt in broken.attempts]
    assert all(b > a for a, b in zip(slots, slots[1:])), slots
    assert not health.healthy and "illegal data address" in (health.last_error or "")


async def test_a_buggy_source_does_not_stop_the_others(watch: Watch, sink: RecordingSink) -> None:
    buggy = ScriptedSource("buggy", watch=watch, bus="a", interval=0.02)
    buggy.failure = ZeroDivisionError("bug")
    fine = ScriptedSource("fine", watch=watch, bus="b", interval=0.02)
    async with MeterPoller(sink=sink, unhealthy_after=2) as poller:
        poller.add_all([buggy, fine])
        await watch.until(lambda: buggy.failures >= 3 and sink.count("fine") >= 3)
        assert "ZeroDivisionError" in (poller.health_of("buggy").last_error or "")
        await poller.remove("buggy")
        assert poller.meter_ids == ["fine"]


async def test_poll_now_reads_once_and_raises_the_meter_error(watch: Watch, sink: RecordingSink) -> None:
    source = ScriptedSource("m", watch=watch, interval=3600)
    poller = MeterPoller(sink=sink)
    poller.add(source)
    [reading] = await poller.poll_now("m")
    assert sink.readings["m"] == [reading]
    source.failure = MeterCommunicationError("timeout")
    with pytest.raises(MeterCommunicationError):
        await poller.poll_now("m")
    assert poller.health_of("m").consecutive_failures == 1
    with pytest.raises(ValueError, match="already polled"):
        poller.add(source)


async def test_a_failing_sink_stops_the_poller(watch: Watch) -> None:
    async def broken_sink(reading: object) -> None:
        raise OSError("outbox disk full")

    poller = MeterPoller(sink=broken_sink)
    poller.add(ScriptedSource("m", watch=watch, interval=0.01))
    with pytest.raises(ExceptionGroup) as info:
        await asyncio.wait_for(poller.run(), 10)
    assert info.group_contains(OSError, match="outbox disk full")
