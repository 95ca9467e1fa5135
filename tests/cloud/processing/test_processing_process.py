"""``gridwire cloud processing`` as real processes on a real broker, influxd and PostgreSQL: the
worked example of docs/PROCESSING.md through the consumption API, exactly, with a processing
process SIGKILLed mid-stream and bad input on the way."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from cloud.processing.store import REGISTER
from gridwire.procs import ManagedProcess, free_port
from tests.cloud.ingest.rig import Concentrator, registered_fleet
from tests.cloud.processing import example
from tests.fixtures.waiting import poll_until, wait_until

ROOT = Path(__file__).resolve().parents[3]
METER = "meter-proc-1"


class ProcessingProcess:
    """``gridwire cloud processing`` with a stable MQTT client id, so a restart resumes its session."""

    def __init__(self, *, mosquitto, influxd, database: str, registry: str, client_id: str, directory: Path) -> None:
        self.log = directory / f"{client_id}.log"
        self.metrics_port = free_port()
        self.starts = 0
        env = {"GRIDWIRE_MQTT_HOST": mosquitto.host, "GRIDWIRE_MQTT_PORT": str(mosquitto.port),
               "GRIDWIRE_MQTT_USERNAME": "gridwire-cloud",
               "GRIDWIRE_MQTT_PASSWORD": mosquitto.credentials("gridwire-cloud")["password"],
               "GRIDWIRE_MQTT_CLIENT_ID": client_id, "GRIDWIRE_DATABASE_URL": registry,
               "GRIDWIRE_INFLUX_URL": influxd.url, "GRIDWIRE_INFLUX_DATABASE": database,
               "GRIDWIRE_METRICS_PORT": str(self.metrics_port)}
        self.process = ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", "cloud", "processing"],
                                      log=self.log, env=env, cwd=ROOT)

    def start(self) -> None:
        self.starts += 1
        self.process.start()

        def subscribed() -> bool:
            text = self.log.read_text(errors="replace") if self.log.exists() else ""
            assert self.process.running, f"processing exited:\n{text[-3000:]}"
            return text.count("subscribed to") >= self.starts

        wait_until(subscribed, timeout=60, what="processing to subscribe")


async def test_consumption_matches_the_worked_example_through_a_kill(mosquitto, influxd, influx_db, postgres_url,
                                                                     api, tmp_path) -> None:
    await registered_fleet(postgres_url, {"conc-1": [METER]})  # migrated; "another-meter" is unknown
    day = example.day_start(datetime.now(UTC))
    procs = [ProcessingProcess(mosquitto=mosquitto, influxd=influxd, database=influx_db, registry=postgres_url,
                               client_id=f"processing-{n}", directory=tmp_path) for n in (1, 2)]
    for proc in procs:
        proc.start()
    try:
        async with Concentrator(mosquitto, "conc-1") as concentrator:
            first = example.first_values()
            spike = first.pop(example.SPIKE)
            batch: list[tuple[int, bytes]] = []
            for seq, (k, value) in enumerate(first.items(), start=1):
                body = example.payload(METER, day + k * example.QUARTER, value)
                if k >= 150:  # the rest as live batches, as a concentrator with live_batch on sends them
                    batch.append((seq, body))
                    if len(batch) == 8:
                        await publish_batch(concentrator, batch)
                        batch = []
                    continue
                await concentrator.publish(seq, METER, body)
                if k == 60:
                    procs[0].process.kill()  # mid-stream, with messages of its share in flight
                    await concentrator.publish(10_000, METER, b"{not json")  # bad input on the way
                    await concentrator.publish(10_001, METER, example.payload("another-meter", day, 1.0))
                if k == 120:
                    procs[0].start()  # the same client id: its session's messages come back
            # An unknown meter's reading in a batch is skipped alone.
            await publish_batch(concentrator, [*batch, (10_002, example.payload("another-meter", day, 1.0))])
            await poll_until(lambda: registered(influxd, influx_db), lambda n: n == len(first), timeout=120,
                             what="every register value processed once")
            await concentrator.publish(20_000, METER,
                                       example.payload(METER, day + example.SPIKE * example.QUARTER, spike))
            headers = api.token("utility", meters=[METER])

            async def days() -> dict:
                return await answer(api, headers, "day", day, day + timedelta(days=2))

            assert await poll_until(days, lambda got: got == example.DAYS_FIRST, timeout=60,
                                    what="the first days' answer") == example.DAYS_FIRST
            quarters = await answer(api, headers, "15min", day, day + timedelta(days=1))
            assert {k: quarters[k] for k in example.QUARTERS_FIRST} == example.QUARTERS_FIRST
            hours = await answer(api, headers, "hour", day, day + timedelta(days=1))
            assert hours[40][:4] == example.HOUR_10

            # The meter's load profile fills the gap and the midnight (backfill, historical).
            for seq, (k, value) in enumerate(example.BACKFILL.items(), start=30_000):
                await concentrator.publish(seq, METER, example.payload(METER, day + k * example.QUARTER, value,
                                                                       historical=True))
            assert await poll_until(days, lambda got: got == example.DAYS_AFTER, timeout=60,
                                    what="the days' answer after the backfill") == example.DAYS_AFTER
            quarters = await answer(api, headers, "15min", day, day + timedelta(days=1))
            assert {k: quarters[k] for k in example.QUARTERS_AFTER} == example.QUARTERS_AFTER
            hours = await answer(api, headers, "hour", day, day + timedelta(days=1))
            assert hours[40][:4] == example.HOUR_10
            assert await registered(influxd, influx_db) == len(first) + 1 + len(example.BACKFILL)

            # The OMDP API's rules: another organisation's meter is not found, a thin answer is refused.
            other = await api.client.get(f"/v1/meters/{METER}/consumption", headers=api.token("other", meters=["x"]),
                                         params={"from": day.isoformat(), "to": (day + timedelta(days=1)).isoformat()})
            assert other.status_code == 404
            thin = await api.client.get(f"/v1/meters/{METER}/consumption", headers=headers, params={
                "interval": "hour", "from": day.isoformat(), "to": (day + timedelta(hours=2)).isoformat()})
            assert thin.status_code == 422 and "fewer than 20 readings" in thin.json()["detail"]
        for proc in procs:
            assert proc.process.running, proc.log.read_text()[-3000:]
        # The spike was judged once, by one of the two (counted since their last start).
        scraped = [httpx.get(f"http://127.0.0.1:{proc.metrics_port}/metrics", timeout=10).text for proc in procs]
        assert sum(_sample(text, 'gridwire_processing_failed_rules_total{rule="spike"}') for text in scraped) == 1
    finally:
        for proc in procs:
            proc.process.stop()
    logs = "".join(p.log.read_text() for p in procs)
    assert "skipping a message" in logs and "skipping a reading of a live batch" in logs


async def publish_batch(concentrator: Concentrator, readings: list[tuple[int, bytes]]) -> None:
    await concentrator.publish_batch([seq for seq, _ in readings],
                                     b'{"meterReadings":[%s]}' % b",".join(body for _, body in readings))


def _sample(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


async def registered(influxd, database: str) -> int:
    """How many register values are stored (one point per (meter, property, time): a repeat overwrites)."""
    doc = await asyncio.to_thread(influxd.query, f'SELECT count("value") FROM {REGISTER}', database=database)
    series = doc["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


async def answer(api, headers: dict[str, str], interval: str, start: datetime, end: datetime) -> dict[int, tuple]:
    """The API's values by interval start as a quarter index from ``start``."""
    response = await api.client.get(f"/v1/meters/{METER}/consumption", headers=headers, params={
        "interval": interval, "from": start.isoformat(), "to": end.isoformat()})
    if response.status_code != 200:
        return {"status": response.status_code, "body": response.text}  # type: ignore[dict-item]
    body = response.json()
    assert body["unit"] in ("kWh", None) and body["propertyId"] == example.PROPERTY
    out = {}
    for value in body["values"]:
        k = int((datetime.fromisoformat(value["start"]) - start) / example.QUARTER)
        out[k] = (value["value"], value["quality"], tuple(value["rules"]), value["method"], value["readings"])
    return out


async def test_the_consumption_api_refuses_what_it_cannot_answer(api) -> None:
    headers = api.token("utility", meters=[METER])
    path = f"/v1/meters/{METER}/consumption"
    cases = [({"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T00:00:00Z", "interval": "month"}, "years"),
             ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "after"),
             ({"from": "2026-01-01T00:00:00Z", "to": "2027-01-01T00:00:00Z", "interval": "15min"}, "more than"),
             ({"from": "2026-01-01T00:00:00", "to": "2026-01-02T00:00:00Z"}, "timezone"),
             ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "interval": "week"}, "15min"),
             ({"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}, "fewer than 20 readings")]
    for params, reason in cases:
        response = await api.client.get(path, headers=headers, params=params)
        assert response.status_code == 422 and reason in response.text, (params, response.text)
    assert (await api.client.get(path, params=cases[-1][0])).status_code == 401
