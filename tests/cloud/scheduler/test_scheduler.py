"""The scheduler against a real database and a real broker: exactly once, and restart-safe."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta

from broker.session import Message, MqttSession
from cloud.migrations import migrate
from cloud.registry.db import create_engine
from cloud.scheduler import (
    DailyTrigger,
    IntervalTrigger,
    MissedRunPolicy,
    OnceTrigger,
    ScheduleCreate,
    ScheduledTask,
    Scheduler,
    ScheduleStore,
    next_run,
    run_key,
)
from tests.cloud.scheduler.conftest import ManualClock

T0 = datetime(2025, 3, 29, 23, 0, tzinfo=UTC)  # the night Europe/Amsterdam springs forward


def _specs(topic: str) -> list[ScheduleCreate]:
    task = ScheduledTask(topic=topic, payload={"function": "GET_ACTUAL_METER_READS", "deviceId": "m-1"},
                         message_expiry=300)
    return [
        ScheduleCreate(name="every-5-min", organisation="utility", task=task,
                       trigger=IntervalTrigger(anchor=T0, every_seconds=300)),
        ScheduleCreate(name="every-7-min", organisation="utility", task=task,
                       trigger=IntervalTrigger(anchor=T0 + timedelta(seconds=13), every_seconds=420)),
        ScheduleCreate(name="nightly", organisation="app", task=task,
                       trigger=DailyTrigger(times=(time(2, 30), time(3, 0)), timezone="Europe/Amsterdam")),
        ScheduleCreate(name="one-shot", organisation="app", task=task, trigger=OnceTrigger(at=T0 + timedelta(minutes=95))),
    ]


def _expected(specs: list[ScheduleCreate], ids: list[int], start: datetime, end: datetime) -> set[str]:
    keys = set()
    for spec, sid in zip(specs, ids, strict=True):
        at = next_run(spec.trigger, start)
        while at is not None and at <= end:
            keys.add(run_key(sid, at))
            at = next_run(spec.trigger, at)
    return keys


class Collector:
    """Records every scheduled request that reaches the broker, keyed by its idempotency key."""

    def __init__(self, expected: int) -> None:
        self.keys: list[str] = []
        self.payloads: list[dict[str, object]] = []
        self.expected = expected
        self.done = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        assert message.correlation_data is not None
        self.keys.append(message.correlation_data.decode())
        self.payloads.append(json.loads(message.payload))
        if len(self.keys) >= self.expected:
            self.done.set()


async def test_two_schedulers_on_postgres_run_each_due_run_exactly_once(
        postgres_url: str, cloud_session: Callable[[str], MqttSession]) -> None:
    await migrate(postgres_url)
    topic = f"domain/smartMetering/request/utility-{uuid.uuid4().hex[:6]}"
    clock = ManualClock(T0)
    # Two engines (two connection pools) stand for two scheduler processes.
    engines = [create_engine(postgres_url) for _ in range(2)]
    try:
        setup = ScheduleStore(engines[0], clock=clock)
        specs = _specs(topic)
        ids = [(await setup.add(spec)).id for spec in specs]
        end = T0 + timedelta(hours=4)
        expected = _expected(specs, ids, T0, end)
        collector = Collector(len(expected))
        listener = cloud_session("collector")
        await listener.connect()
        await listener.subscribe(topic, collector)
        schedulers = []
        for n, engine in enumerate(engines):
            session = cloud_session(f"scheduler-{n}")
            await session.connect()
            schedulers.append(Scheduler(store=ScheduleStore(engine, clock=clock), publisher=session, clock=clock,
                                        instance_id=f"scheduler-{n}"))
        won: list[list[str]] = [[], []]
        round_ = 0
        while clock.now < end:
            clock.advance(timedelta(seconds=20))
            round_ += 1
            if round_ % 2:
                # Both race for the same due runs: exactly one may publish each.
                results = await asyncio.gather(*(s.tick() for s in schedulers))
            else:
                # The instance that has won less goes first, so both take part whatever the race's luck.
                first = 0 if len(won[0]) <= len(won[1]) else 1
                results = [[], []]
                results[first] = await schedulers[first].tick()
                results[1 - first] = await schedulers[1 - first].tick()
            for n, runs in enumerate(results):
                won[n].extend(run.key for run in runs)
        published = won[0] + won[1]
        assert len(published) == len(set(published))
        assert set(published) == expected
        assert won[0] and won[1], "both instances should have won some runs"
        await asyncio.wait_for(collector.done.wait(), 10)
        assert sorted(collector.keys) == sorted(expected)
        assert all(p == {"function": "GET_ACTUAL_METER_READS", "deviceId": "m-1"} for p in collector.payloads)
        one_shot = await setup.get(ids[3])
        assert one_shot.next_run is None and one_shot.run_count == 1
    finally:
        for engine in engines:
            await engine.dispose()


class FailingPublisher:
    """A publisher whose broker is gone: the scheduler must keep the claim for a later retry."""

    async def publish(self, *args: object, **kwargs: object) -> None:
        from broker.session import MqttError
        raise MqttError("broker unreachable")


async def test_restart_continuity_on_sqlite(tmp_path, cloud_session: Callable[[str], MqttSession]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'sched.db'}"
    await migrate(url)
    topic = f"domain/publicLighting/request/city-{uuid.uuid4().hex[:6]}"
    task = ScheduledTask(topic=topic, payload={"function": "SET_LIGHT", "on": True})
    clock = ManualClock(T0)
    session = cloud_session("restart")
    await session.connect()

    engine = create_engine(url)
    store = ScheduleStore(engine, clock=clock)
    late = await store.add(ScheduleCreate(name="late-once", organisation="city", task=task, grace_seconds=30,
                                          trigger=IntervalTrigger(anchor=T0 + timedelta(minutes=10), every_seconds=600)))
    skip = await store.add(ScheduleCreate(name="skip", organisation="city", task=task, grace_seconds=30,
                                          missed_policy=MissedRunPolicy.SKIP,
                                          trigger=IntervalTrigger(anchor=T0 + timedelta(minutes=10), every_seconds=600)))
    first = Scheduler(store=store, publisher=session, clock=clock, instance_id="first")
    clock.advance(timedelta(minutes=10))
    assert {r.key for r in await first.tick()} == {run_key(late.id, clock.now), run_key(skip.id, clock.now)}
    # A run claimed but never published (the process "dies" with its broker unreachable).
    crashing = Scheduler(store=store, publisher=FailingPublisher(), clock=clock, instance_id="crashing",
                         lease=timedelta(minutes=2))
    clock.advance(timedelta(minutes=10))
    abandoned = clock.now
    assert await crashing.tick() == []
    await engine.dispose()

    # Down for an hour and a bit: five runs of each schedule were missed.
    clock.advance(timedelta(minutes=65))
    engine = create_engine(url)
    try:
        store = ScheduleStore(engine, clock=clock)
        second = Scheduler(store=store, publisher=session, clock=clock, instance_id="second")
        runs = await second.tick()
        by_schedule = {(r.schedule_id, r.due, r.late, r.recovered) for r in runs}
        # The abandoned run of each schedule is taken over and published with its own key ...
        assert (late.id, abandoned, True, True) in by_schedule and (skip.id, abandoned, True, True) in by_schedule
        # ... and once taken over, the missed runs: RUN_ONCE runs once late, SKIP does not.
        runs += await second.tick()
        late_runs = [r for r in runs if r.schedule_id == late.id and not r.recovered]
        assert len(late_runs) == 1 and late_runs[0].late
        assert not [r for r in runs if r.schedule_id == skip.id and not r.recovered]
        after_late, after_skip = await store.get(late.id), await store.get(skip.id)
        assert after_late.next_run == after_skip.next_run == T0 + timedelta(minutes=90)
        assert after_skip.skipped_count == 1
        assert after_late.run_count == 3  # first, recovered, late
        # Back to normal: the next on-time run happens once.
        clock.advance(after_late.next_run - clock.now)
        assert {r.key for r in await second.tick()} == {run_key(late.id, clock.now), run_key(skip.id, clock.now)}
    finally:
        await engine.dispose()


async def test_run_loop_publishes_and_stops(tmp_path, cloud_session: Callable[[str], MqttSession]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'loop.db'}"
    await migrate(url)
    topic = f"domain/tariffSwitching/request/u-{uuid.uuid4().hex[:6]}"
    clock = ManualClock(T0)
    engine = create_engine(url)
    try:
        store = ScheduleStore(engine, clock=clock)
        added = await store.add(ScheduleCreate(name="soon", organisation="u", trigger=OnceTrigger(at=T0 + timedelta(seconds=1)),
                                               task=ScheduledTask(topic=topic, payload={"tariff": "LOW"})))
        collector = Collector(1)
        listener = cloud_session("loop-listener")
        await listener.connect()
        await listener.subscribe(topic, collector)
        session = cloud_session("loop")
        await session.connect()
        stop = asyncio.Event()
        scheduler = Scheduler(store=store, publisher=session, clock=clock, poll_interval=0.05)
        task = asyncio.create_task(scheduler.run(stop), name="scheduler-loop")
        clock.advance(timedelta(seconds=1))
        await asyncio.wait_for(collector.done.wait(), 10)
        stop.set()
        await asyncio.wait_for(task, 5)
        assert collector.keys == [run_key(added.id, T0 + timedelta(seconds=1))]
        assert collector.payloads == [{"tariff": "LOW"}]
    finally:
        await engine.dispose()
