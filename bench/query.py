"""Query latency of the OMDP API for a day of 15-minute readings of 1,000 meters.

Starts its own influxd, stores 1,000 meters x 96 readings (5 properties each) through the
real InfluxStore, then times ``POST /v1/meterReadings`` through the real FastAPI app (in
process, over ASGI, with a bearer token) for typical questions, and a full bulk download.
Also the same day as a CSV bulk download. The load average is printed before and after: other
work on the machine skews the figures, so compare runs made back to back.
Run: ``.venv/bin/python bench/query.py [--meters 1000] [--repeat 5] [--chunk 5000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from broker.schemas import MeterReading
from cloud.api.app import create_app
from cloud.auth import ADMIN_SCOPE, issue_token
from cloud.settings import ApiSettings, InfluxSettings
from cloud.store.influx import InfluxStore
from gridwire.procs import free_port
from gridwire.services import LocalInfluxd

DAY = datetime(2026, 3, 2, tzinfo=UTC)
SECRET = "bench-query-secret-not-for-production"


def readings(meter: str) -> list[MeterReading]:
    out = []
    for i in range(96):
        when = DAY + timedelta(minutes=15 * i)
        values = [("OBIS_1.8.1", 1000 + i * 0.25, "kWh"), ("OBIS_1.8.2", 2000 + i * 0.1, "kWh"),
                  ("OBIS_1.7.0", (i % 17) * 0.1, "kW"), ("OBIS_32.7.0", 229 + (i % 5), "V"),
                  ("OBIS_31.7.0", (i % 9) * 1.5, "A")]
        out.append(MeterReading.model_validate({
            "meterReadingIdentifier": str(MeterReading.derive_id(meter, when)), "readingTime": when.isoformat(),
            "propertyValues": [{"unit": u, "date": when.isoformat(), "numericalValue": v,
                                "operationalPropertyDefinition": {"propertyId": p}} for p, v, u in values],
            "meterIndividual": {"meterIndividualId": meter}}))
    return out


async def timed(api: httpx.AsyncClient, body: dict, repeat: int) -> tuple[float, float, dict]:
    samples, answer = [], {}
    for _ in range(repeat):
        start = time.perf_counter()
        response = await api.post("/v1/meterReadings", json=body)
        samples.append(time.perf_counter() - start)
        response.raise_for_status()
        answer = response.json()
    return statistics.median(samples), max(samples), answer


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


async def main(meters: int, repeat: int, chunk: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        influxd = LocalInfluxd(directory=Path(tmp), port=free_port())
        influxd.start()
        try:
            store = InfluxStore(url=influxd.url, database="bench")
            await store.ensure_database()
            ids = [f"meter-{n:05d}" for n in range(meters)]
            start = time.perf_counter()
            for first in range(0, meters, 50):
                await store.write_readings([r for m in ids[first:first + 50] for r in readings(m)])
            print(load())
            print(f"stored {meters * 96} readings ({meters} meters x 96) in {time.perf_counter() - start:.1f} s")
            app = create_app(settings=ApiSettings(influx=InfluxSettings(url=influxd.url, database="bench"),
                                                  jwt_secret=SECRET, bulk_threshold_rows=200_000,
                                                  bulk_chunk_rows=chunk), store=store)
            token = issue_token(secret=SECRET, org="bench", scopes=[ADMIN_SCOPE])
            day = {"readingTimeStart": DAY.isoformat(), "readingTimeEnd": (DAY + timedelta(days=1)).isoformat()}
            cases = {
                "whole day, first page of 1,000": {**day, "pageSize": 1000},
                "whole day, page 50 of 1,000": {**day, "pageSize": 1000, "pageNumber": 50},
                "one meter's day (96 rows)": {**day, "meterIndividualIds": [ids[meters // 2]], "pageSize": 100},
                "100 meters' day, filter power > 1 kW": {
                    **day, "meterIndividualIds": ids[:100], "pageSize": 1000,
                    "operationalProperties": [{"propertyId": "OBIS_1.7.0", "numericalValueGreaterThan": 1.0}]},
            }
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                         headers={"Authorization": f"Bearer {token}"}, timeout=300) as api:
                for name, body in cases.items():
                    median, worst, answer = await timed(api, body, repeat)
                    print(f"{name:42s} median {median * 1000:7.1f} ms  max {worst * 1000:7.1f} ms  "
                          f"({len(answer['meterReadings'])} of {answer['totalRows']} rows)")
                for fmt in ("ndjson", "csv"):
                    start = time.perf_counter()
                    link = (await api.post("/v1/meterReadings",
                                           json={**day, "responseFormat": "bulk", "bulkFormat": fmt})).json()
                    lines = 0
                    async with api.stream("GET", link["bulkDownload"]["url"]) as response:
                        async for line in response.aiter_lines():
                            lines += bool(line)
                    took = time.perf_counter() - start
                    what = "readings" if fmt == "ndjson" else "rows (one per value, with header)"
                    print(f"{'whole day as ' + fmt.upper() + ' bulk download':42s} {took:7.2f} s for {lines} {what} "
                          f"({meters * 96 / took:,.0f} readings/s)")
            print(load())
            await store.aclose()
        finally:
            influxd.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=5000, help="rows per InfluxDB chunk of a bulk download")
    args = parser.parse_args()
    asyncio.run(main(args.meters, args.repeat, args.chunk))
