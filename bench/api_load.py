"""Benchmark: the web API under mixed reads, 20 clients at once, against two API processes.

Starts Mosquitto, influxd and a fresh PostgreSQL database (or SQLite, ``--sqlite``), registers
``--devices`` street lights and ``--meters`` meters with a day of 15-minute readings each,
records a completed switching request per light, and runs ``--apis`` ``gridwire cloud api``
processes. ``--clients`` clients (20) then send, for ``--seconds``, one request after another,
spread over the API processes in turn, cycling through the reads an application makes:

- ``device``: ``GET /v1/installation/devices/<light>``;
- ``result``: ``GET /v1/publiclighting/results/<correlation id>`` of a completed request;
- ``readings``: ``POST /v1/meterReadings``, one meter's day, a page of 100 (96 rows).

It prints requests/s, p50/p99 of all and of each kind, each API process's CPU seconds and
CPU milliseconds per request, and the load average. The aims (issue 12): at least 1,000
requests/s with p99 <= 100 ms, and a device GET p50 <= 20 ms. Campaign status is not among the
reads yet.

    .venv/bin/python -m bench.api_load
    .venv/bin/python -m bench.api_load --seconds 20 --clients 20 --apis 2
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import insert, select

from bench.lights_switch import _PROFILED, CLOUD, ORG, SECRET, _cpu_seconds, _postgres_database, _register
from bench.query import DAY, readings
from broker.schemas.command import CommandStatus
from cloud.auth import issue_token
from cloud.domains.requests import Completion, NewFunctional, RequestStore
from cloud.migrations import migrate
from cloud.registry.db import create_engine
from cloud.registry.functions import FunctionGroup
from cloud.registry.models import Device, DeviceAuthorisation, Organisation
from cloud.store.influx import InfluxStore
from edge.devices.service import light_ids
from gridwire.procs import ManagedProcess, free_port
from gridwire.services import LocalInfluxd, LocalMosquitto

INFLUX_DB = "bench_api"


async def _prepare(url: str, influx: str, lights: list[str], meters: list[str]) -> list[str]:
    """Devices, a completed request per light, a day of readings per meter; the requests' ids."""
    await migrate(url)
    await _register(url, lights)
    engine = create_engine(url)
    try:
        # The meters are the organisation's: the readings API answers only for meters it may read.
        async with engine.begin() as conn:
            org_id = (await conn.execute(select(Organisation.id).where(Organisation.identification == ORG))).scalar_one()
            await conn.execute(insert(Device), [
                {"identification": m, "device_type": "SMART_METER", "protocol": "DLMS", "state": "ACTIVE",
                 "comm_success_count": 0, "comm_failure_count": 0, "consecutive_failures": 0} for m in meters])
            rows = (await conn.execute(select(Device.id).where(Device.identification.in_(meters)))).scalars()
            await conn.execute(insert(DeviceAuthorisation), [
                {"device_id": row, "organisation_id": org_id, "function_group": FunctionGroup.OWNER} for row in rows])
        store = RequestStore(engine)
        ids = [str(uuid.uuid4()) for _ in lights]
        await store.add_many([NewFunctional(correlation_id=cid, organisation=ORG, device=light, domain="publiclighting",
                                            operation="setLight", command_ids=[]) for cid, light in zip(ids, lights)])
        await store.complete_many([Completion(cid, CommandStatus.SUCCEEDED, {"on": True}, None) for cid in ids])
    finally:
        await engine.dispose()
    async with InfluxStore(url=influx, database=INFLUX_DB) as series:
        await series.ensure_database()
        for first in range(0, len(meters), 50):
            await series.write_readings([r for m in meters[first:first + 50] for r in readings(m)])
    return ids


async def _load(ports: list[int], *, clients: int, seconds: float, lights: list[str], results: list[str],
                meters: list[str]) -> dict:
    token = issue_token(secret=SECRET, org=ORG, ttl=timedelta(hours=1))
    day = {"readingTimeStart": DAY.isoformat(), "readingTimeEnd": (DAY + timedelta(days=1)).isoformat(),
           "pageSize": 100}
    samples: dict[str, list[float]] = {"device": [], "result": [], "readings": []}
    errors: list[str] = []
    stop_at = time.perf_counter() + seconds
    counter = itertools.count()

    async def client(http: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop_at:
            n = next(counter)
            base = f"http://127.0.0.1:{ports[n % len(ports)]}"
            kind = ("device", "result", "readings")[n % 3]
            started = time.perf_counter()
            if kind == "device":
                answer = await http.get(f"{base}/v1/installation/devices/{lights[n % len(lights)]}")
            elif kind == "result":
                answer = await http.get(f"{base}/v1/publiclighting/results/{results[n % len(results)]}")
            else:
                answer = await http.post(f"{base}/v1/meterReadings",
                                         json={**day, "meterIndividualIds": [meters[n % len(meters)]]})
            took = time.perf_counter() - started
            if answer.status_code != 200:
                errors.append(f"{kind} {answer.status_code} {answer.text[:200]}")
                continue
            samples[kind].append(took)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=30, limits=limits, headers={"Authorization": f"Bearer {token}"}) as http:
        begin, cpu_begin = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        took, client_cpu = time.perf_counter() - begin, time.process_time() - cpu_begin
    every = [s for kind in samples.values() for s in kind]
    return {"requests": len(every), "requests_per_s": round(len(every) / took, 1), **_figures(every),
            **{kind: _figures(found) for kind, found in samples.items()},
            # The clients (httpx, this process) share the machine's cores with the API processes.
            "client_cpu_s": round(client_cpu, 2), "errors": len(errors),
            "first_errors": errors[:3]}


