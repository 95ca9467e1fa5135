"""Benchmark: switch N simulated street lights on through the web API, every layer a real process.

OSGP's headline is 40,000 street lights switched in under 5 minutes with two 2-CPU servers per
layer. This starts Mosquitto, a fresh PostgreSQL database (or SQLite, or ``--registry-url``),
registers N MQTT-native lights, and runs as separate processes: the platform API
(``gridwire cloud api``), ``--cores`` core and ``--domains`` domain processes (shared
subscriptions split the work) and a light fleet (``gridwire sim lights``). It then switches
every light on through the API, per light (``POST /v1/publiclighting/devices/<id>/light``) or
in bulk (``POST /v1/publiclighting/lights``, ``--bulk`` lights per call), and waits for every
``app/<org>/publiclighting/setLight`` notification. It prints the time until the last one,
the throughput, the latency per light (request sent -> notification) p50/p99, and the CPU
seconds each process used (where the time goes). ``resent`` counts requests sent again after
the API dropped an idle keep-alive connection under them; ``GRIDWIRE_BENCH_API_LOG=INFO``
makes the API log each request.

    .venv/bin/python -m bench.lights_switch --lights 2000
    .venv/bin/python -m bench.lights_switch --lights 40000 --bulk 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import func, insert, select

from broker.mosquitto_conf import Account
from broker.session import Message, MqttSession
from cloud.auth import issue_token
from cloud.core.models import CommandRow
from cloud.domains.models import FunctionalRequestRow
from cloud.migrations import migrate
from cloud.registry import OrganisationCreate, Registry
from cloud.registry.functions import FunctionGroup
from cloud.registry.models import Device, DeviceAuthorisation, Organisation
from edge.devices.service import light_ids
from gridwire.procs import ManagedProcess, free_port
from gridwire.services import LocalMosquitto, LocalPostgres

ORG = "bench-org"
SECRET = "bench-jwt-secret-" + uuid.uuid4().hex
CLOUD = Account(username="gridwire-cloud", password="bench-cloud-pw", role="cloud")
FLEET = Account(username="fleet-lights", password="bench-fleet-pw", role="fleet")


async def _register(url: str, ids: list[str]) -> None:
    """Bulk-register the lights (the per-device installation API is for people, not for 40,000)."""
    async with Registry(url=url) as registry:
        await registry.add_organisation(OrganisationCreate(identification=ORG, name="Bench"))
        async with registry.engine.begin() as conn:
            org_id = (await conn.execute(select(Organisation.id).where(Organisation.identification == ORG))).scalar_one()
            for start in range(0, len(ids), 5000):
                chunk = ids[start:start + 5000]
                await conn.execute(insert(Device), [
                    {"identification": i, "device_type": "STREET_LIGHT", "protocol": "MQTT", "state": "ACTIVE",
                     "comm_success_count": 0, "comm_failure_count": 0, "consecutive_failures": 0} for i in chunk])
                rows = (await conn.execute(select(Device.id).where(Device.identification.in_(chunk)))).scalars()
                await conn.execute(insert(DeviceAuthorisation), [
                    {"device_id": row, "organisation_id": org_id, "function_group": FunctionGroup.OWNER}
                    for row in rows])


async def _outcomes(url: str) -> dict[str, dict[str, int]]:
    """Per-light outcome histograms from the database: commands by status, functional requests
    by status, and lights by how many commands they were sent (each must be 1)."""
    async with Registry(url=url) as registry, registry.engine.connect() as conn:
        commands = dict((await conn.execute(select(CommandRow.status, func.count())
                                            .group_by(CommandRow.status))).all())
        requests = dict((await conn.execute(select(FunctionalRequestRow.status, func.count())
                                            .group_by(FunctionalRequestRow.status))).all())
        per_device = select(func.count().label("n")).select_from(CommandRow).group_by(CommandRow.device).subquery()
        times = dict((await conn.execute(select(per_device.c.n, func.count()).group_by(per_device.c.n))).all())
    return {"commands_by_status": commands, "requests_by_status": requests,
            "lights_by_commands_sent": {str(k): v for k, v in times.items()}}


_FLEET_SUMMARY = re.compile(r"street lights: (\d+) commands carried out, (\d+) repeats answered, (\d+) lights on")


def _fleet_summary(log: Path) -> dict[str, int]:
    """What the light fleet did, from the line it logs when it stops."""
    found = _FLEET_SUMMARY.findall(log.read_text(errors="replace"))
    if not found:
        return {}
    carried, repeats, on = map(int, found[-1])
    return {"commands_carried_out": carried, "repeats_answered": repeats, "lights_on": on}


@contextmanager
def _postgres_database() -> Iterator[str]:
    """A new PostgreSQL database for one run, dropped afterwards: on the server GRIDWIRE_BENCH_PG
    names (``postgresql://user@host:port/postgres``), else on a throwaway cluster (durable, as a
    real server is)."""
    admin_url = os.environ.get("GRIDWIRE_BENCH_PG")
    if admin_url is None:
        local = LocalPostgres(port=free_port(), durable=True)
        try:
            local.start()
            yield local.url()
        finally:
            local.remove()
        return
    name = f"gw_bench_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_url, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


_PROFILED = """
import cProfile, sys, time
from gridwire.cli import main
profile = cProfile.Profile(time.process_time)
sys.argv[0] = "gridwire"
try:
    profile.runcall(main)
