"""DLMS (LLS and HLS) and Modbus meters on one concentrator: their readings reach InfluxDB."""

from __future__ import annotations

import pytest

from tests.edge.concentrator.conftest import PERIOD, T0, dlms_entry, modbus_entry, stored, wait_for, write_config

ENERGY_T1 = "1.0.1.8.1.255"


async def test_dlms_lls_hls_and_modbus_readings_arrive_with_their_values(
        tmp_path, mosquitto, influxd, influx_db, ingest, clock, lls_sim, hls_sim, modbus_sim, run_concentrator):
    config = write_config(tmp_path, mqtt_port=mosquitto.port, meters=[
        dlms_entry("lls-1", lls_sim), dlms_entry("hls-1", hls_sim), modbus_entry("inv-1", modbus_sim)])
    run = await run_concentrator(config, clock=clock)

    def live(meter: str) -> list[tuple]:
        return [row for row in stored(influxd, influx_db, meter, fields='"OBIS_1.7.0", "OBIS_1.8.1", "OBIS_32.7.0"')
                if row[0] == T0 and row[1] is not None]

    await wait_for(lambda: live("lls-1") and live("hls-1"), what="live DLMS readings in InfluxDB")
    await wait_for(lambda: stored(influxd, influx_db, "inv-1", fields='"OBIS_2.8.0"'), what="the Modbus reading")
    await run.finish()

    for meter, sim in (("lls-1", lls_sim), ("hls-1", hls_sim)):
        (_, power, energy, voltage), = live(meter)
        assert energy == pytest.approx(sim.model.energy_at(ENERGY_T1, T0) / 1000)
        assert power == sim.model.power_at(T0)
        assert voltage == pytest.approx(sim.model.voltage_at(T0) / 10)
    rows = stored(influxd, influx_db, "inv-1", fields='"OBIS_2.8.0", "GW_inverter.activePowerLimit", "OBIS_2.7.0"')
    assert rows == [(T0, pytest.approx(12345.67), 100.0, pytest.approx(3.0))]
    # The start-up backfill read the hour before T0 from each DLMS meter's load profile.
    # (The T0 interval also has a live reading with the same id; whichever came last is stored.)
    history = {t: energy for t, energy, historical in stored(influxd, influx_db, "lls-1") if historical}
    expected = {T0 - k * PERIOD: lls_sim.model.energy_at(ENERGY_T1, T0 - k * PERIOD) / 1000 for k in range(1, 5)}
    assert {t: history[t] for t in expected} == pytest.approx(expected)
    assert set(history) <= {*expected, T0}
    health = {h.meter_id: h for h in run.concentrator.poller.health()}
    assert all(health[m].healthy and health[m].last_success for m in ("lls-1", "hls-1", "inv-1"))
