"""One reading path end to end, and the two failures it must survive without loss."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from edge.concentrator import Concentrator
from edge.config import load_config
from tests.e2e.conftest import (
    METER,
    T0,
    concentrator_process,
    expected_energy,
    outbox_reading_times,
    port_open_logged,
    simulator,
    stored_energy,
    wait_for,
    write_concentrator_files,
)


async def run_concentrator(config_path):
    concentrator = Concentrator.from_config(load_config(config_path))
    stop = asyncio.Event()
    task = asyncio.create_task(concentrator.run(stop), name="concentrator-under-test")
    await wait_for(lambda: concentrator.open_ports == 1, what="the P1 port to be open")
    return concentrator, stop, task


async def test_p1_reading_reaches_the_api_with_its_values(tmp_path, mosquitto, influxd, influx_db, ingest, api):
    count = 120
    sim = simulator(count)
    config = write_concentrator_files(tmp_path / "edge", port=sim.open(), mqtt_port=mosquitto.port)
    concentrator, stop, task = await run_concentrator(config)
    await sim.start()
    await wait_for(lambda: ingest.consumer.stored_messages >= count, what="all readings stored")
    stop.set()
    await task
    await sim.stop()

    readings = await api.readings(T0 - timedelta(minutes=1), T0 + timedelta(hours=1), page_size=50)
    expected = expected_energy(sim.model, count)
    assert len(readings) == count
    got = {}
    for r in readings:
        assert r["meterIndividual"]["meterIndividualId"] == METER
        values = {pv["operationalPropertyDefinition"]["propertyId"]: pv for pv in r["propertyValues"]}
        assert values["OBIS_1.8.1"]["unit"] == "kWh"
        got[r["readingTime"]] = values["OBIS_1.8.1"]["numericalValue"]
    assert got == {t.isoformat().replace("+00:00", "Z"): v for t, v in expected.items()}
    assert len(concentrator.outbox) == concentrator.events.submitted  # only the power failure log's event waits


@pytest.mark.parametrize("how", ["restart", "sigkill"])
async def test_broker_failure_mid_stream_loses_and_duplicates_nothing(tmp_path, mosquitto, influxd, influx_db,
                                                                       ingest, how):
    """restart: a clean stop (the broker saves its sessions and queues) and a start.
    sigkill: the broker forgets everything since its last save (sessions, their subscriptions
    and queued messages; its autosave interval is 30 s, so here that is all of it). Either way
    the concentrator's outbox sends again what the cloud never confirmed: every reading is
    stored, once."""
    count = 600
    sim = simulator(count, interval=0.01)
    config = write_concentrator_files(tmp_path / "edge", port=sim.open(), mqtt_port=mosquitto.port)
    concentrator, stop, task = await run_concentrator(config)
    await sim.start()
    await wait_for(lambda: ingest.consumer.stored_messages >= 100, what="first readings")
    connections = concentrator.session.connections
    if how == "restart":
        await asyncio.to_thread(mosquitto.restart)
    else:
        await asyncio.to_thread(mosquitto.kill)
        await asyncio.to_thread(mosquitto.start)
    await wait_for(lambda: concentrator.session.connections > connections, what="the concentrator to reconnect")
    await wait_for(lambda: sim.done.is_set() and len(concentrator.outbox) == concentrator.events.submitted,
                   what="stream drained")
    await wait_for(lambda: len(stored_energy(influxd, influx_db)) >= count, what="every reading stored")
    stop.set()
    await task
    await sim.stop()

    stored = stored_energy(influxd, influx_db)
    assert len(stored) == count
    assert {t: v for t, v, _ in stored} == expected_energy(sim.model, count)
    assert len({rid for _, _, rid in stored}) == count


async def test_sigkilled_concentrator_loses_nothing_it_had_accepted(tmp_path, mosquitto, influxd, influx_db, ingest):
    """SIGKILL while readings sit unacknowledged in the outbox (the broker is away at that
    moment, so there are some): after a restart every one of them is stored exactly once.

    P1 is push-only: telegrams the meter sends while no process holds the port open are
    never received (pyserial also flushes the port on open), so the stream after the kill
    resumes from the next telegram read; that gap is the meter's, not a loss of ours.
    """
    count = 1500
    sim = simulator(count, interval=0.01)
    config = write_concentrator_files(tmp_path / "edge", port=sim.open(), mqtt_port=mosquitto.port)
    proc = concentrator_process(config)
    proc.start()
    await wait_for(lambda: port_open_logged(config, 1), what="the concentrator's P1 port to be open")
    await sim.start()
    await wait_for(lambda: len(stored_energy(influxd, influx_db)) >= 100, what="first readings stored")
    await asyncio.to_thread(mosquitto.stop)
    outbox = config.parent / "outbox.sqlite"
    await wait_for(lambda: len(outbox_reading_times(outbox)) >= 50, what="a backlog in the outbox")
    proc.kill()
    pending = outbox_reading_times(outbox)
    stored_before = {t for t, _, _ in stored_energy(influxd, influx_db)}

    await asyncio.to_thread(mosquitto.start)
    proc.start()
    await wait_for(lambda: port_open_logged(config, 2), what="the restarted concentrator's P1 port")
    await wait_for(lambda: sim.done.is_set(), what="the simulator to finish")
    last = sim.model.timestamp(count - 1)
    await wait_for(lambda: last in {t for t, _, _ in stored_energy(influxd, influx_db)}, what="the last reading")
    await wait_for(lambda: len(outbox_reading_times(outbox)) == 0, what="the outbox to drain")
    proc.stop()
    await sim.stop()

    stored = stored_energy(influxd, influx_db)
    times = [t for t, _, _ in stored]
    assert len(times) == len(set(times))                       # nothing twice
    assert pending <= set(times)                               # everything accepted arrived
    assert stored_before <= set(times)
    assert len(pending) >= 50
    expected = expected_energy(sim.model, count)
    assert all(expected[t] == v for t, v, _ in stored)         # the values the meter sent
    assert len({rid for _, _, rid in stored}) == len(stored)
