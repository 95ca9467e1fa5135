"""Structured logs: run the API, domain and core processes and a light fleet as OS processes with
``GRIDWIRE_LOG_FORMAT=json`` and known secrets; follow one switched light through every process's
log by its correlation id, and find none of the secrets in any log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx

from cloud.auth import ADMIN_SCOPE, issue_token
from gridwire.procs import ManagedProcess, free_port
from tests.fixtures.mosquitto import CLOUD, FLEET
from tests.fixtures.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
JWT_SECRET = "jwt-secret-that-must-never-be-logged-4f1c"
INFLUX_PASSWORD = "influx-password-never-logged-9a2e"
CONCENTRATOR_PASSWORD = "conc-1-pw"
ORG = "log-org"


def gridwire(argv: list[str], log: Path, env: dict[str, str], port: int | None = None) -> ManagedProcess:
    return ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", *argv, "--log-level", "DEBUG"], log=log,
                          env={"GRIDWIRE_LOG_FORMAT": "json", **env}, cwd=ROOT, port=port)


def lines_of(log: Path) -> list[dict]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_one_command_is_followed_across_processes_and_no_secret_is_logged(mosquitto, influxd, tmp_path) -> None:
    api_port = free_port()
    env = {"GRIDWIRE_MQTT_HOST": mosquitto.host, "GRIDWIRE_MQTT_PORT": str(mosquitto.port),
           "GRIDWIRE_MQTT_USERNAME": CLOUD.username, "GRIDWIRE_MQTT_PASSWORD": CLOUD.password,
           "GRIDWIRE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'platform.sqlite'}",
           "GRIDWIRE_INFLUX_URL": influxd.url, "GRIDWIRE_INFLUX_PASSWORD": INFLUX_PASSWORD,
           "GRIDWIRE_INFLUX_USERNAME": "reader", "GRIDWIRE_JWT_SECRET": JWT_SECRET}
    config = tmp_path / "concentrator.toml"
    config.write_text(f'concentrator_id = "conc-1"\noutbox = "{tmp_path / "outbox.sqlite"}"\n'
                      f'state = "{tmp_path / "state.sqlite"}"\n\n[broker]\nhost = "127.0.0.1"\n'
                      f'port = {mosquitto.port}\nusername = "conc-1"\npassword = "{CONCENTRATOR_PASSWORD}"\n')
    logs = {name: tmp_path / f"{name}.log" for name in ("api", "core", "domain", "lights", "concentrator")}
    processes = [gridwire(["cloud", "api", "--port", str(api_port), "--insecure-http"], logs["api"], env, port=api_port)]
    processes[0].start(timeout=60)  # migrates the database first
    processes += [gridwire(["cloud", "core"], logs["core"], env), gridwire(["cloud", "domain"], logs["domain"], env),
                  gridwire(["sim", "lights", "--count", "2", "--port", str(mosquitto.port), "--username",
                            FLEET.username], logs["lights"], {"GRIDWIRE_FLEET_PASSWORD": FLEET.password}),
                  gridwire(["concentrator", "run", str(config)], logs["concentrator"], {})]
    token = issue_token(secret=JWT_SECRET, org=ORG, scopes=[ADMIN_SCOPE])
    try:
        for process in processes[1:]:
            process.start()
        ready = {"core": "core consumer", "domain": "domain consumer", "lights": "street lights on",
                 "concentrator": "starting"}
        wait_until(lambda: all(text in logs[name].read_text(errors="replace") for name, text in ready.items()),
                   what="core, domain, lights and concentrator started")
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10,
                          headers={"Authorization": f"Bearer {token}"}) as api:
            _register(tmp_path / "platform.sqlite")
            result = _switch(api)
    finally:
        for process in processes:
            process.stop()

    correlation = result["correlationId"]
    command_ids = {c["commandId"] for c in result["commands"]}
    for name in ("api", "domain", "core", "lights"):
        mine = [entry for entry in lines_of(logs[name]) if entry.get("correlation") == correlation]
        assert mine, f"no {name} log line names correlation {correlation}"
        assert all(entry["level"] and entry["logger"] and entry["time"] for entry in mine)
    assert any(entry.get("process") == "core" for entry in lines_of(logs["core"]))
    core_lines = " ".join(e["message"] for e in lines_of(logs["core"]) if e.get("correlation") == correlation)
    assert all(command in core_lines for command in command_ids)
    assert lines_of(logs["concentrator"]), "the concentrator logs JSON too"

    secrets = [JWT_SECRET, INFLUX_PASSWORD, CLOUD.password, FLEET.password, CONCENTRATOR_PASSWORD, token]
    for name, log in logs.items():
        text = log.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"{name} logged a secret"


def _register(database: Path) -> None:
    import asyncio

    from cloud.registry import DeviceCreate, DeviceType, OrganisationCreate, PlatformRole, Protocol, Registry

    async def register() -> None:
        async with Registry(url=f"sqlite+aiosqlite:///{database}") as registry:
            await registry.add_organisation(OrganisationCreate(identification=ORG, name="Logs",
                                                               role=PlatformRole.ADMIN))
            await registry.create_device(DeviceCreate(identification="light-1", device_type=DeviceType.STREET_LIGHT,
                                                      protocol=Protocol.MQTT), owner=ORG)

    asyncio.run(register())


def _switch(api: httpx.Client) -> dict:
    accepted = api.post("/v1/publiclighting/devices/light-1/light", json={"on": True, "dimLevel": 40})
    assert accepted.status_code == 202, accepted.text
    results: list[dict] = []

    def final() -> bool:
        results.append(api.get(accepted.json()["resultUrl"]).json())
        return results[-1].get("status") != "PENDING"

    wait_until(final, timeout=30, interval=0.1, what="the light switched")
    assert results[-1].get("status") == "SUCCEEDED", results[-1]
    return results[-1]
