"""Benchmark: one command's round trip through every layer at idle, against its raw floors.

For each database (SQLite, then a fresh PostgreSQL database) it starts Mosquitto and every
layer as its own process (``gridwire cloud api``, core, domain, a light fleet ``gridwire sim
lights``, a concentrator ``gridwire concentrator run`` with a DLMS meter ``gridwire sim dlms``
behind it, LLS), then measures, one command at a time:

- ``light``: ``POST /v1/publiclighting/devices/<id>/light`` until the app's notification
  (``app/<org>/publiclighting/setLight``) arrives: the request is completed in the database
  before that is published, so the result URL answers it from then on (checked each time);
- ``dlms``: ``POST /v1/smartmetering/devices/<meter>/actualReads`` the same way, the read going
  over DLMS/COSEM to the simulator and back;

and, in the same run, the floors each figure is printed as a multiple of:

- ``mqtt``: a bare request/response through the broker (QoS 1, Gridwire's session: a publish
  to a responder that publishes the answer back);
- ``commit``: one INSERT committed on the same database through the same driver.

``--burst N`` then sends N single-light requests at once (N lights, all in flight together)
and prints the latency of each (request sent -> notification) at p50/p99.

    .venv/bin/python -m bench.command_latency                  # 200 round trips each, burst of 2,000
    .venv/bin/python -m bench.command_latency --rounds 50 --burst 0 --databases sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import text

from bench.lights_switch import (
    CLOUD,
    FLEET,
    ORG,
    SECRET,
    Layers,
    _postgres_database,
    _register,
    _switch_all,
    _wait_for_line,
)
from broker.mosquitto_conf import Account
from broker.session import Message, MqttSession
from cloud.auth import issue_token
from cloud.migrations import migrate
from cloud.registry import Registry
from cloud.registry.db import create_engine
from cloud.registry.functions import FunctionGroup
from cloud.registry.models import Device, DeviceAuthorisation, Organisation
from edge.devices.service import light_ids
from gridwire.procs import ManagedProcess, free_port
from gridwire.services import LocalMosquitto

CONCENTRATOR = Account(username="bench-conc-1", password="bench-conc-pw", role="concentrator")
METER = str(uuid.uuid5(uuid.NAMESPACE_URL, "gridwire-bench-latency-meter"))
DLMS_PASSWORD = "12345678"  # the simulator's well-known demo password (edge/dlms/cli.py)


def _figures(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"n": len(ordered), "p50_ms": round(1000 * statistics.median(ordered), 2),
            "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2)}


async def _mqtt_floor(broker: LocalMosquitto, rounds: int) -> dict[str, float]:
    """Request/response through the broker: publish, the responder answers, the answer arrives."""
    creds = broker.credentials(CLOUD.username)
    answered: asyncio.Queue[float] = asyncio.Queue()
    async with MqttSession(client_id=f"floor-req-{os.getpid()}", host=broker.host, port=broker.port,
                           session_expiry=0, **creds) as requester, \
            MqttSession(client_id=f"floor-resp-{os.getpid()}", host=broker.host, port=broker.port,
                        session_expiry=0, **creds) as responder:
        async def respond(message: Message) -> None:
            await responder.publish("device/bench-floor/response", message.payload, qos=1)

        async def arrived(_message: Message) -> None:
            await answered.put(time.perf_counter())

        await responder.subscribe("device/bench-floor/command", respond)
        await requester.subscribe("device/bench-floor/response", arrived)
        samples = []
        for n in range(rounds + 5):
            started = time.perf_counter()
            await requester.publish("device/bench-floor/command", b'{"n": %d}' % n, qos=1)
            samples.append(await asyncio.wait_for(answered.get(), 10) - started)
    return _figures(samples[5:])


async def _commit_floor(url: str, rounds: int) -> dict[str, float]:
    """One INSERT committed on the same database, the same driver and engine as the platform."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE bench_floor (id INTEGER PRIMARY KEY, at VARCHAR(40))"))
        samples = []
        for n in range(rounds + 5):
            started = time.perf_counter()
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO bench_floor (id, at) VALUES (:id, :at)"),
                                   {"id": n, "at": str(started)})
            samples.append(time.perf_counter() - started)
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE bench_floor"))
    finally:
        await engine.dispose()
    return _figures(samples[5:])


async def _register_meter(url: str) -> None:
    async with Registry(url=url) as registry, registry.engine.begin() as conn:
        org_id = (await conn.execute(Organisation.__table__.select().where(Organisation.identification == ORG))).first()
        assert org_id is not None
        await conn.execute(Device.__table__.insert(), {
            "identification": METER, "device_type": "SMART_METER", "protocol": "DLMS", "state": "ACTIVE",
            "concentrator_id": CONCENTRATOR.username, "comm_success_count": 0, "comm_failure_count": 0,
            "consecutive_failures": 0})
        device_id = (await conn.execute(Device.__table__.select().where(Device.identification == METER))).first()
        assert device_id is not None
        await conn.execute(DeviceAuthorisation.__table__.insert(), {
            "device_id": device_id.id, "organisation_id": org_id.id, "function_group": FunctionGroup.OWNER})


