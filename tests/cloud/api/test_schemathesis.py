"""Schemathesis (every check) against the assembled platform API on uvicorn, with a real influxd,
a real Mosquitto with dynamic security (so broker accounts are really made) and a PostgreSQL registry:
every operation of the OpenAPI document the API serves (docs/openapi.json), bounded in examples
and time, and no failure. Exceptions, each with its reason, are in schemathesis.toml beside this
file. The run's figures (operations, test cases, failures) are printed for the record."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from importlib.metadata import version
from pathlib import Path
from xml.etree import ElementTree

from cloud.registry import OrganisationCreate, PlatformRole, Registry
from cloud.settings import InfluxSettings
from tests.cloud.api.test_provisioning import ADMIN, bearer, platform
from tests.fixtures.influx import InfluxServer
from tests.fixtures.mosquitto import TlsMosquitto

CONFIG = Path(__file__).with_name("schemathesis.toml")
# Bounds: test cases per operation and phase, and the whole run's seconds (generous: a loaded
# machine is slower, not failed).
MAX_EXAMPLES = 5
MAX_SECONDS = 900
SEED = 9


async def test_schemathesis_finds_no_failure(tls_mosquitto: TlsMosquitto, influxd: InfluxServer, influx_db: str,
                                             postgres_url: str, tmp_path: Path) -> None:
    url = postgres_url  # the registry as deployed
    async with platform(tls_mosquitto, url, pki_dir=tls_mosquitto.pki_dir, app_broker_host="127.0.0.1",
                        app_broker_port=tls_mosquitto.tls_password_port,
                        influx=InfluxSettings(url=influxd.url, database=influx_db)) as base:
        async with Registry(url=url) as registry:
            await registry.add_organisation(OrganisationCreate(identification=ADMIN, name="Operator",
                                                               role=PlatformRole.ADMIN,
                                                               webhook_url="https://hooks.example.org/gridwire"))
        command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run",
                   f"{base}/openapi.json", "--checks", "all", "--max-examples", str(MAX_EXAMPLES),
                   "--seed", str(SEED), "--workers", "1", "--no-shrink", "--request-timeout", "30",
                   "--report", "junit", "--report-dir", str(tmp_path / "report"),
                   "-H", f"Authorization: {bearer(ADMIN)['Authorization']}"]
        # Its cache and hypothesis database go in the test's own directory, not the work tree.
        process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                       stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
                                                       env={**os.environ, "NO_COLOR": "1", "COLUMNS": "160"})
        try:
            output, _ = await asyncio.wait_for(process.communicate(), MAX_SECONDS)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    text = output.decode(errors="replace")
    (tmp_path / "schemathesis.txt").write_text(text)
    assert process.returncode == 0, text
    summary = text[text.rfind("SUMMARY"):]
    selected, total = map(int, re.search(r"Selected: (\d+)/(\d+)", summary).groups())  # type: ignore[union-attr]
    tested = int(re.search(r"Tested: (\d+)", summary).group(1))  # type: ignore[union-attr]
    generated, passed = map(int, re.search(r"(\d+) generated, (\d+) passed", summary).groups())  # type: ignore[union-attr]
    [junit] = (tmp_path / "report").glob("junit-*.xml")
    suites = ElementTree.parse(junit).getroot()
    failures, errors = int(suites.get("failures", "-1")), int(suites.get("errors", "-1"))
    print(f"schemathesis {version('schemathesis')}, checks: all, seed {SEED}, at most {MAX_EXAMPLES} examples per "
          f"operation and phase: {tested} of {total} operations tested, {generated} test cases, {passed} passed, "
          f"{failures} failures, {errors} errors")
    assert selected == tested == total > 0
    assert generated == passed > 0
    assert failures == errors == 0
