"""A light's own schedule reaches a light that was away when it was set, every layer a real process.

The API, core and domain processes (``gridwire cloud ...``) on PostgreSQL and Mosquitto, and
the street light as ``gridwire sim lights``. The light holds its first schedule; its process is
SIGKILLed (power lost, and its memory with it); a second schedule is set while it is down.

- Started again with the same durable session, the broker hands it the command it kept: born
  already holding the second schedule, it is sent nothing more.
- Killed again, a third schedule set, and replaced by a new controller (a new session: nothing
  kept for it), it is born holding no schedule: the domain process's keeper sends it the third
  one, which it takes once and reports."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from broker.session import Message, MqttSession
from cloud.auth import issue_token
from cloud.migrations import migrate
from cloud.registry import DeviceCreate, DeviceType, OrganisationCreate, Protocol, Registry
from cloud.registry.schemas import Location
from gridwire.procs import ManagedProcess
from tests.fixtures.mosquitto import MosquittoServer
from tests.fixtures.procs import free_port
from tests.fixtures.waiting import poll_until

ROOT = Path(__file__).resolve().parents[2]
ORG = "resend-org"
LIGHT = "rs-light-1"
SECRET = "resend-jwt-secret-" + uuid.uuid4().hex
SCHEDULE = {"entries": [{"action": {"on": True, "dimLevel": 60}, "at": "sunset", "offsetMinutes": 15},
                        {"action": {"on": False}, "at": "23:30", "timezone": "Europe/Amsterdam"}]}


def _cloud(what: str, broker: MosquittoServer, url: str, tmp: Path, *, port: int | None = None) -> ManagedProcess:
    env = {"GRIDWIRE_DATABASE_URL": url, "GRIDWIRE_MQTT_HOST": broker.host, "GRIDWIRE_MQTT_PORT": str(broker.port),
           "GRIDWIRE_MQTT_USERNAME": "gridwire-cloud",
           "GRIDWIRE_MQTT_PASSWORD": broker.credentials("gridwire-cloud")["password"],
           "GRIDWIRE_MQTT_CLIENT_ID": f"resend-{what}", "GRIDWIRE_JWT_SECRET": SECRET,
           "GRIDWIRE_MIGRATE_ON_START": "false", "GRIDWIRE_INFLUX_CREATE_DATABASE": "false"}
    argv = [sys.executable, "-m", "gridwire.cli", "cloud", what]
    if port is not None:  # the API, on plain HTTP asked for explicitly (the command path is tested here)
        argv += ["--port", str(port), "--insecure-http"]
    return ManagedProcess(argv=argv, log=tmp / f"{what}.log", port=port, env=env, cwd=ROOT)


def _lights(broker: MosquittoServer, tmp: Path, client_id: str = "resend-lights") -> ManagedProcess:
    return ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", "sim", "lights", "--count", "1",
                                "--prefix", "rs-light-", "--client-id", client_id, "--host", broker.host,
                                "--port", str(broker.port), "--username", "fleet-lights"],
                          env={"GRIDWIRE_FLEET_PASSWORD": broker.credentials("fleet-lights")["password"]},
                          log=tmp / f"{client_id}.log", cwd=ROOT)


def _log(process: ManagedProcess) -> str:
    return process.log.read_text(errors="replace") if process.log.exists() else ""


async def _logged(process: ManagedProcess, text: str, *, times: int = 1) -> None:
    async def log() -> str:
        assert process.running, f"{process.argv} exited:\n{_log(process)[-3000:]}"
        return _log(process)

    await poll_until(log, lambda found: found.count(text) >= times, timeout=90, what=f"{process.log.name}: {text}",
                     interval=0.1)


async def test_a_light_away_when_its_schedule_changed_gets_it_once_when_back(
        mosquitto: MosquittoServer, postgres_url: str, tmp_path: Path) -> None:
    await migrate(postgres_url)
    async with Registry(url=postgres_url) as registry:
        await registry.add_organisation(OrganisationCreate(identification=ORG, name="Resend"))
        await registry.create_device(DeviceCreate(identification=LIGHT, device_type=DeviceType.STREET_LIGHT,
                                                  protocol=Protocol.MQTT,
                                                  location=Location(latitude=52.37, longitude=4.90)), owner=ORG)
    api_port = free_port()
    cloud = [_cloud("api", mosquitto, postgres_url, tmp_path, port=api_port),
             _cloud("core", mosquitto, postgres_url, tmp_path), _cloud("domain", mosquitto, postgres_url, tmp_path)]
    lights = _lights(mosquitto, tmp_path)
    replaced = _lights(mosquitto, tmp_path, client_id="resend-lights-new")
    statuses: list[dict[str, Any]] = []

    async def on_status(message: Message) -> None:
        if message.payload:
            statuses.append(json.loads(message.payload))

    token = issue_token(secret=SECRET, org=ORG, ttl=timedelta(hours=1))
    try:
        for process in cloud:
            process.start(timeout=90)
        await _logged(cloud[1], "core consumer")
        await _logged(cloud[2], "domain consumer")
        lights.start()
        await _logged(lights, "street lights on 1 session")
        async with MqttSession(client_id=f"resend-watch-{uuid.uuid4().hex[:8]}", host=mosquitto.host,
                               port=mosquitto.port, session_expiry=0,
                               **mosquitto.credentials("gridwire-cloud")) as watch, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=30,
                                  headers={"Authorization": f"Bearer {token}"}) as http:
            await watch.subscribe(f"device/{LIGHT}/status", on_status)
            path = f"/v1/publiclighting/devices/{LIGHT}/deviceSchedule"

            async def kept() -> dict[str, Any]:
                answer = await http.get(path)
                assert answer.status_code == 200, answer.text
                return answer.json()

            assert (await http.post(path, json=SCHEDULE)).status_code == 202
            first = await poll_until(kept, lambda k: k["confirmed"], timeout=60, what="the first schedule held")

            lights.kill()  # power lost: the light forgets its schedule
            second_body = {"entries": [dict(SCHEDULE["entries"][0], offsetMinutes=45), SCHEDULE["entries"][1]]}
            answer = await http.post(path, json=second_body)
            assert answer.status_code == 202, answer.text
            second = await kept()
            assert second["version"] > first["version"] and not second["confirmed"]

            lights.start()  # the broker kept the command for its session
            held = await poll_until(kept, lambda k: k["confirmed"], timeout=90, what="the second schedule held")
            assert held["version"] == second["version"] and held["resends"] == 0

            lights.kill()
            third_body = {"entries": [dict(SCHEDULE["entries"][0], offsetMinutes=30), SCHEDULE["entries"][1]]}
            assert (await http.post(path, json=third_body)).status_code == 202
            third = await kept()
            assert third["version"] > second["version"] and not third["confirmed"]
            births = len([s for s in statuses if s.get("birth")])
            replaced.start()  # a new controller, born holding no schedule
            done = await poll_until(kept, lambda k: k["confirmed"], timeout=90, what="the third schedule held")
            assert done["version"] == third["version"] and done["resends"] == 1
            result = await poll_until(lambda: http.get(f"/v1/publiclighting/results/{done['sentCorrelationId']}"),
                                      lambda r: r.status_code == 200 and r.json()["status"] != "PENDING",
                                      timeout=60, what="the re-sent request to complete")
            assert result.json()["status"] == "SUCCEEDED", result.text
            assert [s for s in statuses if s.get("birth")][births:][0].get("scheduleVersion") is None
            assert statuses[-1]["scheduleVersion"] == third["version"]
        log = _log(lights)
        assert log.count(f"schedule version {first['version']} taken") == 1
        assert log.count(f"schedule version {second['version']} taken") == 1
        assert "already held" not in log
        log = _log(replaced)
        assert log.count("schedule version") == 1 and log.count(f"schedule version {third['version']} taken") == 1
    finally:
        lights.stop()
        replaced.stop()
        for process in cloud:
            process.stop()
