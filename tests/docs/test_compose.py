"""docker-compose.yml stays consistent with what the tests run: ``docker-compose config``
accepts it, every Gridwire service runs a real CLI command with real options, the broker is the
Mosquitto version the tests use, and every healthcheck passes against a real server of its kind
(and fails without one)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from broker.pki import CertificateAuthority
from cloud.migrations import migrate
from gridwire.cli import app
from gridwire.procs import ManagedProcess, free_port
from tests.fixtures.influx import InfluxServer
from tests.fixtures.mosquitto import API, CLOUD, MosquittoServer
from tests.docs.commands import assert_gridwire_command
from tests.fixtures.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
GRIDWIRE_SERVICES = {name: svc for name, svc in COMPOSE["services"].items() if svc.get("image") == "gridwire:local"}
# The variables compose requires (it refuses to start without them).
SECRETS = {"GRIDWIRE_CLOUD_PASSWORD": "compose-cloud-pw", "GRIDWIRE_API_MQTT_PASSWORD": "compose-api-pw",
           "GRIDWIRE_JWT_SECRET": "compose-jwt-secret-" + "x" * 32,
           "GRIDWIRE_SECRETS_KEY": "compose1:" + "A" * 43,
           "POSTGRES_PASSWORD": "compose-pg-pw", "GRAFANA_ADMIN_PASSWORD": "compose-grafana-pw"}
# Services that run once and exit: the others wait for them to complete.
ONE_SHOTS = {name for name, svc in COMPOSE["services"].items() if svc.get("restart") == "no"}


def _docker_compose(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed: apt-get install docker-compose (scripts/install.sh does)",
                    pytrace=False)
    # `config` parses, validates and resolves the file; it needs no Docker engine.
    return subprocess.run([binary, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"),
                           "config"], env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"), **env},
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def resolved() -> dict:
    """The compose file as docker-compose resolves it (anchors merged, variables substituted)."""
    result = _docker_compose(SECRETS)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_docker_compose_validates_the_file_and_requires_its_secrets(resolved: dict) -> None:
    assert set(resolved["services"]) == set(COMPOSE["services"])
    assert resolved["services"]["api"]["environment"]["GRIDWIRE_JWT_SECRET"] == SECRETS["GRIDWIRE_JWT_SECRET"]
    for name in SECRETS:
        refused = _docker_compose({k: v for k, v in SECRETS.items() if k != name})
        assert refused.returncode != 0 and f"set {name}" in refused.stderr, refused.stderr


def test_every_service_has_a_healthcheck_and_start_up_waits_on_health(resolved: dict) -> None:
    """Long-running services have a healthcheck; one-shots have none and are awaited until
    they complete; everything else is awaited until healthy, not merely started."""
    services = resolved["services"]
    assert {"pki", "broker-config", "migrate", "admin-init"} <= ONE_SHOTS
    # The first administrator is made once the schema is there; nothing waits for it.
    assert services["admin-init"]["command"][:2] == ["admin", "init"]
    assert services["admin-init"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert not any("admin-init" in s.get("depends_on", {}) for s in services.values())
    for name, service in services.items():
        check = service.get("healthcheck", {}).get("test", ["NONE"])
        if name in ONE_SHOTS:
            assert check == ["NONE"], name
        else:
            assert check[0] in ("CMD", "CMD-SHELL") and len(check) > 1, (name, check)
        for dependency, how in service.get("depends_on", {}).items():
            wanted = "service_completed_successfully" if dependency in ONE_SHOTS else "service_healthy"
            assert how["condition"] == wanted, (name, dependency, how)
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    command = services["migrate"]["command"]
    assert float(command[command.index("--wait") + 1]) >= 60  # and retries while it cannot connect


def _check(service: str) -> list[str]:
    return COMPOSE["services"][service]["healthcheck"]["test"]


def _run(check: list[str], *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A healthcheck's command as the container runs it (CMD-SHELL through sh)."""
    kind, *words = check
    argv = ["sh", "-c", words[0]] if kind == "CMD-SHELL" else words
    if argv[0] == "gridwire":
        argv = [sys.executable, "-m", "gridwire.cli", *argv[1:]]
    return subprocess.run(argv, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=60,
                          check=False)


def _on_port(check: list[str], container_port: str, port: int) -> list[str]:
    """``check`` aimed at a test server: the container's port replaced by the server's."""
    return [re.sub(rf"(?<![0-9]){container_port}(?![0-9])", str(port), word) for word in check]


def test_postgres_healthcheck(postgres_server: PostgresServer) -> None:
    assert _run(_on_port(_check("postgres"), "5432", postgres_server.port)).returncode == 0
    assert _run(_on_port(_check("postgres"), "5432", free_port())).returncode != 0


