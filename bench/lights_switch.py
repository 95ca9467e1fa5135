"""Benchmark: switch N simulated street lights on through the web API and time the round trips.

Starts its own Mosquitto and a SQLite registry (or uses ``--registry-url``), registers N
MQTT-native lights, runs the API (uvicorn), domain, core and results consumers and a light
fleet in this process, then POSTs ``/v1/publiclighting/devices/<id>/light`` for every light
and waits for every ``app/<org>/publiclighting/setLight`` notification. Reports the time
until the last one arrived and the per-request latency p50/p99 (POST sent -> notification).

    .venv/bin/python -m bench.lights_switch --lights 2000
    .venv/bin/python -m bench.lights_switch --lights 40000 --cores 2 --fleet-sessions 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
from sqlalchemy import insert

from broker.mosquitto_conf import Account
from broker.session import Message, MqttSession
from cloud.core.commands import CommandStore
from cloud.core.router import CoreRouter
from cloud.domains.consumer import DomainConsumer
from cloud.notify.consumer import ResultsConsumer
from cloud.registry import OrganisationCreate, Registry, migrate
from cloud.registry.functions import FunctionGroup
from cloud.registry.models import Device, DeviceAuthorisation, Organisation
from edge.devices.service import light_ids
from edge.devices.street_light import LightState, StreetLightFleet
from gridwire.services import LocalMosquitto
from tests.cloud.core.harness import build_app, serve
from tests.fixtures.procs import free_port

ORG = "bench-org"
CLOUD = Account(username="gridwire-cloud", password="bench-cloud-pw", role="cloud")


async def _register(registry: Registry, ids: list[str]) -> None:
    """Bulk-register the lights (one transaction; the per-device API is too slow for 40,000)."""
    await registry.add_organisation(OrganisationCreate(identification=ORG, name="Bench"))
    async with registry.engine.begin() as conn:
        org_id = (await conn.execute(Organisation.__table__.select().where(Organisation.identification == ORG))).first().id
        await conn.execute(insert(Device), [
            {"identification": i, "device_type": "STREET_LIGHT", "protocol": "MQTT", "state": "ACTIVE",
             "comm_success_count": 0, "comm_failure_count": 0, "consecutive_failures": 0} for i in ids])
        rows = (await conn.execute(Device.__table__.select().where(Device.identification.in_(ids)))).all()
        await conn.execute(insert(DeviceAuthorisation), [
            {"device_id": row.id, "organisation_id": org_id, "function_group": FunctionGroup.OWNER} for row in rows])


async def run(*, lights: int, cores: int, fleet_sessions: int, concurrency: int, registry_url: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="gw-bench-") as tmp:
        broker = LocalMosquitto(directory=Path(tmp) / "mqtt", port=free_port(), accounts=[CLOUD])
        broker.start()
        try:
            return await _run(broker, Path(tmp), lights=lights, cores=cores, fleet_sessions=fleet_sessions,
                              concurrency=concurrency, registry_url=registry_url)
        finally:
            broker.stop()


async def _run(broker: LocalMosquitto, tmp: Path, *, lights: int, cores: int, fleet_sessions: int,
               concurrency: int, registry_url: str | None) -> dict:
    url = registry_url or f"sqlite+aiosqlite:///{tmp / 'registry.db'}"
    await migrate(url)
    ids = light_ids(lights)

    def session(name: str) -> MqttSession:
        return MqttSession(client_id=name, host=broker.host, port=broker.port, session_expiry=0,
                           receive_maximum=1000, max_inflight=1000, **broker.credentials(CLOUD.username))

    async with AsyncExitStack() as exits:
        registry = await exits.enter_async_context(Registry(url=url))
        await _register(registry, ids)
        store = CommandStore(registry.engine)
        for n in range(cores):
            core = CoreRouter(session=await exits.enter_async_context(session(f"core-{n}")), registry=registry,
                              store=store)
            await core.start()
            exits.push_async_callback(core.close)
        cloud = await exits.enter_async_context(session("domain"))
        await DomainConsumer(session=cloud, store=store).start()
        await ResultsConsumer(session=cloud, store=store).start()
        states = {i: LightState() for i in ids}
        for n in range(fleet_sessions):
            fleet = StreetLightFleet(session=await exits.enter_async_context(session(f"fleet-{n}")), lights=states,
                                     share_group="lights")
            await fleet.start(publish_initial_status=False)

        sent_at: dict[str, float] = {}
        latencies: list[float] = []
        all_done = asyncio.Event()

        async def on_note(message: Message) -> None:
            body = json.loads(message.payload)
            started = sent_at.get(body["correlationId"])
            if started is not None and body["status"] == "SUCCEEDED":
                latencies.append(time.perf_counter() - started)
            if len(latencies) == lights:
                all_done.set()

        app_session = await exits.enter_async_context(session("app"))
        await app_session.subscribe(f"app/{ORG}/publiclighting/+", on_note)
        api_session = await exits.enter_async_context(session("api"))
        base = await exits.enter_async_context(serve(build_app(registry=registry, store=store, mqtt=api_session)))
        http = await exits.enter_async_context(httpx.AsyncClient(base_url=base, timeout=60,
                                                                 headers={"X-Org": ORG}))
        gate = asyncio.Semaphore(concurrency)

        async def switch(light: str) -> None:
            async with gate:
                started = time.perf_counter()
                answer = await http.post(f"/v1/publiclighting/devices/{light}/light", json={"on": True})
                answer.raise_for_status()
                sent_at[answer.json()["correlationId"]] = started

        begin = time.perf_counter()
        await asyncio.gather(*(switch(i) for i in ids))
        accepted = time.perf_counter() - begin
        await asyncio.wait_for(all_done.wait(), timeout=max(120.0, lights / 10))
        total = time.perf_counter() - begin
        ordered = sorted(latencies)
        return {"lights": lights, "cores": cores, "accepted_s": round(accepted, 2), "all_done_s": round(total, 2),
                "throughput_per_s": round(lights / total, 1),
                "p50_ms": round(1000 * statistics.median(ordered), 1),
                "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
                "all_on": all(s.on for s in states.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lights", type=int, default=2000)
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--fleet-sessions", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=50, help="API requests in flight at once")
    parser.add_argument("--registry-url", default=None, help="default: a SQLite file in a temp directory")
    args = parser.parse_args()
    result = asyncio.run(run(lights=args.lights, cores=args.cores, fleet_sessions=args.fleet_sessions,
                             concurrency=args.concurrency, registry_url=args.registry_url))
    print(json.dumps(result))  # noqa: T201 - a benchmark's output is its report


if __name__ == "__main__":
    main()
