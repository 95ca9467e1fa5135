"""The external adapter on a P1 meter (DSMR telegrams from a pty, read by the edge's P1 reader)
and on a DLMS meter (polled), through the concentrator's local listener to InfluxDB with the
meters' own values."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from edge.concentrator import Concentrator
from edge.config import load_config
from edge.dlms import SecurityMode
from edge.p1.simulator import MeterModel, P1Simulator, _Accumulator
from edge.standalone import StandaloneAdapter, load_standalone_config
from tests.edge.adapters.conftest import PASSWORDS
from tests.edge.concentrator.conftest import ManualClock, dlms_entry, dlms_simulator, stored
from tests.fixtures.waiting import wait_for

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def stored_energy(influxd, db: str) -> dict[datetime, float]:
    doc = influxd.query("SELECT \"OBIS_1.8.1\" FROM meter_reading WHERE meter = 'meter-a'", database=db)
    return {datetime.fromtimestamp(row[0] / 1e9, UTC): row[1]
            for s in doc["results"][0].get("series", []) for row in s["values"]}


async def test_a_p1_meter_on_another_device_reaches_the_store(tmp_path, local_broker, influxd, influx_db, ingest):
    config_path, local = local_broker
    model = MeterModel(start=T0, gas_channel=None)
    sim = P1Simulator(model=model, interval=0.05)
    port = sim.open()
    adapter_path = tmp_path / "adapter.toml"
    (tmp_path / "cupboard.yaml").write_text((config_path.parent / "cupboard.yaml").read_text())
    adapter_path.write_text(
        f'adapter_id = "cupboard"\noutbox = "adapter-outbox.sqlite"\nconfirm_timeout = 2\n\n'
        f'[listener]\nport = {local.port}\npassword = "{PASSWORDS["cupboard"]}"\n\n'
        f'[meter]\nprotocol = "p1"\nport = "{port}"\nadapter_config = "cupboard.yaml"\nforward = "every"\n'
        'batch_s = 0\n')
    concentrator = Concentrator.from_config(load_config(config_path))
    adapter = StandaloneAdapter.from_config(load_standalone_config(adapter_path))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(concentrator.run(stop), name="concentrator"),
             asyncio.create_task(adapter.run(stop), name="adapter")]
    try:
        await wait_for(lambda: adapter.session.connected.is_set(), what="the adapter on the local listener")
        await sim.start()
        await wait_for(lambda: len(stored_energy(influxd, influx_db)) >= 10, what="telegrams stored")
    finally:
        await sim.stop()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 20)

    state, expected = _Accumulator(model), {}
    for n in range(sim.sent):
        expected[model.timestamp(n)] = float(state.values(n).delivered_t1)
        state.add(n)
    stored = stored_energy(influxd, influx_db)
    assert stored and all(stored[t] == pytest.approx(expected[t]) for t in stored)
    assert concentrator.intake is not None and concentrator.intake.refused == {}


async def test_a_dlms_meter_on_another_device_reaches_the_store(tmp_path, local_broker, influxd, influx_db, ingest):
    """The adapter polls a DLMS meter (HLS-GMAC) with the concentrator's own DLMS adapter and poller."""
    config_path, local = local_broker
    clock = ManualClock(T0)
    async with dlms_simulator(clock, SecurityMode.HLS_GMAC, serial="GWHLS0000016") as sim:
        adapter_path = tmp_path / "adapter.toml"
        adapter_path.write_text(
            'adapter_id = "heat"\noutbox = "adapter-outbox.sqlite"\ninvocation_counters = "counters.sqlite"\n\n'
            f'[listener]\nport = {local.port}\npassword = "{PASSWORDS["heat"]}"\n\n'
            + dlms_entry("meter-h", sim, interval=0.2).replace("[[meters]]", "[meter]"))
        concentrator = Concentrator.from_config(load_config(config_path))
        adapter = StandaloneAdapter.from_config(load_standalone_config(adapter_path))
        stop = asyncio.Event()
        tasks = [asyncio.create_task(concentrator.run(stop), name="concentrator"),
                 asyncio.create_task(adapter.run(stop), name="adapter")]
        try:
            await wait_for(lambda: len(stored(influxd, influx_db, "meter-h")) >= 3, what="DLMS polls stored")
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 20)
    rows = stored(influxd, influx_db, "meter-h")
    # The simulator's clock stands still: each poll reads the meter's register at T0.
    assert all(energy == pytest.approx(sim.model.energy_at("1.0.1.8.1.255", T0) / 1000) for _, energy, _ in rows)
    assert adapter.forwarder.rejected == []
