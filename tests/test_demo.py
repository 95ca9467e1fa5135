"""The README's run command: `gridwire demo` brings the platform up, readings are queryable
within seconds, a street light can be switched through the web API, and the firmware recipe it
prints rolls a signed image out to its DLMS meters. One demo process serves every test here."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from gridwire.demo import meter_id
from gridwire.demo_firmware import DLMS_MODEL, RECIPE_VERSION
from gridwire.procs import ManagedProcess, free_port
from tests.fixtures.waiting import wait_until

DLMS_METERS = 2


@dataclass(frozen=True)
class Demo:
    directory: Path
    log: Path
    api: httpx.Client


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    tmp_path = tmp_path_factory.mktemp("demo")
    api_port = free_port()
    log = tmp_path / "demo.log"
    process = ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", "demo", "--dir", str(tmp_path / "demo"),
                                   "--api-port", str(api_port), "--mqtt-port", str(free_port()),
                                   "--mqtt-tls-port", str(free_port()), "--influx-port", str(free_port()),
                                   "--lights", "3", "--interval", "0.5"],
                             log=log, port=api_port)
    process.start(timeout=60)
    try:
        wait_until(lambda: "  data " in log.read_text(), timeout=30, what="the demo's announcement")
        token = re.search(r"bearer\s+(\S+)", log.read_text()).group(1)
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10,
                          headers={"Authorization": f"Bearer {token}"}) as api:
            yield Demo(directory=tmp_path / "demo", log=log, api=api)
    finally:
        process.stop()
    assert "Traceback" not in log.read_text()


def test_demo_serves_readings_and_switches_a_light(demo: Demo) -> None:
    # The concentrator is on mutual TLS: its config has certificates and no password.
    concentrator_toml = (demo.directory / "edge" / "concentrator.toml").read_text()
    assert "cert_file" in concentrator_toml and "password =" not in concentrator_toml.split("[[meters]]")[0]
    assert "--cafile" in demo.log.read_text()
    api = demo.api
    now = datetime.now(UTC)
    query = {"readingTimeStart": (now - timedelta(days=2)).isoformat(),
             "readingTimeEnd": (now + timedelta(days=1)).isoformat(), "pageSize": 10}
    answers: list[httpx.Response] = []

    def stored() -> int:
        answers.append(api.post("/v1/meterReadings", json=query))
        return answers[-1].json().get("totalRows", 0) if answers[-1].status_code == 200 else 0

    # P1 live readings plus the DLMS meters' backfilled day
    wait_until(lambda: stored() >= 100, timeout=60, interval=0.5, what="100 readings stored")

    accepted = api.post("/v1/publiclighting/devices/light-1/light", json={"on": True, "dimLevel": 70})
    assert accepted.status_code == 202, accepted.text
    result = _result(api, accepted.json()["resultUrl"])
    assert result["result"]["on"] is True and result["result"]["dimLevel"] == 70


def test_demo_firmware_recipe_updates_its_dlms_meters(demo: Demo, tmp_path: Path) -> None:
    """Run the announcement's firmware recipe as printed: make and sign an image with the demo's
    key, upload it, create and start a campaign by model, and follow its status to the end."""
    key = demo.directory / "firmware-keys" / "signing.key"
    assert key.stat().st_mode & 0o777 == 0o600
    toml = (demo.directory / "edge" / "concentrator.toml").read_text()
    assert "[firmware]" in toml and f'model = "{DLMS_MODEL}"' in toml
    steps = _recipe(demo.log.read_text())
    assert [s[0] for s in steps] == ["gridwire"] * 3 + ["curl"] * 2, steps
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for argv in steps[:3]:  # image, sign, upload: the CLI, exactly as printed
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, (argv, done.stdout, done.stderr)

    created = _curl(steps[3])
    assert created.status_code == 201, created.text
    campaign = created.json()
    assert campaign["state"] == "RUNNING" and campaign["targetCount"] == DLMS_METERS, campaign
    status_argv = [a.replace("CAMPAIGN_ID", campaign["id"]) for a in steps[4]]
    statuses: list[dict] = []

    def ended() -> bool:
        answer = _curl(status_argv)
        assert answer.status_code == 200, answer.text
        statuses.append(answer.json())
        return not statuses[-1]["campaign"]["active"]

    wait_until(ended, timeout=90, interval=0.5, what="the campaign to end")
    status = statuses[-1]
    assert status["campaign"]["state"] == "FINISHED", status
    assert status["counts"].get("SUCCEEDED") == DLMS_METERS and not status["failed"], status

    for n in range(DLMS_METERS):  # the meters themselves now report the new version
        device = meter_id(2000 + n)
        accepted = demo.api.post(f"/v1/smartmetering/devices/{device}/firmwareVersion")
        assert accepted.status_code == 202, accepted.text
        assert _result(demo.api, accepted.json()["resultUrl"])["result"]["firmwareVersion"] == RECIPE_VERSION
        assert demo.api.get(f"/v1/installation/devices/{device}").json()["firmwareVersion"] == RECIPE_VERSION


def _recipe(log: str) -> list[list[str]]:
    """The firmware recipe's command lines (``$ ...``) from the announcement, split as a shell would."""
    section = log[log.index("  firmware "):]
    return [shlex.split(line.split("$ ", 1)[1]) for line in section.splitlines() if line.strip().startswith("$ ")]


def _curl(argv: list[str]) -> httpx.Response:
    """A printed ``curl -s [-X M] URL [-H 'K: V'] [-d BODY]`` line, sent as curl would send it."""
    method, url, headers, body = "GET", "", {}, None
    args = iter(argv[1:])
    for arg in args:
        if arg == "-s":
            continue
        if arg == "-X":
            method = next(args)
        elif arg == "-H":
            name, value = next(args).split(":", 1)
            headers[name.strip()] = value.strip()
        elif arg == "-d":
            body = next(args)
            method = "POST" if method == "GET" else method
        else:
            assert arg.startswith("http"), f"unexpected curl argument {arg!r}"
            url = arg
    return httpx.request(method, url, headers=headers, content=body, timeout=10)


def _result(api: httpx.Client, url: str) -> dict:
    results: list[dict] = []

    def final() -> bool:
        results.append(api.get(url).json())
        return results[-1].get("status") in ("SUCCEEDED", "FAILED", "TIMEOUT", "EXPIRED")

    wait_until(final, timeout=60, interval=0.2, what=f"a final result at {url}")
    assert results[-1].get("status") == "SUCCEEDED", results[-1]
    return results[-1]
