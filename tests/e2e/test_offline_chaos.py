"""Chaos around an offline boot (issue 18): the broker is SIGKILLed before the concentrator
starts, comes up, is SIGKILLed again mid-stream, and the concentrator is SIGKILLed and started
again while the broker is still down. Every telegram the concentrator read is stored once, with
the value the meter sent; the only telegrams missing are those sent while no process held the
P1 port (push-only: nobody read them).

The concentrator sends its live readings in live batches (concentrator/conc-1/batch/meterReading):
what a kill interrupts is a batch, and each of its readings must still arrive once. The same kills
with a reading per message on the meter's OMDP topic are tests/e2e/test_p1_to_api.py's."""

from __future__ import annotations

import asyncio

from tests.e2e.conftest import (
    concentrator_process,
    expected_energy,
    outbox_reading_times,
    port_open_logged,
    simulator,
    stored_energy,
    wait_for,
    write_concentrator_files,
)


def runs(indexes: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs of sorted telegram numbers, as (first, last) pairs."""
    out: list[tuple[int, int]] = []
    for n in indexes:
        if out and n == out[-1][1] + 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


async def test_broker_and_concentrator_sigkilled_around_offline_boots_lose_and_duplicate_nothing(
        tmp_path, mosquitto, influxd, influx_db, ingest):
    count = 2000
    sim = simulator(count, interval=0.01)
    config = write_concentrator_files(tmp_path / "edge", port=sim.open(), mqtt_port=mosquitto.port, live_batch=True)
    config.write_text(config.read_text().replace('password = "conc-1-pw"\n',
                                                 'password = "conc-1-pw"\nreconnect_max = 1\n'))
    outbox = config.parent / "outbox.sqlite"
    await asyncio.to_thread(mosquitto.kill)  # the cabinet rebooted, and the link is not there yet
    proc = concentrator_process(config)
    proc.start()
    try:
        await wait_for(lambda: port_open_logged(config, 1), what="the P1 port open with no broker")
        await sim.start()
        await wait_for(lambda: len(outbox_reading_times(outbox)) >= 100, what="readings buffered offline")
        await asyncio.to_thread(mosquitto.start)
        await wait_for(lambda: len(stored_energy(influxd, influx_db)) >= 200, what="the backlog flowing")

        await asyncio.to_thread(mosquitto.kill)
        await wait_for(lambda: len(outbox_reading_times(outbox)) >= 50, what="a backlog after the broker died")
        proc.kill()
        pending = outbox_reading_times(outbox)
        proc.start()  # a second offline boot: the broker is still down
        await wait_for(lambda: port_open_logged(config, 2), what="the restarted concentrator's P1 port")
        await wait_for(lambda: len(outbox_reading_times(outbox) - pending) >= 50, what="readings of the second boot")
        await asyncio.to_thread(mosquitto.start)

        await wait_for(lambda: sim.done.is_set(), what="the simulator to finish")
        last = sim.model.timestamp(count - 1)
        await wait_for(lambda: last in {t for t, _, _ in stored_energy(influxd, influx_db)}, what="the last reading")
        await wait_for(lambda: len(outbox_reading_times(outbox)) == 0, what="the outbox to drain")
    finally:
        proc.stop()
        await sim.stop()

    stored = stored_energy(influxd, influx_db)
    expected = expected_energy(sim.model, count)
    number = {sim.model.timestamp(n): n for n in range(count)}
    assert all(expected[t] == v for t, v, _ in stored)            # the values the meter sent
    assert len({rid for _, _, rid in stored}) == len(stored)      # once each
    assert pending <= {t for t, _, _ in stored}                   # the killed process's backlog arrived
    # Everything from the first telegram to the last, but for one gap: the restart, when no process read.
    spans = runs(sorted(number[t] for t, _, _ in stored))
    assert spans[0][0] == 0 and spans[-1][1] == count - 1 and len(spans) <= 2, spans
    assert await ingest.dead_letters.count() == 0
    assert ingest.consumer.batches > 0 and ingest.consumer.stored_messages >= len(stored)  # they came in batches