except SystemExit:
    pass
finally:
    profile.dump_stats({out!r})
"""


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_for_line(proc: ManagedProcess, text: str, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.log.exists() and text in proc.log.read_text(errors="replace"):
            return
        if not proc.running:
            break
        time.sleep(0.05)
    raise RuntimeError(f"{' '.join(proc.argv)} did not log {text!r}:\n{proc.log.read_text(errors='replace')[-3000:]}")


class Layers:
    """The platform's processes for one run."""

    def __init__(self, *, tmp: Path, broker: LocalMosquitto, url: str, lights: int, cores: int, domains: int,
                 fleet_sessions: int, pool: int) -> None:
        self.api_port = free_port()
        self.broker = broker
        env = {"GRIDWIRE_JWT_SECRET": SECRET, "GRIDWIRE_DATABASE_URL": url, "GRIDWIRE_MQTT_HOST": broker.host,
               "GRIDWIRE_MQTT_PORT": str(broker.port), "GRIDWIRE_MQTT_USERNAME": CLOUD.username,
               "GRIDWIRE_MQTT_PASSWORD": CLOUD.password, "GRIDWIRE_INFLUX_CREATE_DATABASE": "false",
               "GRIDWIRE_MIGRATE_ON_START": "false", "GRIDWIRE_DATABASE_POOL_SIZE": str(pool)}
        def cli(name: str) -> list[str]:
            # GRIDWIRE_BENCH_PROFILE=<dir>: each process writes a CPU-time cProfile file there when it stops.
            profile = os.environ.get("GRIDWIRE_BENCH_PROFILE")
            if not profile:
                return [sys.executable, "-m", "gridwire.cli"]
            return [sys.executable, "-c", _PROFILED.format(out=str(Path(profile) / f"{name}.prof"))]

        api_log_level = os.environ.get("GRIDWIRE_BENCH_API_LOG", "WARNING")
        self.api = ManagedProcess(argv=[*cli("api"), "cloud", "api", "--port", str(self.api_port), "--insecure-http", "--log-level",
                                        api_log_level], log=tmp / "api.log", port=self.api_port, env=env)
        self.cores = [ManagedProcess(argv=[*cli(f"core-{n}"), "cloud", "core"], log=tmp / f"core-{n}.log", env=env)
                      for n in range(cores)]
        self.domains = [ManagedProcess(argv=[*cli(f"domain-{n}"), "cloud", "domain"], log=tmp / f"domain-{n}.log",
                                       env=env) for n in range(domains)]
        self.fleet = ManagedProcess(argv=[
            *cli("fleet"), "sim", "lights", "--count", str(lights), "--host", broker.host, "--port", str(broker.port),
            "--username", FLEET.username, "--password", FLEET.password, "--sessions", str(fleet_sessions),
            "--client-id", "bench-fleet", "--no-initial-status"], log=tmp / "fleet.log", env=env)

    def all(self) -> dict[str, ManagedProcess]:
        return {"api": self.api, **{f"core-{n}": p for n, p in enumerate(self.cores)},
                **{f"domain-{n}": p for n, p in enumerate(self.domains)}, "fleet": self.fleet}

    def start(self) -> None:
        self.api.start(timeout=60)
        for proc in (*self.cores, *self.domains, self.fleet):
            proc.start()
        for proc in self.cores:
            _wait_for_line(proc, "core consumer")
        for proc in self.domains:
            _wait_for_line(proc, "domain consumer")
        _wait_for_line(self.fleet, "street lights on")

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each process, the broker's too (the database's is not counted)."""
        running = {**self.all(), "mosquitto": self.broker.process}
        return {name: _cpu_seconds(p.proc.pid) for name, p in running.items() if p.proc is not None and p.running}

    def stop(self) -> None:
        for proc in self.all().values():
            proc.stop()


async def _raw_post(base: str, path: str, body: bytes, token: str) -> tuple[int, bytes]:
    """One POST on a connection of its own, HTTP/1.1 by hand: the bench's side of a burst of
    thousands of requests at once costs little CPU (httpx's pool rescans every connection on
    each change, so with 2,000 connections the client, not the API, set the pace)."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                     .encode() + body)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), None)
        answer = await (reader.readexactly(length) if length is not None else reader.read())
        return status, answer
    finally:
        writer.close()


