"""Ingest's metrics through a real Prometheus: after known traffic, PromQL answers with it."""

from __future__ import annotations

import asyncio

import httpx

from tests.cloud.ingest.rig import Concentrator, IngestProcess, batch_payload
from tests.fixtures.procs import free_port
from tests.fixtures.waiting import wait_for


MESSAGES, PER_MESSAGE = 100, 10


async def test_prometheus_counts_every_reading_two_ingests_stored(mosquitto, influxd, influx_db, tmp_path,
                                                                  prometheus) -> None:
    ports = [free_port(), free_port()]
    ingests = [IngestProcess(mosquitto=mosquitto, influxd=influxd, database=influx_db, client_id=f"ingest-{n}",
                             directory=tmp_path, env={"GRIDWIRE_METRICS_PORT": str(port)})
               for n, port in enumerate(ports)]
    try:
        await asyncio.gather(*(asyncio.to_thread(i.start) for i in ingests))
        server = prometheus({"ingest": [f"127.0.0.1:{port}" for port in ports]})
        await wait_for(lambda: set(server.targets_up().values()) == {"up"} and len(server.targets_up()) == 2,
                       what="both ingest processes scraped", interval=0.2)
        async with Concentrator(mosquitto) as conc:
            await asyncio.gather(*(conc.publish(k + 1, f"m{k % 10}", batch_payload(f"m{k % 10}", k * 10, PER_MESSAGE))
                                   for k in range(MESSAGES)))
            await conc.publish(MESSAGES + 1, "m0", b'{"not": "a reading"}')
            await conc.wait_acked(lambda acked: len(acked) == MESSAGES + 1)

        def settled() -> bool:
            return (server.value("sum(gridwire_ingest_readings_total)") == MESSAGES * PER_MESSAGE
                    and server.value("sum(gridwire_ingest_messages_total)") == MESSAGES
                    and server.value('sum(gridwire_ingest_dead_letters_total{reason="invalid"})') == 1)

        await wait_for(settled, what="Prometheus to scrape what ingest stored", interval=0.25)
        # Per write, not per reading: the histograms count writes, and their sizes add up to the readings.
        writes = server.value("sum(gridwire_ingest_writes_total)")
        assert writes == server.value("sum(gridwire_ingest_write_seconds_count)")
        assert writes == server.value("sum(gridwire_ingest_lag_seconds_count)")
        assert server.value("sum(gridwire_ingest_batch_readings_sum)") == MESSAGES * PER_MESSAGE
        assert 1 <= writes <= MESSAGES
        assert server.value("sum(gridwire_mqtt_handling)") == 0
        assert server.value('count(gridwire_process_info{process="ingest"})') == 2
        # Cardinality: no meter or concentrator id appears as a label anywhere.
        for port in ports:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            assert "m0" not in text and "conc-1" not in text
    finally:
        for ingest in ingests:
            ingest.stop()
