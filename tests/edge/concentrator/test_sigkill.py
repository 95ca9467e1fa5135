"""A concentrator SIGKILLed mid-poll and restarted loses no interval: it backfills the gap from the
DLMS load profile, so the store holds every 15-minute interval exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edge.dlms import SecurityMode
from edge.dlms.meter_model import floor_to_period
from tests.edge.concentrator.conftest import (
    PERIOD,
    ManualClock,
    concentrator_process,
    dlms_entry,
    dlms_simulator,
    stored,
    wait_for,
    write_config,
)

ENERGY_T1 = "1.0.1.8.1.255"


def aligned(rows: list[tuple]) -> dict[datetime, tuple]:
    return {t: rest for t, *rest in rows if t.timestamp() % PERIOD.total_seconds() == 0}


async def test_sigkilled_concentrator_backfills_every_interval_after_restart(tmp_path, mosquitto, influxd,
                                                                            influx_db, ingest):
    # The meter's clock is the test's: it starts at our real "now" (the concentrator process
    # has the real clock) and jumps two hours while the concentrator is dead.
    clock = ManualClock(floor_to_period(datetime.now(UTC)))
    start = clock.now - timedelta(hours=1)
    async with dlms_simulator(clock, SecurityMode.HLS_GMAC, serial="GWHLS0000009") as sim:
        config = write_config(tmp_path, mqtt_port=mosquitto.port, initial_hours=1,
                              meters=[dlms_entry("hls-9", sim, interval=0.1)])
        text = config.read_text().replace("lookahead_hours = 1", "lookahead_hours = 3")
        config.write_text(text)
        proc = concentrator_process(config)
        proc.start()
        await wait_for(lambda: len(aligned(stored(influxd, influx_db, "hls-9"))) >= 5, what="the first backfill")
        served = sim.frames_served
        await wait_for(lambda: sim.frames_served > served + 20, what="polls under way")
        proc.kill()  # polls run every 0.1 s: the kill lands in or near one
        clock.advance(timedelta(hours=2))
        proc.start()
        newest = clock.now
        await wait_for(lambda: newest in aligned(stored(influxd, influx_db, "hls-9")), timeout=30,
                       what="the backfill after the restart")
        served = sim.frames_served
        await wait_for(lambda: sim.frames_served > served + 10, what="polls after the restart")
        proc.stop()

    intervals = aligned(stored(influxd, influx_db, "hls-9"))
    expected = [start + k * PERIOD for k in range(int((newest - start) / PERIOD) + 1)]  # 13: 1 h before, 2 h dead
    assert len(expected) == 13
    assert [t for t in sorted(intervals) if start <= t <= newest] == expected
    for t in expected:
        energy, historical = intervals[t]
        if historical:  # a live reading landing on the same second would carry the meter's "now"
            assert energy == pytest.approx(sim.model.energy_at(ENERGY_T1, t) / 1000)
    log = (tmp_path / "concentrator.log").read_text()
    assert log.count("backfilled") >= 2