async def _switch_all(base: str, broker: LocalMosquitto, ids: list[str], *, bulk: int, concurrency: int) -> dict:
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    early: dict[str, float] = {}
    failures: list[dict] = []
    all_done = asyncio.Event()

    async def on_note(message: Message) -> None:
        body = json.loads(message.payload)
        now = time.perf_counter()
        if body.get("status") != "SUCCEEDED" or not (body.get("result") or {}).get("on"):
            failures.append(body)
        started = sent_at.get(body["correlationId"])
        if started is None:
            early[body["correlationId"]] = now  # arrived before the 202 told us its id
        else:
            latencies.append(now - started)
        if len(latencies) + len(early) + len(failures) >= len(ids):
            all_done.set()

    token = issue_token(secret=SECRET, org=ORG, ttl=timedelta(hours=2))
    async with AsyncExitStack() as exits:
        watcher = await exits.enter_async_context(MqttSession(
            client_id=f"bench-app-{os.getpid()}", host=broker.host, port=broker.port, session_expiry=0,
            receive_maximum=5000, max_inflight=1000, **broker.credentials(CLOUD.username)))
        await watcher.subscribe(f"app/{ORG}/publiclighting/+", on_note)
        http = await exits.enter_async_context(httpx.AsyncClient(
            base_url=base, timeout=120, headers={"Authorization": f"Bearer {token}"},
            limits=httpx.Limits(max_connections=concurrency)))
        gate = asyncio.Semaphore(concurrency)

        resent = 0

        async def post(path: str, body: dict) -> httpx.Response:
            """POST, again on a connection the server closed as idle just as the request went out."""
            nonlocal resent
            for attempt in range(3):
                try:
                    answer = await http.post(path, json=body)
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    # uvicorn drops keep-alive connections idle for 5 s; when this loop is busy
                    # a pooled connection can be reused just after: the request was never read.
                    if attempt == 2:
                        raise
                    resent += 1
                    continue
                answer.raise_for_status()
                return answer
            raise AssertionError("unreachable")

        async def one(light: str) -> None:
            async with gate:
                started = time.perf_counter()
                status, answer = await _raw_post(base, f"/v1/publiclighting/devices/{light}/light", b'{"on": true}',
                                                 token)
                if status != 202:
                    raise RuntimeError(f"POST for {light}: HTTP {status} {answer[:200]!r}")
                _sent(json.loads(answer)["correlationId"], started)

        async def many(chunk: list[str]) -> None:
            async with gate:
                started = time.perf_counter()
                answer = await post("/v1/publiclighting/lights", {"deviceIds": chunk, "on": True})
                for accepted in answer.json()["requests"]:
                    _sent(accepted["correlationId"], started)

        def _sent(correlation: str, started: float) -> None:
            sent_at[correlation] = started
            if correlation in early:
                latencies.append(early.pop(correlation) - started)

        begin, cpu_begin = time.perf_counter(), time.process_time()
        if bulk > 1:
            await asyncio.gather(*(many(ids[i:i + bulk]) for i in range(0, len(ids), bulk)))
        else:
            await asyncio.gather(*(one(i) for i in ids))
        accepted_s = time.perf_counter() - begin
        await asyncio.wait_for(all_done.wait(), timeout=max(300.0, len(ids) / 20))
        total, client_cpu = time.perf_counter() - begin, time.process_time() - cpu_begin
    ordered = sorted(latencies)
    return {"accepted_s": round(accepted_s, 2), "all_done_s": round(total, 2),
            "throughput_per_s": round(len(ids) / total, 1),
            "p50_ms": round(1000 * statistics.median(ordered), 1) if ordered else None,
            "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1) if ordered else None,
            "failed": len(failures), "resent": resent, "unmatched": len(early),
            # The bench's own CPU (clients and the notification watcher): it shares the cores.
            "bench_cpu_s": round(client_cpu, 2)}


