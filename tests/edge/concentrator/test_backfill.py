"""Gap backfill from the DLMS load profile: an outage leaves no hole in the store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.edge.concentrator.conftest import PERIOD, T0, dlms_entry, stored, wait_for, write_config

ENERGY_T1 = "1.0.1.8.1.255"


async def test_meter_down_for_two_hours_is_backfilled_interval_by_interval(
        tmp_path, mosquitto, influxd, influx_db, ingest, clock, lls_sim, run_concentrator):
    config = write_config(tmp_path, mqtt_port=mosquitto.port, meters=[dlms_entry("lls-1", lls_sim)],
                          initial_hours=0)
    run = await run_concentrator(config, clock=clock)
    concentrator = run.concentrator
    await wait_for(lambda: any(t == T0 for t, *_ in stored(influxd, influx_db, "lls-1")), what="a reading at T0")

    back = T0 + timedelta(hours=2, minutes=7)
    lls_sim.add_down_window(T0 + timedelta(minutes=1), back)
    clock.advance(timedelta(hours=1))
    await wait_for(lambda: not concentrator.poller.health_of("lls-1").healthy, what="the meter to be unhealthy")
    clock.now = back
    await wait_for(lambda: concentrator.backfiller.runs >= 2, what="the recovery backfill")
    await wait_for(lambda: len(concentrator.outbox) == 0 and any(t == back for t, *_ in
                                                                 stored(influxd, influx_db, "lls-1")),
                   what="everything stored")
    completeness = concentrator.completeness("lls-1", 1)
    await run.finish()

    rows = stored(influxd, influx_db, "lls-1")
    in_window = [(t, energy, historical) for t, energy, historical in rows if T0 < t < back]
    expected = [T0 + k * PERIOD for k in range(1, 9)]                        # 12:15 .. 14:00
    assert [t for t, _, _ in in_window] == expected
    assert all(historical for _, _, historical in in_window)
    assert [e for _, e, _ in in_window] == pytest.approx(
        [lls_sim.model.energy_at(ENERGY_T1, t) / 1000 for t in expected])
    # 12:00 .. 14:00 hold readings: 9 of the 57 intervals begun by 14:07 on that day.
    assert completeness == {T0.date().isoformat(): round(9 / 57, 4)}