def test_mosquitto_healthcheck_needs_the_cloud_login(mosquitto: MosquittoServer) -> None:
    # The container's shell sees $GRIDWIRE_CLOUD_PASSWORD where compose's file says $$.
    check = [word.replace("$$", "$") for word in _on_port(_check("mosquitto"), "1883", mosquitto.port)]
    assert COMPOSE["services"]["mosquitto"]["environment"]["GRIDWIRE_CLOUD_PASSWORD"].startswith(
        "${GRIDWIRE_CLOUD_PASSWORD")
    done = _run(check, env={"GRIDWIRE_CLOUD_PASSWORD": CLOUD.password})
    assert done.returncode == 0, done.stderr
    refused = _run(check, env={"GRIDWIRE_CLOUD_PASSWORD": "not-the-password"})
    assert refused.returncode != 0 and "not authorised" in refused.stderr
    mosquitto.stop()
    assert _run(check, env={"GRIDWIRE_CLOUD_PASSWORD": CLOUD.password}).returncode != 0


def test_influxdb_healthcheck(influxd: InfluxServer) -> None:
    assert _run(_on_port(_check("influxdb"), "8086", influxd.port)).returncode == 0
    assert _run(_on_port(_check("influxdb"), "8086", free_port())).returncode != 0


@pytest.fixture
def api_process(tmp_path: Path, influxd: InfluxServer,
                mosquitto: MosquittoServer) -> Iterator[tuple[ManagedProcess, Path]]:
    """``gridwire cloud api`` as compose runs it, on a free port, with a SQLite registry, influxd
    and the broker."""
    import asyncio

    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    asyncio.run(migrate(url))
    # The API's HTTPS certificate, where compose's pki service puts it (a CA of the test's own).
    ca = CertificateAuthority.create(tmp_path / "pki")
    served = ca.issue_server(tmp_path / "pki")
    command = COMPOSE["services"]["api"]["command"]
    port = free_port()
    argv = [sys.executable, "-m", "gridwire.cli", *_on_port(command, command[command.index("--port") + 1], port)]
    argv[argv.index("--host") + 1] = "127.0.0.1"
    process = ManagedProcess(argv=argv, log=tmp_path / "api.log", port=port,
                             env={"GRIDWIRE_DATABASE_URL": url, "GRIDWIRE_INFLUX_URL": influxd.url,
                                  "GRIDWIRE_JWT_SECRET": SECRETS["GRIDWIRE_JWT_SECRET"],
                                  "GRIDWIRE_MQTT_HOST": mosquitto.host, "GRIDWIRE_MQTT_PORT": str(mosquitto.port),
                                  "GRIDWIRE_MQTT_USERNAME": API.username, "GRIDWIRE_MQTT_PASSWORD": API.password,
                                  "GRIDWIRE_API_TLS_CERT_FILE": str(served.cert_file),
                                  "GRIDWIRE_API_TLS_KEY_FILE": str(served.key_file)})
    process.start(timeout=60)
    try:
        yield process, ca.cert_file
    finally:
        process.stop()


def test_api_healthcheck_asks_the_port_the_api_listens_on(api_process: tuple[ManagedProcess, Path]) -> None:
    api_process, ca_file = api_process
    command = COMPOSE["services"]["api"]["command"]
    check = _on_port(_check("api"), command[command.index("--port") + 1], api_process.port)
    assert "https://127.0.0.1:8080/healthz" in _check("api")  # HTTPS, verified against the platform's CA
    check[check.index("--ca-file") + 1] = str(ca_file)
    done = _run(check)
    assert done.returncode == 0, (done.stdout, done.stderr, api_process.log.read_text()[-2000:])
    api_process.stop()
    assert _run(check).returncode != 0


@pytest.mark.parametrize("name", sorted(n for n, s in GRIDWIRE_SERVICES.items() if n not in ONE_SHOTS))
def test_gridwire_healthchecks_match_what_the_process_offers(name: str) -> None:
    """A ready-file check reads the file its process is told to write; a TCP check asks the port
    the process listens on (their behaviour: tests/gridwire/test_probe.py)."""
    service = COMPOSE["services"][name]
    check = service["healthcheck"]["test"]
    assert check[:3] == ["CMD", "gridwire", "probe"], check
    if check[3] == "ready":
        assert (service.get("environment") or {}).get("GRIDWIRE_READY_FILE") == check[4], name
    elif check[3] == "tcp":
        assert check[5] == service["command"][service["command"].index("--port") + 1]
    else:
        assert check[3] == "http" and name == "api"


def test_compose_runs_the_processes_of_every_layer():
    commands = {" ".join(svc["command"][:2]) for svc in GRIDWIRE_SERVICES.values()}
    for needed in ("cloud ingest", "cloud api", "concentrator run", "broker config", "registry migrate"):
        assert needed in commands


