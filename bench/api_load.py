"""Benchmark: the web API under mixed reads, 20 clients at once, against two API processes.

Starts Mosquitto, influxd and a fresh PostgreSQL database (or SQLite, ``--sqlite``), registers
``--devices`` street lights and ``--meters`` meters with a day of 15-minute readings each,
records a completed switching request per light, and runs ``--apis`` ``gridwire cloud api``
processes. ``--clients`` clients (20) then send, for ``--seconds``, one request after another,
spread over the API processes in turn, cycling through the reads an application makes:

- ``device``: ``GET /v1/installation/devices/<light>``;
- ``result``: ``GET /v1/publiclighting/results/<correlation id>`` of a completed request;
- ``campaign``: ``GET /v1/campaigns/<id>/status`` of a firmware campaign over every light;
- ``readings``: ``POST /v1/meterReadings``, one meter's day, a page of 100 (96 rows).

The clients are :mod:`bench.lean_http` keep-alive connections (one per client and API process),
so the load generator leaves the cores to the API (httpx cost about 1.3 ms of CPU a request).
It prints requests/s, p50/p99 of all and of each kind, each API process's CPU seconds and CPU
milliseconds per request, the clients' CPU per request, and the load average. The aims (issue
12): at least 1,000 requests/s with p99 <= 100 ms, and a device GET p50 <= 20 ms.

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
from functools import partial
import uuid
from urllib.parse import urlsplit
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select, update

from bench import lean_http
from bench.lights_switch import _PROFILED, CLOUD, ORG, SECRET, _cpu_seconds, _postgres_database, _register
from bench.query import DAY, readings
from broker.schemas.command import CommandStatus
from broker.schemas.firmware import FirmwareManifest
from cloud.auth import issue_token
from cloud.domains.requests import Completion, NewFunctional, RequestStore
from cloud.firmware.campaign_store import CampaignStore
from cloud.firmware.campaigns import CampaignService
from cloud.firmware.catalogue import FirmwareCatalogue
from cloud.firmware.schemas import CampaignCreate
from cloud.migrations import migrate
from cloud.registry.db import create_engine
from cloud.registry import Registry
from cloud.registry.functions import FunctionGroup
from cloud.registry.models import Device, DeviceAuthorisation, Organisation
from cloud.store.influx import InfluxStore
from edge.devices.service import light_ids
from firmware_ota.signing import generate_key, sign
from gridwire.procs import ManagedProcess, free_port
from gridwire.services import LocalInfluxd, LocalMosquitto

INFLUX_DB = "bench_api"
LIGHT_MODEL = "BENCH-LIGHT"


async def _prepare(url: str, influx: str, lights: list[str], meters: list[str]) -> tuple[list[str], str]:
    """Devices, a completed request per light, a day of readings per meter, a firmware campaign
    over every light (created, not started: its status is read, nothing runs it); the requests'
    ids and the campaign's."""
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
    return ids, await _campaign(url, lights)


async def _campaign(url: str, lights: list[str]) -> str:
    """A signed firmware for the lights' model in the catalogue, and a campaign over every light."""
    private, _ = generate_key()
    manifest = FirmwareManifest(firmware_id="bench-light-2.0.0", version="2.0.0", device_models=[LIGHT_MODEL],
                                image_identifier="BENCH-LIGHT-2.0.0", size=1024, sha256="0" * 64,
                                created=datetime.now(UTC).replace(microsecond=0))
    async with Registry(url=url) as registry:
        async with registry.engine.begin() as conn:
            await conn.execute(update(Device).where(Device.identification.in_(lights)).values(model=LIGHT_MODEL))
        catalogue = FirmwareCatalogue(registry.engine)
        await catalogue.record(sign(manifest, private), uploaded_by=ORG)
        service = CampaignService(store=CampaignStore(registry.engine), catalogue=catalogue, registry=registry)
        created = await service.create(CampaignCreate(name="bench", firmware_id=manifest.firmware_id, devices=lights),
                                       organisation=ORG)
    return created.id


KINDS = ("device", "result", "campaign", "readings")


