"""Benchmark: how long the operator console's pages take with a large fleet registered.

Starts Mosquitto and influxd, registers ``--devices`` devices in a fresh SQLite database (or
``--registry-url``, e.g. a PostgreSQL database): concentrators with meters behind them (one
concentrator per ``--meters-per-concentrator``) and a tenth of them street lights, with
connectivity and a concentrator status each, so every query has rows to count. It writes a
day of readings for one meter, runs ``gridwire cloud api`` as its own process, logs in to the
console like a browser (cookie and CSRF) and fetches every page ``--repeat`` times, one at a
time. It prints each page's median and 95th percentile time to the last byte, and the slowest
page against the 300 ms budget.

    .venv/bin/python -m bench.console                   # 10,000 devices
    .venv/bin/python -m bench.console --devices 50000 --repeat 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import insert, select

from broker.mosquitto_conf import Account
from broker.schemas import MeterReading
from cloud.auth import issue_token
from cloud.migrations import migrate
from cloud.monitoring.models import ConcentratorStateRow, DeviceConnectivityRow
from cloud.registry import OrganisationCreate, PlatformRole, Registry
from cloud.registry.functions import FunctionGroup
from cloud.registry.models import Device, DeviceAuthorisation, Organisation
from cloud.store import InfluxStore
from gridwire.procs import ManagedProcess, free_port
from gridwire.services import LocalInfluxd, LocalMosquitto
from tests.factories import reading

ORG = "bench-operator"
SECRET = "bench-jwt-secret-" + uuid.uuid4().hex
CLOUD = Account(username="gridwire-cloud", password="bench-cloud-pw", role="cloud")
BUDGET_MS = 300.0


def fleet(devices: int, per_concentrator: int) -> list[dict]:
    """Device rows: a tenth street lights, the rest concentrators and meters behind them."""
    rows: list[dict] = []
    lights = devices // 10
    meters = devices - lights
    concentrators = max(1, meters // (per_concentrator + 1))
    for c in range(concentrators):
        rows.append({"identification": f"conc-{c:05d}", "device_type": "CONCENTRATOR", "protocol": "MQTT"})
    for m in range(meters - concentrators):
        rows.append({"identification": f"meter-{m:06d}", "device_type": "SMART_METER", "protocol": "DLMS",
                     "concentrator_id": f"conc-{m % concentrators:05d}", "model": "bench-meter",
                     "firmware_version": f"1.{m % 3}.0"})
    rows += [{"identification": f"light-{n}", "device_type": "STREET_LIGHT", "protocol": "MQTT"}
             for n in range(1, lights + 1)]
    # Every row with every column: one executemany statement per chunk.
    return [{"concentrator_id": None, "model": None, "firmware_version": None, **row, "state": "ACTIVE",
             "comm_success_count": 10, "comm_failure_count": 0, "consecutive_failures": 0} for row in rows]


async def register(url: str, rows: list[dict]) -> None:
    await migrate(url)
    now = datetime.now(UTC)
    async with Registry(url=url) as registry:
        await registry.add_organisation(OrganisationCreate(identification=ORG, name="Bench", role=PlatformRole.ADMIN))
        async with registry.engine.begin() as conn:
            org_id = (await conn.execute(select(Organisation.id)
                                         .where(Organisation.identification == ORG))).scalar_one()
            for start in range(0, len(rows), 2000):
                chunk = rows[start:start + 2000]
                await conn.execute(insert(Device), chunk)
                ids = (await conn.execute(select(Device.id).where(
                    Device.identification.in_([r["identification"] for r in chunk])))).scalars()
                await conn.execute(insert(DeviceAuthorisation), [
                    {"device_id": i, "organisation_id": org_id, "function_group": FunctionGroup.OWNER} for i in ids])
                connectivity = [{"device_id": r["identification"], "online": n % 17 != 0, "since": now, "reason": None}
                                for n, r in enumerate(chunk) if r["device_type"] != "CONCENTRATOR"]
                states = [{"concentrator_id": r["identification"], "state": "ONLINE", "session": 1, "status_at": now,
                           "software_version": "gridwire-0.1.0", "outbox_backlog": 0, "updated_at": now}
                          for r in chunk if r["device_type"] == "CONCENTRATOR"]
                # An empty list would insert one row of defaults.
                for table, values in ((DeviceConnectivityRow, connectivity), (ConcentratorStateRow, states)):
                    if values:
                        await conn.execute(insert(table), values)


async def readings(influx_url: str, meter: str) -> None:
    """A day of 15-minute readings of one meter (the meter page's chart)."""
    start = datetime.now(UTC) - timedelta(hours=24)
    values = [reading(meter, n) for n in range(96)]
    shifted = [MeterReading.model_validate({**r.to_wire(),
                                            "readingTime": (start + timedelta(minutes=15 * n)).isoformat()})
               for n, r in enumerate(values)]
    async with InfluxStore(url=influx_url, database="gridwire") as store:
        await store.ensure_database()
        await store.write_readings(shifted)


def log_in(client: httpx.Client, token: str) -> None:
    form = client.get("/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    done = client.post("/console/login", data={"csrf": csrf, "token": token, "next": "/console"})
    assert done.status_code == 303, done.text


def timed(client: httpx.Client, path: str, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(path)
        answer.read()
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--meters-per-concentrator", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--registry-url", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gridwire-bench-console-") as work:
        root = Path(work)
        url = args.registry_url or f"sqlite+aiosqlite:///{root / 'registry.sqlite'}"
        rows = fleet(args.devices, args.meters_per_concentrator)
        started = time.perf_counter()
        asyncio.run(register(url, rows))
        print(f"registered {len(rows)} devices in {time.perf_counter() - started:.1f}s ({url.split(':')[0]})")
        mosquitto = LocalMosquitto(directory=root / "mosquitto", port=free_port(), accounts=[CLOUD])
        influxd = LocalInfluxd(directory=root / "influxd", port=free_port())
        mosquitto.start()
        influxd.start()
        meter = next(r["identification"] for r in rows if r["device_type"] == "SMART_METER")
        asyncio.run(readings(influxd.url, meter))
        port = free_port()
        api = ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", "cloud", "api", "--port", str(port), "--insecure-http",
                                   "--log-level", "WARNING"], log=root / "api.log", port=port, env={
            "GRIDWIRE_MQTT_PORT": str(mosquitto.port), "GRIDWIRE_MQTT_PASSWORD": CLOUD.password,
            "GRIDWIRE_DATABASE_URL": url, "GRIDWIRE_INFLUX_URL": influxd.url, "GRIDWIRE_JWT_SECRET": SECRET})
        try:
            api.start(timeout=60)
            token = issue_token(secret=SECRET, org=ORG, ttl=timedelta(hours=1))
            pages = {"fleet overview": "/console", "concentrator": "/console/concentrators/conc-00000",
                     "meter (a day, 96 readings)": f"/console/meters/{meter}?hours=24",
                     "street lights": "/console/lights", "commands": "/console/commands",
                     "campaigns": "/console/campaigns", "dead letters": "/console/dead-letters",
                     "events": "/console/events"}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                log_in(client, token)
                for path in pages.values():  # warm: templates compiled, statements cached
                    timed(client, path, 1)
                print(f"load average {os.getloadavg()[0]:.2f}; each page {args.repeat} times, one at a time")
                slowest = 0.0
                for name, path in pages.items():
                    times = sorted(timed(client, path, args.repeat))
                    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                    slowest = max(slowest, statistics.median(times))
                    print(f"  {name:28s} median {statistics.median(times):6.1f} ms   p95 {p95:6.1f} ms")
                verdict = "within" if slowest < BUDGET_MS else "OVER"
                print(f"slowest median {slowest:.1f} ms: {verdict} the {BUDGET_MS:.0f} ms budget "
                      f"({slowest / BUDGET_MS:.2f} of it)")
        finally:
            api.stop()
            influxd.stop()
            mosquitto.stop()


if __name__ == "__main__":
    main()
