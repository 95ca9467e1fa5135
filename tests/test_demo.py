"""The README's run command: `gridwire demo` brings the platform up, readings are queryable
within seconds, a street light can be switched through the web API, and the firmware recipe it
prints rolls a signed image out to its DLMS meters. Every command line it prints is run as a
user would paste it into a new terminal: bash with the system's PATH, no virtualenv active.
One demo process serves every test here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from gridwire.demo import CONCENTRATOR_ID, METRICS_ORDER, ORG, meter_id
from gridwire.demo_firmware import DLMS_MODEL, RECIPE_VERSION
from tests.fixtures.demo import Demo
from tests.fixtures.waiting import wait_until

DLMS_METERS = 2


# A new terminal's PATH (Debian's default for root): no virtualenv on it.
FRESH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _pasted(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``line`` as pasted into a fresh shell: bash without profile or rc files, the
    system's PATH, no variable of this test process."""
    return subprocess.run(["bash", "--noprofile", "--norc", "-c", line], cwd=cwd, capture_output=True, text=True,
                          env={"PATH": FRESH_PATH, "HOME": str(cwd), "LANG": "C.UTF-8"}, timeout=90, check=False)


def _printed(log: str, label: str) -> str:
    """The command the announcement prints after ``label`` (``query``, ``broker``, ...)."""
    match = re.search(rf"^  {label} +(\S.*)$", log, re.MULTILINE)
    assert match, f"no {label!r} line in the announcement"
    return match.group(1).split("   (")[0]


def test_printed_lines_work_in_a_fresh_shell(demo: Demo, tmp_path: Path) -> None:
    """The query, both broker lines and the app's, pasted as printed: the query answers readings, each
    broker mosquitto_sub receives a message of the concentrator's (its status is retained), the app's
    a reading of its organisation's meters, and another organisation's subtree is refused."""
    assert _pasted("command -v gridwire", tmp_path).returncode != 0  # the shell has no virtualenv
    log = demo.log.read_text()
    answers: list[dict] = []

    def answered() -> bool:
        answer = _pasted(_printed(log, "query"), tmp_path)
        assert answer.returncode == 0, answer.stderr
        answers.append(json.loads(answer.stdout))
        return "meterReadings" in answers[-1]

    # Until 20 readings are stored in its time range the API refuses the query (privacy).
    wait_until(answered, timeout=60, interval=0.5, what="the printed query to answer readings")
    assert answers[-1]["totalRows"] >= 20, answers[-1]
    for label in ("broker", "over TLS"):
        received = _pasted(f"{_printed(log, label)} -C 1 -W 30", tmp_path)
        assert received.returncode == 0, (label, received.stderr)
        assert received.stdout.startswith("concentrator/"), (label, received.stdout)
    # The app's line: its organisation's meters' readings, once stored; another organisation's are refused.
    app = _printed(log, "app")
    received = _pasted(f"{app} -C 1 -W 60", tmp_path)
    assert received.returncode == 0, received.stderr
    topic, payload = received.stdout.split(" ", 1)
    assert topic.startswith(f"app/{ORG}/metering/reading/") and json.loads(payload)["meterReadingIdentifier"]
    refused = _pasted(app.replace(f"app/{ORG}/metering/reading/+", "app/another-org/#") + " -C 1 -W 10", tmp_path)
    assert "All subscription requests were denied" in refused.stderr and refused.stdout == "", refused


def test_demo_serves_readings_and_switches_a_light(demo: Demo) -> None:
    # The concentrator is on mutual TLS: its config has certificates and no password.
    concentrator_toml = (demo.directory / "edge" / "concentrator.toml").read_text()
    assert "cert_file" in concentrator_toml and "password =" not in concentrator_toml.split("[[meters]]")[0]
    # The DLMS meters' password is sealed with the concentrator's own key (the simulator's is 12345678).
    assert 'password = "sealed:v1:demo:' in concentrator_toml and "12345678" not in concentrator_toml
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

    # The switch line the announcement prints, pasted into a fresh shell.
    switch = demo.log.read_text().split("switch one:")[1].splitlines()[1].strip()
    accepted = _pasted(switch, demo.directory)
    assert accepted.returncode == 0, accepted.stderr
    result = _result(api, json.loads(accepted.stdout)["resultUrl"])
    assert result["result"]["on"] is True and result["result"]["dimLevel"] == 70


