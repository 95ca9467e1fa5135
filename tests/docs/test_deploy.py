"""docs/DEPLOY.md, run as an operator would (tests/docs/runbook.py): from an empty host to a
concentrator sending readings over mutual TLS, with no demo. The host's own servers are the
test's: a throwaway PostgreSQL database and influxd; everything else (the CA, the broker and its
accounts, the registry and the first administrator, the HTTPS API, ingest, the claim, the
appliance's key and CSR, its meter and its run) is the runbook's commands as written."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from tests.docs.runbook import Runbook, assigned, blocks
from tests.fixtures.influx import InfluxServer
from tests.fixtures.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = (ROOT / "docs" / "DEPLOY.md").read_text()
BIN = str(Path(sys.executable).parent)


def settings(tmp_path: Path, database_url: str, influx_url: str) -> dict[str, str]:
    """The test's values for the settings block: its directories, free ports, its servers."""
    return {
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "GRIDWIRE_HOME": str(tmp_path / "etc"), "GRIDWIRE_STATE": str(tmp_path / "var"),
        "PLATFORM_HOST": "localhost", "API_PORT": str(free_port()), "MQTT_PORT": str(free_port()),
        "MQTT_TLS_PORT": str(free_port()), "MQTT_APP_PORT": str(free_port()),
        "GRIDWIRE_DATABASE_URL": database_url, "GRIDWIRE_INFLUX_URL": influx_url,
        "APPLIANCE_HOME": str(tmp_path / "appliance" / "etc"), "APPLIANCE_STATE": str(tmp_path / "appliance" / "var"),
        "METER_PORT": str(free_port()),
    }


def test_the_host_block_installs_what_the_runbook_then_runs() -> None:
    """What the test cannot do on a shared machine stands for the servers and tools it uses."""
    host = [b for b in blocks(DEPLOY) if b.kind == "host"]
    assert len(host) == 1
    installed = next(c for c in host[0].commands() if "apt-get install" in c).split()
    assert {"mosquitto", "postgresql", "influxdb", "python3-venv", "curl"} <= set(installed)
    text = host[0].text
    assert "createdb --owner gridwire gridwire" in text and "[cloud,edge]" in text
    # The virtualenv the settings put first on PATH, and the systemd units expect.
    assert "/opt/gridwire/venv" in text


def test_the_runbook_takes_a_concentrator_from_an_empty_host_to_readings_over_mutual_tls(
        tmp_path: Path, postgres_url: str, influxd: InfluxServer) -> None:
    influxd.query("CREATE DATABASE gridwire")
    values = settings(tmp_path, postgres_url, influxd.url)
    found = blocks(DEPLOY)
    settings_blocks = [b for b in found if b.kind == "settings"]
    assert len(settings_blocks) == 1 and sorted(assigned(settings_blocks[0])) == sorted(values)
    for directory in ("GRIDWIRE_HOME", "GRIDWIRE_STATE"):  # what the host block's `install -d` makes
        Path(values[directory]).mkdir(parents=True, mode=0o700)
    work = tmp_path / "operator"
    work.mkdir()
    # A wide terminal: the fleet table's columns are not cut.
    book = Runbook(directory=work, env={"HOME": str(tmp_path), "LANG": "C.UTF-8", "COLUMNS": "200", **values})
    outputs: list[str] = []
    try:
        for block in found:
            if block.kind == "run":
                outputs.append(book.run(block, timeout=300))
            elif block.kind == "background":
                book.start(block)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- background processes ---\n{book.logs()}") from None
    finally:
        book.stop()

    # The last block: readings stored and served, and the concentrator online in the fleet.
    readings = json.loads((work / "readings.json").read_text())["meterReadings"]
    assert len(readings) == 20, readings
    assert "20 readings of meter 0b6f2c8e-1d3a-4c5b-9e7f-2a1b3c4d5e72" in outputs[-1], outputs[-1]
    assert re.search(r"cabinet-1\s*│\s*ONLINE", outputs[-1]), outputs[-1]
    # The appliance made its key itself; the API never sent one.
    appliance = Path(values["APPLIANCE_HOME"])
    assert (appliance / "tls" / "concentrator.key").stat().st_mode & 0o777 == 0o600
    assert "PRIVATE KEY" not in "".join(outputs)
    # Nothing it wrote leaves the operator's secrets readable by others.
    assert (Path(values["GRIDWIRE_HOME"]) / "cloud.env").stat().st_mode & 0o777 == 0o600
