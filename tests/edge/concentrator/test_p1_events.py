"""A P1 meter's power failure log becomes device events: one per entry, once, across restarts,
although the meter repeats the whole log in every telegram."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from broker.schemas import DeviceEvent, DeviceEventType, EventSource
from edge.concentrator import Concentrator
from edge.config import load_config
from edge.outbox import Outbox
from edge.p1.events import failure_events
from edge.p1.simulator import MeterModel, P1Simulator
from edge.p1.telegram import PowerFailure
from tests.edge.concentrator.conftest import wait_for, write_config
from tests.fixtures.mosquitto import MosquittoServer

METER = "p1-meter-ev"
T0 = datetime(2026, 3, 2, 8, 0, 0, tzinfo=UTC)


def test_each_log_entry_is_one_power_failure_at_the_time_the_power_went() -> None:
    ended = datetime(2026, 1, 5, 3, 0, 0, tzinfo=UTC)
    log = (PowerFailure(ended, timedelta(seconds=240)), PowerFailure(ended - timedelta(days=9), timedelta(hours=2)))
    events = failure_events(METER, log)
    assert [(e.event_type, e.occurred_at) for e in events] == [
        (DeviceEventType.POWER_FAILURE, ended - timedelta(days=9, hours=2)),
        (DeviceEventType.POWER_FAILURE, ended - timedelta(seconds=240))]
    assert events[1].detail == {"restoredAt": ended.isoformat(), "durationSeconds": 240}
    assert events[0].source is EventSource.P1_FAILURE_LOG
    assert [e.event_id for e in failure_events(METER, log[::-1])] == [e.event_id for e in events]


def events_in(outbox_path: Path) -> list[DeviceEvent]:
    outbox = Outbox(outbox_path)
    try:
        return [DeviceEvent.model_validate_json(m.payload) for m in outbox.after(0, limit=100_000)
                if "/event/" in m.topic]
    finally:
        outbox.close()


async def test_the_failure_log_is_queued_once_across_restarts(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    (tmp_path / "meter.yaml").write_text(yaml.safe_dump({
        "meterIndividualId": METER, "physicalMeterClass": "ELECTRICITY", "protocol": "p1"}))
    model = MeterModel(start=T0, gas_channel=None)
    for _ in range(2):  # the second run is a restart on the same outbox and state
        sim = P1Simulator(model=model, interval=0.01, count=15)
        path = sim.open()
        config = write_config(tmp_path, mqtt_port=mosquitto.port, meters=[
            f'[[meters]]\nprotocol = "p1"\nport = "{path}"\nadapter_config = "meter.yaml"\n'])
        concentrator = Concentrator.from_config(load_config(config))
        stop = asyncio.Event()
        task = asyncio.create_task(concentrator.run(stop), name="concentrator-under-test")
        try:
            await wait_for(lambda: concentrator.open_ports == 1, what="the P1 port open")
            await sim.start()
            await wait_for(lambda: sim.done.is_set(), what="every telegram sent")
            await wait_for(lambda: concentrator.p1_readers[path].stats.telegrams_ok == 15, what="every telegram read")
        finally:
            await sim.stop()
            stop.set()
            await asyncio.wait_for(task, 20)
    events = events_in(tmp_path / "outbox.sqlite")
    assert [(e.device_id, e.event_type) for e in events] == [(METER, DeviceEventType.POWER_FAILURE)]
    assert events[0].detail["durationSeconds"] == 240  # the simulator's log: 240 s, ended 3 days before T0
    assert events[0].occurred_at == T0 - timedelta(days=3, seconds=240)
