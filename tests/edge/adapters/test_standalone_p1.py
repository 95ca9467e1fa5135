"""The external adapter on a P1 meter: DSMR telegrams from a pty, read by the edge's P1 reader in
the adapter, through the concentrator's local listener to InfluxDB with the meter's own values."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from edge.concentrator import Concentrator
from edge.config import load_config
from edge.p1.simulator import MeterModel, P1Simulator, _Accumulator
from edge.standalone import StandaloneAdapter, load_standalone_config
from tests.edge.adapters.conftest import PASSWORDS
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