def run(*, lights: int, cores: int, domains: int, fleet_sessions: int, bulk: int, concurrency: int,
        registry_url: str | None, sqlite: bool, pool: int, logs: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="gw-bench-") as tmpdir:
        tmp = Path(tmpdir)
        broker = LocalMosquitto(directory=tmp / "mqtt", port=free_port(), accounts=[CLOUD, FLEET])
        broker.start()
        try:
            if registry_url is not None or sqlite:
                return _run(tmp, broker, registry_url or f"sqlite+aiosqlite:///{tmp / 'registry.db'}", lights=lights,
                            cores=cores, domains=domains, fleet_sessions=fleet_sessions, bulk=bulk,
                            concurrency=concurrency, pool=pool, logs=logs)
            with _postgres_database() as url:
                return _run(tmp, broker, url, lights=lights, cores=cores, domains=domains,
                            fleet_sessions=fleet_sessions, bulk=bulk, concurrency=concurrency, pool=pool, logs=logs)
        finally:
            broker.stop()


def _run(tmp: Path, broker: LocalMosquitto, url: str, *, lights: int, cores: int, domains: int,
         fleet_sessions: int, bulk: int, concurrency: int, pool: int, logs: Path | None) -> dict:
    ids = light_ids(lights)
    asyncio.run(migrate(url))
    asyncio.run(_register(url, ids))
    layers = Layers(tmp=tmp, broker=broker, url=url, lights=lights, cores=cores, domains=domains,
                    fleet_sessions=fleet_sessions, pool=pool)
    try:
        layers.start()
        cpu_before = layers.cpu()
        figures = asyncio.run(_switch_all(f"http://127.0.0.1:{layers.api_port}", broker, ids, bulk=bulk,
                                          concurrency=concurrency))
        cpu_after = layers.cpu()
    finally:
        layers.stop()
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
            for proc in layers.all().values():
                shutil.copy(proc.log, logs / proc.log.name)
    cpu = {name: round(cpu_after.get(name, 0.0) - cpu_before.get(name, 0.0), 2) for name in cpu_after}
    return {"lights": lights, "database": url.split(":", 1)[0], "bulk": bulk, "concurrency": concurrency,
            "processes_per_layer": {"api": 1, "core": cores, "domain": domains, "fleet": 1},
            **figures, "cpu_s": cpu, "cpu_ms_per_light": round(1000 * sum(cpu.values()) / lights, 2),
            **asyncio.run(_outcomes(url)), "fleet": _fleet_summary(layers.fleet.log)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lights", type=int, default=2000)
    parser.add_argument("--cores", type=int, default=2, help="core processes")
    parser.add_argument("--domains", type=int, default=2, help="domain (+ results) processes")
    parser.add_argument("--fleet-sessions", type=int, default=2)
    parser.add_argument("--bulk", type=int, default=0, help="lights per bulk request (0: one request per light)")
    parser.add_argument("--concurrency", type=int, default=50, help="API requests in flight at once")
    parser.add_argument("--pool", type=int, default=10, help="database connections per process")
    parser.add_argument("--registry-url", default=None, help="an existing, empty database to use")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file instead of a new PostgreSQL database")
    parser.add_argument("--logs", type=Path, default=None, help="copy the processes' logs into this directory")
    args = parser.parse_args()
    load_before = os.getloadavg()
    result = run(lights=args.lights, cores=args.cores, domains=args.domains, fleet_sessions=args.fleet_sessions,
                 bulk=args.bulk, concurrency=args.concurrency, registry_url=args.registry_url, sqlite=args.sqlite,
                 pool=args.pool, logs=args.logs)
    result["load_average"] = {"before": load_before, "after": os.getloadavg()}
    print(json.dumps(result))  # noqa: T201 - a benchmark's output is its report


if __name__ == "__main__":
    main()
