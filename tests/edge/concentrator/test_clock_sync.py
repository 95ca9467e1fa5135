"""Meter clocks kept right: the concentrator takes the cloud's time from the time service over
MQTT, sets a DLMS meter whose clock is off past the threshold, and reports each measurement."""

from __future__ import annotations

import asyncio

from broker import topics
from broker.schemas.timesync import DriftReport
from broker.session import Message
from cloud.timesync.consumer import TimeService
from tests.edge.concentrator.conftest import dlms_entry, wait_for, write_config
from tests.fixtures.ingest import cloud_session


async def test_drifted_meter_clock_is_set_and_drift_is_reported(tmp_path, mosquitto, clock, lls_sim,
                                                                run_concentrator):
    config = write_config(tmp_path, mqtt_port=mosquitto.port, initial_hours=0,
                          meters=[dlms_entry("m-clock", lls_sim, interval=60)])
    config.write_text(config.read_text().replace("confirm_timeout = 5\n",
                                                 "confirm_timeout = 5\nclock_check_interval = 0.3\n"
                                                 "clock_drift_threshold = 5\n"))
    reports: list[DriftReport] = []

    async def on_drift(message: Message) -> None:
        reports.append(DriftReport.model_validate_json(message.payload))

    cloud = cloud_session(mosquitto)
    await cloud.connect()
    try:
        await TimeService(session=cloud).start()
        await cloud.subscribe(topics.concentrator_time("conc-1", "drift"), on_drift)
        # The simulated meter runs on the test's hand-moved clock, months away from real time.
        running = await run_concentrator(config, clock=clock)
        await wait_for(lambda: len(reports) >= 3, timeout=30, what="three drift reports")
        await running.finish()
    finally:
        await cloud.close()
    first, *later = reports
    assert first.meter_id == "m-clock" and first.corrected and abs(first.drift_seconds) > 86400
    assert all(not r.corrected and abs(r.drift_seconds) < 5 for r in later), later
