"""A P1 meter under the default policy: one reading per interval through the whole data path
(outbox, Mosquitto, ingest, InfluxDB) with each property's mean, minimum, maximum and last value
and the interval; and its latest reading live on a retained topic."""

from __future__ import annotations

import asyncio
import json
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from broker.schemas import MeterReading
from edge.concentrator import Concentrator
from edge.outbox import Outbox
from edge.config import load_config
from edge.p1.simulator import MeterModel, P1Simulator
from tests.cloud.core.harness import Inbox, session_for
from tests.edge.concentrator.conftest import stored, wait_for, write_config
from tests.fixtures.mosquitto import CLOUD

METER = "p1-meter-agg"
T0 = datetime(2026, 3, 2, 8, 0, 0, tzinfo=UTC)
TELEGRAMS = 240  # four minutes of meter time


async def test_one_reading_per_interval_with_its_statistics_and_the_latest_live(
        tmp_path: Path, mosquitto, influxd, influx_db, ingest) -> None:
    (tmp_path / "meter.yaml").write_text(yaml.safe_dump({
        "meterIndividualId": METER, "physicalMeterClass": "ELECTRICITY", "protocol": "p1"}))
    model = MeterModel(start=T0, gas_channel=None)
    sim = P1Simulator(model=model, interval=0.005, count=TELEGRAMS)
    path = sim.open()
    config = write_config(tmp_path, mqtt_port=mosquitto.port, meters=[
        f'[[meters]]\nprotocol = "p1"\nport = "{path}"\nadapter_config = "meter.yaml"\naggregate_s = 60\nlive_s = 1\n'])
    concentrator = Concentrator.from_config(load_config(config))
    stop = asyncio.Event()
    task = asyncio.create_task(concentrator.run(stop), name="concentrator-under-test")
    watcher, live = session_for(mosquitto, CLOUD.username), Inbox()
    async with watcher:
        try:
            await wait_for(lambda: concentrator.open_ports == 1, what="the P1 port open")
            await sim.start()
            await wait_for(lambda: concentrator.p1_readers[path].stats.telegrams_ok == TELEGRAMS,
                           what="every telegram read")
            fields = '"OBIS_1.7.0", "OBIS_1.7.0__mean", "OBIS_1.7.0__min", "OBIS_1.7.0__max", "interval_s", "OBIS_1.8.1"'
            await wait_for(lambda: len(stored(influxd, influx_db, METER, fields=fields)) == 3, timeout=30,
                           what="the three closed intervals in InfluxDB")
            await watcher.subscribe(f"concentrator/conc-1/live/{METER}", live.handler)
            latest = await live.wait_for(lambda m: True, timeout=15)
        finally:
            await sim.stop()
            stop.set()
            await asyncio.wait_for(task, 20)

    rows = stored(influxd, influx_db, METER, fields=fields)
    # Three intervals closed as the telegrams came; the fourth went to the outbox when the reader
    # stopped, and is forwarded at the next start.
    outbox = Outbox(tmp_path / "outbox.sqlite")
    try:
        [held] = [MeterReading.model_validate_json(m.payload) for m in outbox.after(0, limit=1000)
                  if "/smartMeterMessage/" in m.topic]  # (the power failure log event waits too: no events consumer)
    finally:
        outbox.close()
    assert held.reading_time == model.timestamp(TELEGRAMS - 1) and held.interval.seconds == 59
    for k, (at, last, mean, low, high, seconds, energy) in enumerate(rows):
        telegrams = range(60 * k, 60 * k + 60)
        power = [model.power_delivered_w(n) / 1000 for n in telegrams]
        assert at == model.timestamp(telegrams[-1])  # the last sample's time
        assert (last, low, high) == (power[-1], min(power), max(power))
        assert mean == pytest.approx(statistics.fmean(power))
        assert seconds == 59.0
        assert energy == float(model.values_at(telegrams[-1]).delivered_t1)
    assert json.loads(latest.payload)["readingTime"].startswith("2026-03-02T")  # the latest, not via the outbox
    assert latest.retain or latest.topic.endswith(METER)


async def test_refused_telegrams_show_in_the_status_with_a_reason_and_a_cut_one_is_logged(
        tmp_path: Path, mosquitto, caplog) -> None:
    (tmp_path / "meter.yaml").write_text(yaml.safe_dump({
        "meterIndividualId": METER, "physicalMeterClass": "ELECTRICITY", "protocol": "p1"}))
    sim = P1Simulator(model=MeterModel(start=T0, gas_channel=None), interval=0.005, count=20,
                      corrupt_crc_every=4, truncate_every=5)
    kinds = [sim.telegram_kind(n) for n in range(20)]
    path = sim.open()
    config = write_config(tmp_path, mqtt_port=mosquitto.port, meters=[
        f'[[meters]]\nprotocol = "p1"\nport = "{path}"\nadapter_config = "meter.yaml"\n'],
        live_batch="enabled = true\nwindow_s = 0.5\nmax_readings = 40")  # on: the status says so too
    concentrator = Concentrator.from_config(load_config(config))
    stop = asyncio.Event()
    task = asyncio.create_task(concentrator.run(stop), name="concentrator-under-test")
    try:
        await wait_for(lambda: concentrator.open_ports == 1, what="the P1 port open")
        await sim.start()
        await wait_for(lambda: concentrator.p1_readers[path].stats.telegrams_ok == kinds.count("ok"),
                       what="every good telegram read")
        [health] = [m for m in concentrator._status("ONLINE").meters if m.meter_id == METER]
        wire = json.loads(concentrator._status("ONLINE").to_wire())
    finally:
        await sim.stop()
        stop.set()
        await asyncio.wait_for(task, 20)
    assert health.telegram_errors["crc"] == kinds.count("corrupt")
    # A telegram is known to be cut short when the next one starts: the last one (n = 19) never is.
    assert kinds[-1] == "truncated"
    assert health.telegram_errors["truncated"] == kinds[:-1].count("truncated")
    assert health.telegram_errors["droppedBytes"] > 0
    assert health.last_telegram_error  # the reason of the last one refused
    assert wire["meters"][0]["telegramErrors"]["crc"] == kinds.count("corrupt")
    assert wire["liveBatch"] == {"enabled": True, "windowSeconds": 0.5, "maxReadings": 40}
    assert any("cut short" in r.getMessage() for r in caplog.records)