def _edge(tmp: Path, broker: LocalMosquitto) -> list[ManagedProcess]:
    """A DLMS simulator and a concentrator reading it, each its own process."""
    dlms_port = free_port()
    sim = ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", "sim", "dlms", "--port", str(dlms_port),
                               "--security", "lls"], log=tmp / "dlms.log", port=dlms_port)
    edge = tmp / "edge"
    edge.mkdir(exist_ok=True)
    (edge / "concentrator.toml").write_text(
        f'concentrator_id = "{CONCENTRATOR.username}"\noutbox = "outbox.sqlite"\n\n'
        f'[broker]\nhost = "{broker.host}"\nport = {broker.port}\nusername = "{CONCENTRATOR.username}"\n'
        f'password = "{CONCENTRATOR.password}"\n\n'
        f'[[meters]]\nprotocol = "dlms"\nmeter_id = "{METER}"\nhost = "127.0.0.1"\nport = {dlms_port}\n'
        f'security = "lls"\npassword = "{DLMS_PASSWORD}"\nprofile = "dsmr-4.2.2"\ninterval_s = 3600\n')
    concentrator = ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", "concentrator", "run",
                                        str(edge / "concentrator.toml")], log=tmp / "concentrator.log", cwd=edge)
    return [sim, concentrator]