@pytest.mark.parametrize("name", sorted(GRIDWIRE_SERVICES))
def test_each_service_command_exists_with_its_options(name):
    assert_gridwire_command(GRIDWIRE_SERVICES[name]["command"], where=f"compose service {name}")
    check = GRIDWIRE_SERVICES[name]["healthcheck"].get("test", ["NONE"])
    if check[1:2] == ["gridwire"]:
        assert_gridwire_command(check[2:], where=f"compose service {name}'s healthcheck")


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
    # Mutual TLS (concentrators) and TLS with a password (apps) are published; the plain listener is not.
    assert mosquitto["ports"] == ["8883:8883", "8884:8884"]
    broker_cmd = COMPOSE["services"]["broker-config"]["command"]
    assert broker_cmd[broker_cmd.index("--tls-port") + 1] == "8883"
    assert broker_cmd[broker_cmd.index("--tls-password-port") + 1] == "8884"
    api_env = COMPOSE["services"]["api"]["environment"]
    assert api_env["GRIDWIRE_APP_BROKER_PORT"] == "8884" and api_env["GRIDWIRE_MQTT_USERNAME"] == "gridwire-api"
    # The API serves HTTPS with the certificate the pki service made, and revokes on the broker's CRL.
    assert api_env["GRIDWIRE_API_TLS_CERT_FILE"].startswith("/pki/broker/")
    assert _volume_mounts("api")["/pki/crl"] == _volume_mounts("mosquitto")["/mosquitto/crl"] == "broker-crl"
    # The broker mounts, read-only, the volume the pki service writes the server certificate into.
    pki_dir = broker_cmd[broker_cmd.index("--pki-dir") + 1]
    pki_cmd = COMPOSE["services"]["pki"]["command"]
    server_dir = pki_cmd[pki_cmd.index("--server-dir") + 1]
    assert _volume_mounts("mosquitto")[pki_dir] == _volume_mounts("pki")[server_dir]
    # The CA's key is mounted by the pki service and the API (provisioning) only.
    ca_volume = _volume_mounts("pki")[pki_cmd[pki_cmd.index("--dir") + 1]]
    holders = {name for name in COMPOSE["services"] if ca_volume in _volume_mounts(name).values()}
    assert holders == {"pki", "api"}
    assert {"gridwire-cloud", "gridwire-api"} <= set(pki_cmd[pki_cmd.index("--reserved") + 1:])


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
    monkeypatch.setenv("GRIDWIRE_API_MQTT_PASSWORD", "api-pw")
    broker_cmd = COMPOSE["services"]["broker-config"]["command"]
    owner = broker_cmd.index("--owner")
    broker_cmd = broker_cmd[:owner] + broker_cmd[owner + 2:]  # chown needs root; the container is root
    result = CliRunner().invoke(app, _substitute(broker_cmd, broker_mapping))
    assert result.exit_code == 0, result.output
    conf = (tmp_path / "mosquitto/config/mosquitto.conf").read_text()
    tls_block = conf.split("listener 8883")[1].split("listener 8884")[0]
    for line in ("require_certificate true", "use_identity_as_username true",
                 f"certfile {tmp_path / 'pki/broker/server.pem'}", f"crlfile {tmp_path / 'mosquitto/crl/crl.pem'}"):
        assert line in tls_block
    assert "plugin /usr/lib/mosquitto_dynamic_security.so" in conf  # where the eclipse-mosquitto image has it
    assert (tmp_path / "pki/crl/crl.pem").exists()  # the empty CRL the broker starts with
    accounts = {c["username"]: c for c in json.loads((tmp_path / "mosquitto/data/dynamic-security.json").read_text())
                ["clients"]}
    assert accounts["concentrator-1"]["roles"] == [{"rolename": "concentrator:concentrator-1"}]
    assert "password" not in accounts["concentrator-1"]  # its certificate logs it in
    assert accounts["gridwire-api"]["roles"] == [{"rolename": "api"}]

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


def test_prometheus_in_compose_scrapes_every_gridwire_process():
    """Every service running a Gridwire process has metrics on 9100 and a scrape job; promtool
    accepts the Prometheus config; Grafana is provisioned with it and the dashboard."""
    processes = {name for name, svc in GRIDWIRE_SERVICES.items()
                 if svc["command"][0] == "cloud" or svc["command"][:2] == ["concentrator", "run"]}
    config = yaml.safe_load((ROOT / "config" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert processes <= set(jobs), processes - set(jobs)
    for name in processes:
        assert jobs[name]["dns_sd_configs"][0] == {"names": [name], "type": "A", "port": 9100}
        env = {**COMPOSE["x-gridwire"]["environment"], **(GRIDWIRE_SERVICES[name].get("environment") or {})}
        if name != "concentrator":
            assert env.get("GRIDWIRE_METRICS_PORT") == "9100" and env.get("GRIDWIRE_METRICS_HOST") == "0.0.0.0", name
    from edge.config import load_config

    metrics = load_config(ROOT / "config" / "compose" / "concentrator.toml").metrics
    assert (metrics.host, metrics.port) == ("0.0.0.0", 9100)
    assert config["remote_write"][0]["url"] == "http://influxdb:8086/api/v1/prom/write?db=prometheus"
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package"
    done = subprocess.run([promtool, "check", "config", "--syntax-only",
                           str(ROOT / "config" / "prometheus" / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    mounts = _volume_mounts("grafana")
    assert mounts["/etc/grafana/provisioning"] == "./config/grafana/provisioning"
    assert mounts["/var/lib/grafana/dashboards"] == "./config/grafana/dashboards"
    init = _volume_mounts("influxdb")["/docker-entrypoint-initdb.d/prometheus.iql"]
    assert init == "./config/influxdb/prometheus.iql"
