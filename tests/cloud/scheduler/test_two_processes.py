"""Two scheduler *processes* (``gridwire cloud scheduler``) on one PostgreSQL database run
every due run exactly once between them."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from broker.session import Message, MqttSession
from cloud.migrations import migrate
from cloud.registry.db import create_engine
from cloud.scheduler import IntervalTrigger, ScheduleCreate, ScheduledTask, ScheduleStore
from gridwire.procs import ManagedProcess
from tests.fixtures.waiting import wait_for


def scheduler_process(tmp_path, name: str, *, mosquitto, registry_url: str) -> ManagedProcess:
    env = {"GRIDWIRE_MQTT_HOST": mosquitto.host, "GRIDWIRE_MQTT_PORT": str(mosquitto.port),
           "GRIDWIRE_MQTT_USERNAME": "gridwire-cloud",
           "GRIDWIRE_MQTT_PASSWORD": mosquitto.credentials("gridwire-cloud")["password"],
           "GRIDWIRE_DATABASE_URL": registry_url, "GRIDWIRE_MQTT_CLIENT_ID": name,
           "GRIDWIRE_SCHEDULER_POLL_SECONDS": "0.1", "GRIDWIRE_SCHEDULER_LEASE_SECONDS": "30"}
    return ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", "cloud", "scheduler"], env=env,
                          log=tmp_path / f"{name}.log")


async def test_two_scheduler_processes_run_each_due_run_once(tmp_path, mosquitto, postgres_url):
    await migrate(postgres_url)
    engine = create_engine(postgres_url)
    topic = f"domain/smartmetering/request/org-{uuid.uuid4().hex[:6]}"
    anchor = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    store = ScheduleStore(engine)
    for name in ("reads-a", "reads-b"):
        await store.add(ScheduleCreate(
            name=name, organisation="org-a", trigger=IntervalTrigger(anchor=anchor, every_seconds=1),
            task=ScheduledTask(topic=topic, payload={"function": "GET_ACTUAL_METER_READS", "deviceId": name})))
    await engine.dispose()

    keys: Counter[str] = Counter()
    marker = asyncio.Event()

    async def record(message: Message) -> None:
        if message.payload == b"marker":
            marker.set()
            return
        keys[message.user_properties["idempotencyKey"]] += 1

    async with MqttSession(client_id=f"watch-{uuid.uuid4().hex[:6]}", host=mosquitto.host, port=mosquitto.port,
                           **mosquitto.credentials("gridwire-cloud")) as watcher:
        await watcher.subscribe(topic, record)
        procs = [scheduler_process(tmp_path, f"scheduler-{n}", mosquitto=mosquitto, registry_url=postgres_url)
                 for n in (1, 2)]
        for proc in procs:
            proc.start()
        try:
            await wait_for(lambda: len(keys) >= 16, timeout=60, interval=0.05, what="16 runs published")
        finally:
            for proc in procs:
                proc.stop()
        # What the processes published before they stopped reaches us before a message the
        # broker takes after that: once it is here, every delivery on the wire has arrived.
        await watcher.publish(topic, b"marker")
        await asyncio.wait_for(marker.wait(), 20)

    assert all(count == 1 for count in keys.values()), keys.most_common(3)
    per_schedule = Counter(key.split(":")[1] for key in keys)
    assert len(per_schedule) == 2 and min(per_schedule.values()) >= 6
    logs = [(tmp_path / f"scheduler-{n}.log").read_text() for n in (1, 2)]
    assert all("Traceback" not in log for log in logs), logs