async def _round_trips(base: str, broker: LocalMosquitto, *, rounds: int, light: str,
                       cpu: Callable[[], dict[str, float]]) -> dict[str, dict]:
    """Each kind of command, one at a time: request sent -> the app's notification."""
    notes: dict[str, asyncio.Future[tuple[dict, float]]] = {}

    async def on_note(message: Message) -> None:
        at = time.perf_counter()
        body = json.loads(message.payload)
        waiter = notes.setdefault(body["correlationId"], asyncio.get_running_loop().create_future())
        if not waiter.done():
            # The notification may come before the 202 has been read here: the waiter is then
            # made here, done, and found by the request's id.
            waiter.set_result((body, at))

    # Each round's messages on every topic, as a spy on '#' sees them arrive: where the time goes.
    seen: list[tuple[str, float]] = []
    names = {ORG: "{org}", light: "{light}", METER: "{meter}", CONCENTRATOR.username: "{cid}"}

    async def on_any(message: Message) -> None:
        at = time.perf_counter()
        seen.append(("/".join(names.get(part, part) for part in message.topic.split("/")), at))

    token = issue_token(secret=SECRET, org=ORG, ttl=timedelta(hours=2))
    figures: dict[str, dict] = {}
    hops: dict[str, dict[str, list[float]]] = {}
    async with MqttSession(client_id=f"bench-latency-app-{os.getpid()}", host=broker.host, port=broker.port,
                           session_expiry=0, **broker.credentials(CLOUD.username)) as watcher, \
            httpx.AsyncClient(base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
        await watcher.subscribe(f"app/{ORG}/+/+", on_note)
        await watcher.subscribe("#", on_any)

        async def one(path: str, body: dict | None, kind: str = "") -> float:
            loop = asyncio.get_running_loop()
            seen.clear()
            started = time.perf_counter()
            answer = await http.post(path, json=body)
            answered = time.perf_counter()
            answer.raise_for_status()
            accepted = answer.json()
            waiter = notes.setdefault(accepted["correlationId"], loop.create_future())
            note, arrived = await asyncio.wait_for(waiter, 30)
            del notes[accepted["correlationId"]]
            took = arrived - started
            if kind:
                steps = hops.setdefault(kind, {})
                steps.setdefault("0 API answered 202", []).append(answered - started)
                first: dict[str, float] = {}
                for topic, at in seen:
                    first.setdefault(topic, at - started)
                for n, (topic, at) in enumerate(sorted(first.items(), key=lambda item: item[1]), 1):
                    steps.setdefault(f"{n} {topic}", []).append(at)
            if note["status"] != "SUCCEEDED":
                raise RuntimeError(f"{path}: {note}")
            stored = (await http.get(accepted["resultUrl"])).json()
            if stored["status"] != "SUCCEEDED":
                raise RuntimeError(f"{path}: notified, but the result URL answers {stored}")
            return took

        kinds: dict[str, Callable[[int], Awaitable[float]]] = {
            "light": lambda n, k="": one(f"/v1/publiclighting/devices/{light}/light", {"on": n % 2 == 0}, k),
            "dlms": lambda _n, k="": one(f"/v1/smartmetering/devices/{METER}/actualReads", None, k)}
        for kind, call in kinds.items():
            for n in range(3):  # warm-up: connections, caches, the meter's association
                await call(n)
            before = cpu()
            figures[kind] = _figures([await call(n, kind) for n in range(rounds)])
            after = cpu()
            # Each process's CPU per round trip (the API's includes the result URL's GET).
            figures[kind]["cpu_ms_per_round_trip"] = {
                name: round(1000 * (after[name] - before.get(name, 0.0)) / rounds, 2) for name in after}
            # The median time from the request to each step, in the order the steps came.
            figures[kind]["steps_p50_ms"] = {step: round(1000 * statistics.median(times), 2)
                                             for step, times in hops.get(kind, {}).items()
                                             if len(times) >= rounds // 2}
    return figures


def _with_multiples(figures: dict, floors: dict[str, dict]) -> dict:
    """``figures`` with its p50 and p99 as multiples of each floor's."""
    multiples = {f"x_{name}_{q}": round(figures[f"{q}_ms"] / floor[f"{q}_ms"], 1)
                 for name, floor in floors.items() for q in ("p50", "p99")}
    return {**figures, **multiples}


def _measure(database: str, *, rounds: int, burst: int, tmp: Path) -> dict:
    broker = LocalMosquitto(directory=tmp / f"mqtt-{database}", port=free_port(),
                            accounts=[CLOUD, FLEET, CONCENTRATOR])
    broker.start()
    try:
        if database == "sqlite":
            return _measure_on(f"sqlite+aiosqlite:///{tmp / 'registry.db'}", broker, rounds=rounds, burst=burst,
                               tmp=tmp)
        with _postgres_database() as url:
            return _measure_on(url, broker, rounds=rounds, burst=burst, tmp=tmp)
    finally:
        broker.stop()


def _measure_on(url: str, broker: LocalMosquitto, *, rounds: int, burst: int, tmp: Path) -> dict:
    ids = light_ids(max(burst, 1))
    asyncio.run(migrate(url))
    asyncio.run(_register(url, ids))
    asyncio.run(_register_meter(url))
    floors = {"mqtt": asyncio.run(_mqtt_floor(broker, rounds)), "commit": asyncio.run(_commit_floor(url, rounds))}
    logs = tmp / url.split(":", 1)[0].split("+", 1)[0]
    logs.mkdir(exist_ok=True)
    layers = Layers(tmp=logs, broker=broker, url=url, lights=len(ids), cores=1, domains=1, fleet_sessions=2,
                    pool=10)
    edge = _edge(logs, broker)
    try:
        for process in edge:
            process.start(timeout=60)
        _wait_for_line(edge[1], "connected (session present")
        layers.start()
        base = f"http://127.0.0.1:{layers.api_port}"
        trips = asyncio.run(_round_trips(base, broker, rounds=rounds, light=ids[0], cpu=layers.cpu))
        result: dict = {"database": url.split(":", 1)[0], "floors": floors,
                        **{k: _with_multiples(v, floors) for k, v in trips.items()}}
        if burst:
            cpu_before = layers.cpu()
            result["burst"] = asyncio.run(_switch_all(base, broker, ids, bulk=0, concurrency=burst))
            cpu_after = layers.cpu()
            spent = sum(cpu_after.get(n, 0.0) - cpu_before.get(n, 0.0) for n in cpu_after)
            result["burst"]["cpu_ms_per_command"] = round(1000 * spent / len(ids), 2)
            # Where it goes: each process's CPU per command (the bench's own is bench_cpu_s).
            result["burst"]["cpu_ms_per_command_by_process"] = {
                name: round(1000 * (cpu_after[name] - cpu_before.get(name, 0.0)) / len(ids), 3) for name in cpu_after}
        return result
    finally:
        layers.stop()
        for process in reversed(edge):
            process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="round trips of each kind, one at a time")
    parser.add_argument("--burst", type=int, default=2000, help="single requests sent at once (0: none)")
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--keep", action="store_true", help="keep the work directory with every process's log")
    args = parser.parse_args()
    print(json.dumps({"load_average": os.getloadavg()}))  # noqa: T201 - a benchmark's output is its report
    work = Path(tempfile.mkdtemp(prefix="gw-latency-"))
    try:
        for database in args.databases.split(","):
            print(json.dumps(_measure(database, rounds=args.rounds, burst=args.burst, tmp=work)))  # noqa: T201
    finally:
        if args.keep:
            print(json.dumps({"kept": str(work)}))  # noqa: T201
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"load_average": os.getloadavg()}))  # noqa: T201


if __name__ == "__main__":
    main()