async def _load(ports: list[int], *, clients: int, seconds: float, lights: list[str], results: list[str],
                meters: list[str], campaign: str, kinds: tuple[str, ...] = KINDS) -> dict:
    token = issue_token(secret=SECRET, org=ORG, ttl=timedelta(hours=1))
    auth = f"Authorization: Bearer {token}\r\n".encode()
    day = {"readingTimeStart": DAY.isoformat(), "readingTimeEnd": (DAY + timedelta(days=1)).isoformat(),
           "pageSize": 100}
    bodies = [json.dumps({**day, "meterIndividualIds": [m]}).encode() for m in meters]
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    errors: list[str] = []
    stop_at = time.perf_counter() + seconds
    counter = itertools.count()

    def request(n: int, host: str) -> bytes:
        kind = kinds[n % len(kinds)]
        if kind == "device":
            return lean_http.get(host, f"/v1/installation/devices/{lights[n % len(lights)]}", auth)
        if kind == "result":
            return lean_http.get(host, f"/v1/publiclighting/results/{results[n % len(results)]}", auth)
        if kind == "campaign":
            return lean_http.get(host, f"/v1/campaigns/{campaign}/status", auth)
        return lean_http.post_json(host, "/v1/meterReadings", auth, bodies[n % len(bodies)])

    async def client() -> None:
        # One keep-alive connection to each API process; the requests go to them in turn.
        connections = [await lean_http.Connection.open("127.0.0.1", port) for port in ports]
        try:
            while time.perf_counter() < stop_at:
                n = next(counter)
                # Kinds cycle fastest, so every process gets every kind.
                port = (n // len(kinds)) % len(ports)
                started = time.perf_counter()
                status, body = await connections[port].request(request(n, f"127.0.0.1:{ports[port]}"))
                took = time.perf_counter() - started
                kind = kinds[n % len(kinds)]
                if status != 200:
                    errors.append(f"{kind} {status} {body[:200]!r}")
                    continue
                samples[kind].append(took)
        finally:
            for connection in connections:
                connection.close()

    begin, cpu_begin = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client() for _ in range(clients)))
    took, client_cpu = time.perf_counter() - begin, time.process_time() - cpu_begin
    every = [s for kind in samples.values() for s in kind]
    return {"requests": len(every), "requests_per_s": round(len(every) / took, 1), **_figures(every),
            **{kind: _figures(found) for kind, found in samples.items()},
            # The clients (this process) share the machine's cores with the API processes.
            "client_cpu_s": round(client_cpu, 2),
            "client_cpu_ms_per_request": round(1000 * client_cpu / max(1, len(every)), 3),
            "errors": len(errors), "first_errors": errors[:3]}


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _tree_cpu_seconds(root: int) -> float:
    """User + system CPU time of a process, its children now running and the children it reaped
    (PostgreSQL: the postmaster and its backends)."""
    ticks = sum(int(field) for field in _stat(root)[11:15])
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = _stat(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == root:
                ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _postmaster(url: str) -> int | None:
    """The pid of the PostgreSQL server on this machine listening on ``url``'s port, if found."""
    port = str(urlsplit(url).port)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"postgres") and b"-p" in argv and port.encode() in argv:
                return int(entry.name)
    return None


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
        results, campaign = asyncio.run(_prepare(url, influxd.url, lights, meters))
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
        asyncio.run(_load(ports, clients=args.clients, seconds=2, lights=lights, results=results, meters=meters,
                          campaign=campaign, kinds=args.kinds))
        # Every process's CPU over the run: the APIs, influxd, PostgreSQL (server and backends).
        others: dict[str, Callable[[], float]] = {}
        if influxd.process.proc is not None:
            others["influxd"] = partial(_cpu_seconds, influxd.process.proc.pid)
        postmaster = _postmaster(url) if url.startswith("postgresql") else None
        if postmaster is not None:
            others["postgres"] = partial(_tree_cpu_seconds, postmaster)
        cpu_before = {n: _cpu_seconds(api.proc.pid) for n, api in enumerate(apis) if api.proc is not None}
        others_before = {name: read() for name, read in others.items()}
        figures = asyncio.run(_load(ports, clients=args.clients, seconds=args.seconds, lights=lights,
                                    results=results, meters=meters, campaign=campaign, kinds=args.kinds))
        cpu = {f"api-{n}": round(_cpu_seconds(api.proc.pid) - cpu_before[n], 2)
               for n, api in enumerate(apis) if api.proc is not None}
        other_cpu = {name: round(read() - others_before[name], 2) for name, read in others.items()}
        requests = max(1, figures["requests"])
        return {"database": url.split(":", 1)[0], "apis": args.apis, "clients": args.clients, **figures,
                "cpu_s": {**cpu, **other_cpu}, "cpu_ms_per_request": round(1000 * sum(cpu.values()) / requests, 2),
                "cpu_ms_per_request_by_process": {name: round(1000 * spent / requests, 3)
                                                  for name, spent in {**cpu, **other_cpu}.items()}}
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
    parser.add_argument("--only", dest="kinds", type=lambda text: tuple(text.split(",")), default=KINDS,
                        help=f"only these kinds of request, comma-separated (of {','.join(KINDS)})")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of a new PostgreSQL database")
    args = parser.parse_args()
    if not args.kinds or set(args.kinds) - set(KINDS):
        parser.error(f"--only takes kinds among {','.join(KINDS)}")
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
