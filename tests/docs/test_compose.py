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


def test_compose_concentrator_config_is_valid():
    from edge.config import load_config

    config = load_config(ROOT / "config" / "compose" / "concentrator.toml")
    assert config.broker.cert_file is not None  # mutual TLS, no password
    hosts = {getattr(m, "host", None) or getattr(getattr(m, "tcp", None), "host", None) for m in config.meters}
    assert hosts <= set(COMPOSE["services"])  # every meter it reads is a service of the compose file


def _volume_mounts(service: str) -> dict[str, str]:
    """Container path -> named volume (or host path) of a service's mounts."""
    mounts = {}
    for entry in COMPOSE["services"][service].get("volumes", []):
        source, target = entry.split(":")[:2]
        mounts[target] = source
    return mounts


def _substitute(words: list[str], mapping: dict[str, Path]) -> list[str]:
    out = []
    for word in words:
        for prefix, local in mapping.items():
            if word == prefix.rstrip("/") or word.startswith(prefix.rstrip("/") + "/"):
                word = str(local) + word[len(prefix.rstrip("/")):]
        out.append(word.replace("${GRIDWIRE_BROKER_PUBLIC_HOST:-localhost}", "localhost"))
    return out


def test_compose_concentrators_reach_the_broker_over_mutual_tls_only():
    mosquitto = COMPOSE["services"]["mosquitto"]
    assert mosquitto["ports"] == ["8883:8883"]  # the password listener is not published
    broker_cmd = COMPOSE["services"]["broker-config"]["command"]
    assert broker_cmd[broker_cmd.index("--tls-port") + 1] == "8883"
    # The broker mounts, read-only, the volume the pki service writes the server certificate into.
    pki_dir = broker_cmd[broker_cmd.index("--pki-dir") + 1]
    pki_cmd = COMPOSE["services"]["pki"]["command"]
    server_dir = pki_cmd[pki_cmd.index("--server-dir") + 1]
    assert _volume_mounts("mosquitto")[pki_dir] == _volume_mounts("pki")[server_dir]
    # The CA's key is mounted by the pki service and the API (provisioning) only.
    ca_volume = _volume_mounts("pki")[pki_cmd[pki_cmd.index("--dir") + 1]]
    holders = {name for name in COMPOSE["services"] if ca_volume in _volume_mounts(name).values()}
    assert holders == {"pki", "api"}
    assert "gridwire-cloud" in pki_cmd[pki_cmd.index("--reserved") + 1:]


def test_compose_pki_and_broker_config_commands_produce_a_working_tls_setup(tmp_path, monkeypatch):
    """Run the compose file's own pki and broker-config commands (paths mapped to a temporary
    directory) and check the concentrator's config points at what they wrote."""
    from broker.pki import common_name
    from cryptography import x509
    from edge.config import load_config

    pki_cmd = COMPOSE["services"]["pki"]["command"]
    owner = pki_cmd.index("--owner")
    pki_cmd = pki_cmd[:owner] + pki_cmd[owner + 2:]  # chown needs root; the container is root
    mapping = {"/pki": tmp_path / "pki", "/mosquitto": tmp_path / "mosquitto", "/config": ROOT / "config/compose"}
    result = CliRunner().invoke(app, _substitute(pki_cmd, mapping))
    assert result.exit_code == 0, result.output
    # Idempotent: a second start keeps the same certificates.
    before = (tmp_path / "pki/broker/server.pem").read_bytes()
    assert CliRunner().invoke(app, _substitute(pki_cmd, mapping)).exit_code == 0
    assert (tmp_path / "pki/broker/server.pem").read_bytes() == before

    # The broker's TLS directory is the volume the server certificate went into.
    broker_mapping = {"/mosquitto/tls": tmp_path / "pki/broker", **mapping}
    monkeypatch.setenv("GRIDWIRE_CLOUD_PASSWORD", "cloud-pw")
    result = CliRunner().invoke(app, _substitute(COMPOSE["services"]["broker-config"]["command"], broker_mapping))
    assert result.exit_code == 0, result.output
    conf = (tmp_path / "mosquitto/config/mosquitto.conf").read_text()
    tls_block = conf.split("listener 8883")[1].split("\n\n")[0]
    for line in ("require_certificate true", "use_identity_as_username true",
                 f"certfile {tmp_path / 'pki/broker/server.pem'}"):
        assert line in tls_block

    config = load_config(ROOT / "config" / "compose" / "concentrator.toml")
    assert config.broker.port == 8883 and config.broker.secret() is None and config.broker.username is None
    tls_volume = _volume_mounts("concentrator")["/tls"]
    pki_mounts = {volume: target for target, volume in _volume_mounts("pki").items()}
    local = tmp_path / pki_mounts[tls_volume].removeprefix("/")
    cert_file = local / config.broker.cert_file.relative_to("/tls")
    assert common_name(cert_file) == config.concentrator_id
    assert (local / config.broker.key_file.relative_to("/tls")).exists()
    ca = x509.load_pem_x509_certificate((local / config.broker.ca_file.relative_to("/tls")).read_bytes())
    x509.load_pem_x509_certificate(cert_file.read_bytes()).verify_directly_issued_by(ca)