def demo_api(demo: Demo) -> str:
    """The options that reach the demo's API (HTTPS, checked against the demo's CA)."""
    return f"--api {demo.api_url} --api-ca {demo.directory / 'pki' / 'ca.pem'} --token {demo.token}"


def test_demo_firmware_recipe_updates_its_dlms_meters(demo: Demo, tmp_path: Path) -> None:
    """Run the announcement's firmware recipe as printed: make and sign an image with the demo's
    key, upload it, create and start a campaign by model, and follow its status to the end."""
    key = demo.directory / "firmware-keys" / "signing.key"
    assert key.stat().st_mode & 0o777 == 0o600
    toml = (demo.directory / "edge" / "concentrator.toml").read_text()
    assert "[firmware]" in toml and f'model = "{DLMS_MODEL}"' in toml
    steps = _recipe(demo.log.read_text())
    programs = [step.split()[0] for step in steps]
    # The CLI by the virtualenv's absolute path, so a fresh shell finds it.
    assert programs[:3] == [str(Path(sys.executable).parent / "gridwire")] * 3 and programs[3:] == ["curl"] * 2, steps
    for step in steps[:3]:  # image, sign, upload: the CLI, exactly as printed
        done = _pasted(step, tmp_path)
        assert done.returncode == 0, (step, done.stdout, done.stderr)
    assert "(25%)" in done.stderr and "(100%)" in done.stderr, done.stderr  # the upload's progress

    created = _pasted(steps[3], tmp_path)
    assert created.returncode == 0, created.stderr
    campaign = json.loads(created.stdout)
    assert campaign["state"] == "RUNNING" and campaign["targetCount"] == DLMS_METERS, campaign
    # Watched live through the CLI until it ends: a line per change (not a terminal), then the outcome.
    watched = _pasted(f"{programs[0]} campaign watch {campaign['id']} {demo_api(demo)} "
                      "--interval 0.3 --timeout 120", tmp_path)
    assert watched.returncode == 0, (watched.stdout, watched.stderr)
    lines = watched.stdout.splitlines()
    assert any("in flight" in line and "wave 0" in line for line in lines), lines
    assert lines[-1] == f"campaign {campaign['id']} FINISHED: {DLMS_METERS} succeeded, 0 failed, 0 cancelled"
    answer = _pasted(steps[4].replace("CAMPAIGN_ID", campaign["id"]), tmp_path)
    assert answer.returncode == 0, answer.stderr
    status = json.loads(answer.stdout)
    assert status["campaign"]["state"] == "FINISHED", status
    assert status["counts"].get("SUCCEEDED") == DLMS_METERS and not status["failed"], status

    for n in range(DLMS_METERS):  # the meters themselves now report the new version
        device = meter_id(2000 + n)
        accepted = demo.api.post(f"/v1/smartmetering/devices/{device}/firmwareVersion")
        assert accepted.status_code == 202, accepted.text
        assert _result(demo.api, accepted.json()["resultUrl"])["result"]["firmwareVersion"] == RECIPE_VERSION
        assert demo.api.get(f"/v1/installation/devices/{device}").json()["firmwareVersion"] == RECIPE_VERSION


