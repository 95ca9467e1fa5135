"""InfluxDB away for 30 s while a concentrator keeps publishing to an ingest process: nothing lost,
nothing confirmed while it is away, the backlog drains once it is back, no duplicates."""

from __future__ import annotations

import asyncio

from tests.cloud.ingest.rig import Concentrator, IngestProcess, batch_payload, expected_points, stored_points

PER_MESSAGE = 10
OUTAGE = 30.0


def message(k: int) -> tuple[str, int]:
    return f"m{k % 5}", (k // 5) * PER_MESSAGE


async def test_influxdb_stopped_for_30s_mid_stream(mosquitto, influxd, influx_db, tmp_path):
    ingest = IngestProcess(mosquitto=mosquitto, influxd=influxd, database=influx_db, client_id="ingest-outage",
                           directory=tmp_path)
    await asyncio.to_thread(ingest.start)
    published = 0
    streaming = True

    async def stream(conc: Concentrator) -> None:
        # A concentrator's steady flow: ten messages a second, whatever happens to the cloud.
        nonlocal published
        while streaming:
            k = published
            published += 1
            await conc.publish(k + 1, message(k)[0], batch_payload(*message(k), PER_MESSAGE))
            await asyncio.sleep(0.1)  # the pace is the scenario, not a wait

    try:
        async with Concentrator(mosquitto) as conc:
            flow = asyncio.create_task(stream(conc))
            await conc.wait_acked(lambda acked: len(acked) >= 10)
            await asyncio.to_thread(influxd.stop)
            stopped_at = published
            await asyncio.sleep(OUTAGE)  # the outage is the scenario: influxd stays away this long
            # A write in flight when influxd went away may have been confirmed since; nothing
            # published after it was gone can have been (its acknowledgement waits for a write).
            assert max(conc.acked) <= stopped_at
            assert published >= stopped_at + 150  # the stream went on (paced at ~10/s)
            await asyncio.to_thread(influxd.start)
            await conc.wait_acked(lambda acked: len(acked) >= published - 5, timeout=60)
            streaming = False
            await flow
            await conc.wait_acked(lambda acked: acked >= set(range(1, published + 1)), timeout=30)
    finally:
        await asyncio.to_thread(ingest.stop)
    summary = ingest.summary()
    assert summary["retries"] >= 2 and summary["dead"] == 0
    points = stored_points(influxd, influx_db)
    want: dict = {}
    for k in range(published):
        want.update(expected_points(*message(k), PER_MESSAGE))
    assert points == want
