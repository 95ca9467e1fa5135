"""A core process SIGKILLed in the middle of a 5,000-light bulk request: every light ends
SUCCEEDED, none lost and none switched twice.

Every layer is a real process on PostgreSQL and the project's Mosquitto (the API, two core
processes sharing the work, a domain process); the 5,000 lights are one MQTT-native fleet in
the test, which counts what each light carries out. One core is killed once the fleet has
carried out a few hundred commands, with commands, answers and outcomes of its share in
every stage (stored but not yet published, published but not acknowledged, ended but not
yet announced), and started again with the same client id, as a supervisor would: its
durable session gets back what it had not acknowledged.
"""

from __future__ import annotations

import sys
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, insert, select

from broker import topics
from broker.session import Backoff, MqttSession
from cloud.auth import issue_token
from cloud.core.models import CommandRow
from cloud.domains.models import FunctionalRequestRow
from cloud.migrations import migrate
from cloud.registry import OrganisationCreate, Registry
from cloud.registry.functions import FunctionGroup
from cloud.registry.models import Device, DeviceAuthorisation, Organisation
from edge.devices.street_light import StreetLightFleet
from gridwire.procs import ManagedProcess
from tests.fixtures.mosquitto import MosquittoServer
from tests.fixtures.procs import free_port
from tests.fixtures.waiting import poll_until

ROOT = Path(__file__).resolve().parents[3]
LIGHTS = 5000
ORG = "sigkill-org"
SECRET = "sigkill-jwt-secret-" + uuid.uuid4().hex


async def _register(url: str, ids: list[str]) -> None:
    async with Registry(url=url) as registry:
        await registry.add_organisation(OrganisationCreate(identification=ORG, name="Kill"))
        async with registry.engine.begin() as conn:
            org_id = (await conn.execute(select(Organisation.id).where(Organisation.identification == ORG))).scalar_one()
            await conn.execute(insert(Device), [
                {"identification": i, "device_type": "STREET_LIGHT", "protocol": "MQTT", "state": "ACTIVE",
                 "comm_success_count": 0, "comm_failure_count": 0, "consecutive_failures": 0} for i in ids])
            rows = (await conn.execute(select(Device.id).where(Device.identification.in_(ids)))).scalars()
            await conn.execute(insert(DeviceAuthorisation), [
                {"device_id": row, "organisation_id": org_id, "function_group": FunctionGroup.OWNER} for row in rows])


def _process(what: str, broker: MosquittoServer, url: str, tmp: Path, *, port: int | None = None) -> ManagedProcess:
    env = {"GRIDWIRE_DATABASE_URL": url, "GRIDWIRE_MQTT_HOST": broker.host, "GRIDWIRE_MQTT_PORT": str(broker.port),
           "GRIDWIRE_MQTT_USERNAME": "gridwire-cloud",
           "GRIDWIRE_MQTT_PASSWORD": broker.credentials("gridwire-cloud")["password"],
           "GRIDWIRE_MQTT_CLIENT_ID": f"sigkill-{what}", "GRIDWIRE_JWT_SECRET": SECRET,
           "GRIDWIRE_MIGRATE_ON_START": "false", "GRIDWIRE_INFLUX_CREATE_DATABASE": "false"}
    role = what.split("-")[0]
    argv = [sys.executable, "-m", "gridwire.cli", "cloud", role]
    if port is not None:  # the API, on plain HTTP asked for explicitly (the command path is tested here)
        argv += ["--port", str(port), "--insecure-http"]
    return ManagedProcess(argv=argv, log=tmp / f"{what}.log", port=port, env=env, cwd=ROOT)


async def _logged(process: ManagedProcess, text: str, *, times: int = 1) -> None:
    async def log() -> str:
        assert process.running, f"{process.argv} exited:\n{process.log.read_text(errors='replace')[-3000:]}"
        return process.log.read_text(errors="replace") if process.log.exists() else ""

    await poll_until(log, lambda found: found.count(text) >= times, timeout=90, what=f"{process.log.name}: {text}",
                     interval=0.1)


async def _counts(url: str) -> tuple[Counter[str], Counter[str]]:
    async with Registry(url=url) as registry, registry.engine.connect() as conn:
        commands = Counter(dict((await conn.execute(select(CommandRow.status, func.count())
                                                    .group_by(CommandRow.status))).all()))
        requests = Counter(dict((await conn.execute(select(FunctionalRequestRow.status, func.count())
                                                    .group_by(FunctionalRequestRow.status))).all()))
    return commands, requests


async def test_core_killed_mid_bulk_loses_no_light_and_switches_none_twice(
        mosquitto: MosquittoServer, postgres_url: str, tmp_path: Path) -> None:
    ids = [f"kl-{n:05d}" for n in range(LIGHTS)]
    await migrate(postgres_url)
    await _register(postgres_url, ids)
    api_port = free_port()
    api = _process("api", mosquitto, postgres_url, tmp_path, port=api_port)
    cores = [_process(f"core-{n}", mosquitto, postgres_url, tmp_path) for n in range(2)]
    domain = _process("domain", mosquitto, postgres_url, tmp_path)
    processes = [api, *cores, domain]
    try:
        for process in processes:
            process.start(timeout=90)
        for core in cores:
            await _logged(core, "core consumer")
        await _logged(domain, "domain consumer")
        async with MqttSession(client_id="sigkill-fleet", host=mosquitto.host, port=mosquitto.port,
                               receive_maximum=1000, max_inflight=1000, backoff=Backoff(initial=0.05),
                               **mosquitto.credentials("fleet-lights")) as session:
            fleet = StreetLightFleet(session=session, light_ids=ids)
            await fleet.start(publish_initial_status=False)
            token = issue_token(secret=SECRET, org=ORG, ttl=timedelta(hours=1))
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=120,
                                         headers={"Authorization": f"Bearer {token}"}) as http:
                answer = await http.post("/v1/publiclighting/lights", json={"deviceIds": ids, "on": True})
            assert answer.status_code == 202, answer.text
            assert len(answer.json()["requests"]) == LIGHTS

            async def handled() -> int:
                return fleet.commands_handled

            at_kill = await poll_until(handled, lambda n: n >= 300, timeout=180, what="the fleet to get going")
            cores[0].kill()
            assert at_kill < LIGHTS, "the bulk finished before the kill: not mid-way"
            cores[0].start()
            await _logged(cores[0], "core consumer", times=2)
            await poll_until(lambda: _counts(postgres_url), lambda found: found[1]["PENDING"] == 0, timeout=300,
                             what="every functional request to complete", interval=0.5)
            commands, requests = await _counts(postgres_url)
        assert commands == Counter({"SUCCEEDED": LIGHTS})  # one command per light, every one succeeded
        assert requests == Counter({"SUCCEEDED": LIGHTS})
        # Each light carried out its command exactly once (a repeat is answered, not carried out).
        assert fleet.commands_handled == LIGHTS
        assert all(fleet.lights[i].on for i in ids)
    finally:
        for process in processes:
            process.stop()
