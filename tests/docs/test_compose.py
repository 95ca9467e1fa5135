"""docker-compose.yml stays consistent with what the tests run: every Gridwire service runs a
real CLI command with real options, and the broker is the Mosquitto version the tests use."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gridwire.cli import app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
GRIDWIRE_SERVICES = {name: svc for name, svc in COMPOSE["services"].items() if svc.get("image") == "gridwire:local"}


def test_compose_runs_the_processes_of_every_layer():
    commands = {" ".join(svc["command"][:2]) for svc in GRIDWIRE_SERVICES.values()}
    for needed in ("cloud ingest", "cloud api", "concentrator run", "broker config", "registry migrate"):
        assert needed in commands


@pytest.mark.parametrize("name", sorted(GRIDWIRE_SERVICES))
def test_each_service_command_exists_with_its_options(name):
    command = GRIDWIRE_SERVICES[name]["command"]
    words = [w for w in command if not w.startswith("-")]
    # The sub-command path is the leading words that are not option values.
    path = []
    for word in command:
        if word.startswith("-") or "/" in word or word.isdigit() or word == "0.0.0.0":
            break
        path.append(word)
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    for option in (w for w in command if w.startswith("--")):
        assert option in result.output, f"{name}: {' '.join(path)} has no option {option}"
    assert words


def test_compose_broker_is_the_mosquitto_the_tests_run():
    image = COMPOSE["services"]["mosquitto"]["image"]
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    out = subprocess.run([binary, "-h"], capture_output=True, text=True).stdout
    installed = re.search(r"mosquitto version (\d+\.\d+\.\d+)", out)
    assert installed, out[:200]
    assert image == f"eclipse-mosquitto:{installed.group(1)}"


def test_compose_concentrator_config_is_valid(monkeypatch):
    from edge.config import load_config

    monkeypatch.setenv("GRIDWIRE_CONCENTRATOR_PASSWORD", "from-the-environment")
    config = load_config(ROOT / "config" / "compose" / "concentrator.toml")
    assert config.broker.secret() == "from-the-environment"
    hosts = {getattr(m, "host", None) or getattr(getattr(m, "tcp", None), "host", None) for m in config.meters}
    assert hosts <= set(COMPOSE["services"])  # every meter it reads is a service of the compose file