def test_fleet_status_lists_the_concentrator_and_its_meters(demo: Demo, tmp_path: Path) -> None:
    gridwire = str(Path(sys.executable).parent / "gridwire")
    runs: list[subprocess.CompletedProcess[str]] = []

    def online() -> bool:
        runs.append(_pasted(f"{gridwire} fleet status --meters {demo_api(demo)}", tmp_path))
        assert runs[-1].returncode == 0, runs[-1].stderr
        return "ONLINE" in runs[-1].stdout

    wait_until(online, timeout=30, interval=0.5, what="the concentrator ONLINE in the table")
    table = runs[-1].stdout
    assert CONCENTRATOR_ID in table, table
    assert meter_id(0) in table and meter_id(2000) in table, table  # a P1 and a DLMS meter behind it
    assert "type STREET_LIGHT" in table, table


def test_prometheus_scrapes_every_demo_process(demo: Demo, prometheus) -> None:
    """Every process of the platform and the concentrator serve metrics that a real Prometheus
    scrapes, and known traffic (one light switched) shows up in each layer's counters."""
    jobs = {name: [f"127.0.0.1:{demo.metrics_port + n}"] for n, name in enumerate(METRICS_ORDER)}
    server = prometheus(jobs)
    wait_until(lambda: set(server.targets_up().values()) == {"up"}, timeout=60, interval=0.2,
               what="every demo process scraped")
    for name in METRICS_ORDER:
        assert server.value(f'gridwire_process_info{{job="{name}"}}') == 1

    route = 'route="/v1/publiclighting/devices/{device_id}/light",status="202"'
    before = server.value('sum(gridwire_domain_requests_total{domain="publiclighting",status="SUCCEEDED"})') or 0
    before_api = server.value(f"sum(gridwire_api_request_seconds_count{{{route}}})") or 0
    accepted = demo.api.post("/v1/publiclighting/devices/light-2/light", json={"on": False})
    assert accepted.status_code == 202, accepted.text
    result = _result(demo.api, accepted.json()["resultUrl"])
    want = {
        'sum(gridwire_domain_requests_total{domain="publiclighting",status="SUCCEEDED"})': before + 1,
        f"sum(gridwire_api_request_seconds_count{{{route}}})": before_api + 1,
    }
    wait_until(lambda: all(server.value(q) == v for q, v in want.items()), timeout=30, interval=0.25,
               what=f"Prometheus to scrape {want}")
    assert result["commands"]
    assert server.value('sum(gridwire_core_commands_total{status="SUCCEEDED"})') >= len(result["commands"])
    # Readings flow: the concentrator's confirmed messages are stored by ingest.
    assert server.value("sum(gridwire_ingest_readings_total)") > 0
    assert server.value("gridwire_edge_forwarder_confirmed_total") > 0
    assert server.value('sum(gridwire_edge_p1_telegrams_total{result="ok"})') > 0
    assert server.value('sum(gridwire_edge_meter_reads_total{protocol="dlms",result="success"})') > 0
    assert server.value('gridwire_monitor_fleet{kind="concentrator",state="ONLINE"}') == 1
    # No device id labels a cloud process's metric (the concentrator may label its own meters).
    for n, name in enumerate(METRICS_ORDER):
        text = httpx.get(f"http://127.0.0.1:{demo.metrics_port + n}/metrics").text
        if name != "concentrator":
            assert "light-" not in text and meter_id(0) not in text and CONCENTRATOR_ID not in text, name


def _recipe(log: str) -> list[str]:
    """The firmware recipe's command lines (``$ ...``) from the announcement."""
    section = log[log.index("  firmware "):]
    return [line.split("$ ", 1)[1] for line in section.splitlines() if line.strip().startswith("$ ")]


def _result(api: httpx.Client, url: str) -> dict:
    results: list[dict] = []

    def final() -> bool:
        results.append(api.get(url).json())
        return results[-1].get("status") in ("SUCCEEDED", "FAILED", "TIMEOUT", "EXPIRED")

    wait_until(final, timeout=60, interval=0.2, what=f"a final result at {url}")
    assert results[-1].get("status") == "SUCCEEDED", results[-1]
    return results[-1]