def _figures(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    ordered = sorted(samples)
    return {"p50_ms": round(1000 * statistics.median(ordered), 1),
            "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1)}


def _run(url: str, tmp: Path, args: argparse.Namespace) -> dict:
    broker = LocalMosquitto(directory=tmp / "mqtt", port=free_port(), accounts=[CLOUD])
    influxd = LocalInfluxd(directory=tmp / "influx", port=free_port())
    broker.start()
    influxd.start()
    apis: list[ManagedProcess] = []
    try:
        lights = light_ids(args.devices)
        meters = [f"bench-meter-{n:04d}" for n in range(args.meters)]
        results = asyncio.run(_prepare(url, influxd.url, lights, meters))
        env = {"GRIDWIRE_JWT_SECRET": SECRET, "GRIDWIRE_DATABASE_URL": url, "GRIDWIRE_MQTT_HOST": broker.host,
               "GRIDWIRE_MQTT_PORT": str(broker.port), "GRIDWIRE_MQTT_USERNAME": CLOUD.username,
               "GRIDWIRE_MQTT_PASSWORD": CLOUD.password, "GRIDWIRE_INFLUX_URL": influxd.url,
               "GRIDWIRE_INFLUX_DATABASE": INFLUX_DB, "GRIDWIRE_INFLUX_CREATE_DATABASE": "false",
               "GRIDWIRE_MIGRATE_ON_START": "false"}
        # GRIDWIRE_BENCH_PROFILE=<dir>: each API process writes a CPU-time cProfile file there when it stops.
        profile = os.environ.get("GRIDWIRE_BENCH_PROFILE")
        for n in range(args.apis):
            port = free_port()
            entry = ([sys.executable, "-c", _PROFILED.format(out=str(Path(profile) / f"api-{n}.prof"))] if profile
                     else [sys.executable, "-m", "gridwire.cli"])
            apis.append(ManagedProcess(argv=[*entry, "cloud", "api", "--port", str(port), "--insecure-http",
                                             "--log-level", "WARNING"], log=tmp / f"api-{n}.log", port=port, env=env))
        for api in apis:
            api.start(timeout=90)
        ports = [api.port for api in apis if api.port is not None]
        # Warm-up: connections, caches, statement caches.
        asyncio.run(_load(ports, clients=args.clients, seconds=2, lights=lights, results=results, meters=meters))
        cpu_before = {n: _cpu_seconds(api.proc.pid) for n, api in enumerate(apis) if api.proc is not None}
        figures = asyncio.run(_load(ports, clients=args.clients, seconds=args.seconds, lights=lights,
                                    results=results, meters=meters))
        cpu = {f"api-{n}": round(_cpu_seconds(api.proc.pid) - cpu_before[n], 2)
               for n, api in enumerate(apis) if api.proc is not None}
        return {"database": url.split(":", 1)[0], "apis": args.apis, "clients": args.clients, **figures,
                "cpu_s": cpu, "cpu_ms_per_request": round(1000 * sum(cpu.values()) / max(1, figures["requests"]), 2)}
    finally:
        for api in apis:
            api.stop()
        influxd.stop()
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apis", type=int, default=2, help="API processes")
    parser.add_argument("--clients", type=int, default=20, help="requests in flight at once")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--meters", type=int, default=100)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of a new PostgreSQL database")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="gw-api-load-") as tmpdir:
        tmp = Path(tmpdir)
        if args.sqlite:
            result = _run(f"sqlite+aiosqlite:///{tmp / 'registry.db'}", tmp, args)
        else:
            with _postgres_database() as url:
                result = _run(url, tmp, args)
    result["load_average"] = {"before": load_before, "after": os.getloadavg()}
    print(json.dumps(result))  # noqa: T201 - a benchmark's output is its report


if __name__ == "__main__":
    main()
