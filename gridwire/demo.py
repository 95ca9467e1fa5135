"""The one-box platform: Mosquitto, influxd, ingest, the web API and a concentrator with
simulated P1 meters, all on this machine with embedded defaults (SQLite, local ports).

Everything the demo writes lives under one directory (``var/demo`` by default): generated
broker config, influxd data, the concentrator's outbox and config, adapter configs, and the
PKI (``pki/``: a CA, the broker's certificate, a client certificate per concentrator; created
once and kept). The concentrator reaches the broker over mutual TLS only; the cloud processes
use the password listener, which the demo binds to loopback (docs/ARCHITECTURE.md says why).
Firmware over the air works too: a demo signing key (``firmware-keys/``, kept), trusted by the
platform and the concentrator (:mod:`gridwire.demo_firmware`), and the chunk server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from broker.errors import Conflict
from broker.mosquitto_conf import Account
from broker.crl import ensure_crl
from broker.pki import ensure_pki
from broker.sealing import KeyRing, new_key
from gridwire.demo_firmware import DLMS_MODEL, DemoSigningKey, ensure_signing_key, recipe
from gridwire.services import LocalInfluxd, LocalMosquitto

log = logging.getLogger(__name__)

CONCENTRATOR_ID = "demo-concentrator-1"
ORG = "demo-utility"
APP_USERNAME = f"app.{ORG}.demo"


@dataclass(frozen=True, slots=True)
class DemoOptions:
    directory: Path
    meters: int
    api_port: int
    mqtt_port: int
    influx_port: int
    interval: float
    duration: float | None
    dlms_meters: int = 2
    modbus_meters: int = 1
    lights: int = 20
    # The mutual-TLS listener the concentrators use (the plain one stays on loopback for the cloud).
    mqtt_tls_port: int = 18883
    # Prometheus metrics: the concentrator on this port, each cloud process on the next ones
    # (in METRICS_ORDER); None: no metrics.
    metrics_port: int | None = None


# Which port after DemoOptions.metrics_port each process's metrics take (the concentrator's is +0).
METRICS_ORDER = ("concentrator", "ingest", "core", "domain", "monitor", "scheduler", "timesync", "campaigns",
                 "firmware-server", "api")


class PortInUse(Conflict):
    """A port the demo would listen on is taken; the message names it and the option that moves it."""


def demo_ports(options: DemoOptions) -> dict[int, str]:
    """Every fixed port the demo listens on, with what listens there and the option that sets it."""
    ports = {options.api_port: "the web API (--api-port)", options.mqtt_port: "Mosquitto (--mqtt-port)",
             options.mqtt_tls_port: "Mosquitto's TLS listener (--mqtt-tls-port)",
             options.influx_port: "influxd (--influx-port)"}
    for name, port in metrics_ports(options).items():
        ports.setdefault(port, f"{name}'s metrics (--metrics-port)")
    return ports


def check_ports_free(options: DemoOptions) -> None:
    """Raise :class:`PortInUse` naming the first port something already listens on."""
    for port, what in demo_ports(options).items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                raise PortInUse(f"port {port} is already in use ({exc.strerror}): it is for {what}; "
                                f"stop what listens there or choose another port") from None


def metrics_ports(options: DemoOptions) -> dict[str, int]:
    """Each demo process's metrics port (empty without ``metrics_port``)."""
    if options.metrics_port is None:
        return {}
    return {name: options.metrics_port + n for n, name in enumerate(METRICS_ORDER)}


def meter_id(n: int) -> str:
    """Stable, valid UUIDs for the demo's meters (the OMDP examples' ids are not valid UUIDs)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"gridwire-demo-meter-{n}"))


def _write_adapter_config(path: Path, n: int) -> None:
    path.write_text(yaml.safe_dump({
        "meterIndividualId": meter_id(n),
        "physicalMeterClass": "ELECTRICITY",
        "protocol": "p1",
        "subMeters": [{"channel": 1, "meterIndividualId": meter_id(1000 + n), "physicalMeterClass": "GAS"}],
    }))


def _write_concentrator_config(path: Path, *, mqtt_port: int, tls: dict[str, Path], ports: list[str],
                               adapters: list[Path], dlms_ports: list[int], modbus_ports: list[int],
                               trusted_keys: Path, metrics_port: int | None) -> None:
    # The demo forwards every P1 telegram (in 2-second batches) so its charts move at once; the
    # default, 15-minute aggregates, would show the first P1 reading after a quarter of an hour.
    meters = "\n".join(
        f'[[meters]]\nprotocol = "p1"\nport = "{port}"\nadapter_config = "{adapter.name}"\nforward = "every"\n'
        'batch_s = 2\n'
        for port, adapter in zip(ports, adapters, strict=True)
    )
    # The DLMS simulator's well-known demo password (edge/dlms/cli.py); a real meter's is secret.
    meters += "\n".join(
        f'\n[[meters]]\nprotocol = "dlms"\nmeter_id = "{meter_id(2000 + n)}"\nhost = "127.0.0.1"\n'
        f'port = {port}\nsecurity = "lls"\npassword = "12345678"\nprofile = "dsmr-4.2.2"\nmodel = "{DLMS_MODEL}"\n'
        'interval_s = 15\n'
        for n, port in enumerate(dlms_ports)
    )
    meters += "\n".join(
        f'\n[[meters]]\nprotocol = "modbus"\nmeterIndividualId = "{meter_id(3000 + n)}"\n'
        f'registerMap = "solar-inverter"\nunitId = 1\ninterval = 10\ntcp = {{ host = "127.0.0.1", port = {port} }}\n'
        for n, port in enumerate(modbus_ports)
    )
    from edge.config_secrets import seal_file_text

    # The DLMS password is sealed in the file with the concentrator's own sealing key (kept beside it).
    ring = KeyRing.parse(_sealing_key(path.parent / "sealing.key"))
    text, _ = seal_file_text(
        f'concentrator_id = "{CONCENTRATOR_ID}"\noutbox = "outbox.sqlite"\nstatus_interval = 30\n'
        'secrets_key_file = "sealing.key"\n\n'
        # No username or password: the broker takes the identity from the certificate's CN.
        f'[broker]\nhost = "127.0.0.1"\nport = {mqtt_port}\nca_file = "{tls["ca_file"]}"\n'
        f'cert_file = "{tls["cert_file"]}"\nkey_file = "{tls["key_file"]}"\n\n'
        # The demo's firmware signing key: update_firmware accepts what it signed.
        f'[firmware]\ntrusted_keys = ["{trusted_keys}"]\n\n'
        + (f'[metrics]\nport = {metrics_port}\n\n' if metrics_port is not None else "")
        + meters, ring)
    path.write_text(text)


def _sealing_key(path: Path) -> str:
    """A sealing key ring kept in ``path`` (mode 0600): made on the first run, the same after."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(new_key("demo") + "\n")
    return path.read_text().strip()


async def run_demo(options: DemoOptions, stop: asyncio.Event) -> None:
    """Start everything, print where to look, run until ``stop`` (or ``duration``)."""
    from cloud.auth import ADMIN_SCOPE, issue_token
    from cloud.platform import PlatformSettings, migrate_registry, process_runner
    from cloud.settings import DatabaseSettings, FirmwareOptions, InfluxSettings, MetricsSettings, MqttSettings
    from devices.modbus import load_map
    from edge.devices.service import run_lights
    from edge.concentrator import Concentrator
    from edge.config import load_config
    from edge.dlms.cli import build_simulator
    from edge.modbus.simulator import ModbusSimulator
    from edge.p1.simulator import MeterModel, P1Simulator
    from gridwire.procs import free_port

    check_ports_free(options)
    root = options.directory.resolve()
    edge_dir = root / "edge"
    edge_dir.mkdir(parents=True, exist_ok=True)
    cloud_password = secrets.token_urlsafe(16)
    api_password = secrets.token_urlsafe(16)
    fleet_password = secrets.token_urlsafe(16)
    app_password = secrets.token_urlsafe(16)
    # The concentrator logs in with its certificate only: its account has no password.
    accounts = [Account(username="gridwire-cloud", password=cloud_password, role="cloud"),
                Account(username="gridwire-api", password=api_password, role="api"),
                Account(username="fleet", password=fleet_password, role="fleet"),
                # An app of the demo organisation: its meters' readings on app/<org>/metering/reading/+.
                Account(username=APP_USERNAME, password=app_password, role="app", subject=ORG),
                Account(username=CONCENTRATOR_ID, password=None, role="concentrator")]
    pki = root / "pki"
    # Created on the first run and kept: no certificate may be named like a password account.
    ca = await asyncio.to_thread(ensure_pki, pki, clients=[CONCENTRATOR_ID],
                                 reserved=[a.username for a in accounts if a.password])
    crl_file = await asyncio.to_thread(ensure_crl, ca, pki / "crl.pem")
    signing_key = await asyncio.to_thread(ensure_signing_key, root / "firmware-keys")
    tls = {"ca_file": ca.cert_file, "cert_file": pki / "clients" / f"{CONCENTRATOR_ID}.pem",
           "key_file": pki / "clients" / f"{CONCENTRATOR_ID}.key"}
    mosquitto = LocalMosquitto(directory=root / "mosquitto", port=options.mqtt_port, accounts=accounts,
                               tls_port=options.mqtt_tls_port, tls_ca_file=ca.cert_file,
                               tls_cert_file=pki / "server.pem", tls_key_file=pki / "server.key",
                               tls_crl_file=crl_file)
    influxd = LocalInfluxd(directory=root / "influxdb", port=options.influx_port)
    await asyncio.to_thread(mosquitto.start)
    await asyncio.to_thread(influxd.start)

    simulators = [P1Simulator(model=MeterModel(start=datetime.now(UTC).replace(microsecond=0),
                                               equipment_id=f"E{n:016d}"), interval=options.interval)
                  for n in range(options.meters)]
    ports = [sim.open() for sim in simulators]
    dlms = [build_simulator(host="127.0.0.1", port=free_port(), security="lls", serial=f"GWDEMO{n:06d}")
            for n in range(options.dlms_meters)]
    modbus = [ModbusSimulator(register_map=load_map("solar-inverter"), port=free_port())
              for _ in range(options.modbus_meters)]
    for device in (*dlms, *modbus):
        await device.start()
    adapters = []
    for n in range(options.meters):
        adapter = edge_dir / f"meter-{n}.yaml"
        _write_adapter_config(adapter, n)
        adapters.append(adapter)
    config_file = edge_dir / "concentrator.toml"
    _write_concentrator_config(config_file, mqtt_port=options.mqtt_tls_port, tls=tls,
                               ports=ports, adapters=adapters, dlms_ports=[d.port for d in dlms],
                               modbus_ports=[m.port for m in modbus], trusted_keys=signing_key.trusted_dir,
                               metrics_port=metrics_ports(options).get("concentrator"))
    concentrator = Concentrator.from_config(load_config(config_file))

    jwt_secret = secrets.token_urlsafe(32)
    database = f"sqlite+aiosqlite:///{root / 'gridwire.sqlite'}"
    # One settings object for every cloud process; the API serves on the demo's port.
    settings = PlatformSettings(
        mqtt=MqttSettings(host="127.0.0.1", port=options.mqtt_port, password=cloud_password),
        database=DatabaseSettings(url=database), influx=InfluxSettings(url=influxd.url, database="gridwire"),
        firmware=FirmwareOptions(store_dir=root / "firmware", trusted_keys=str(signing_key.trusted_dir)),
        jwt_secret=jwt_secret, api_port=options.api_port, secrets_key=_sealing_key(root / "secrets.key"),
        # HTTPS with the demo CA's certificate for localhost (the broker's); the CA provisions
        # and revokes concentrators' certificates, the broker re-reading its CRL on SIGHUP.
        api_tls_cert_file=pki / "server.pem", api_tls_key_file=pki / "server.key", pki_dir=pki,
        provision_broker_host="localhost", provision_broker_port=options.mqtt_tls_port, crl_file=crl_file,
        broker_pid_file=mosquitto.pid_file, app_broker_host="localhost",
        broker_reserved_names=",".join(a.username for a in accounts if a.password))
    await migrate_registry(settings)
    await _register_fleet(database, options, meters=[(meter_id(n), "DSMR_P1", None) for n in range(options.meters)]
                          + [(meter_id(1000 + n), "DSMR_P1", None) for n in range(options.meters)]
                          + [(meter_id(2000 + n), "DLMS", DLMS_MODEL) for n in range(options.dlms_meters)]
                          + [(meter_id(3000 + n), "MODBUS", None) for n in range(options.modbus_meters)])
    token = issue_token(secret=jwt_secret, org=ORG, scopes=[ADMIN_SCOPE], ttl=timedelta(days=1))
    try:
        async with asyncio.TaskGroup() as tg:

            async def start(*names: str) -> None:
                readies = []
                for name in names:
                    # A stable client id per process: a restarted demo resumes its durable sessions
                    # instead of leaving the old ones a share of each shared subscription.
                    # The API logs in as its own account: it administers the broker's accounts.
                    login = ("gridwire-api", api_password) if name == "api" else ("gridwire-cloud", cloud_password)
                    mqtt = MqttSettings(host="127.0.0.1", port=options.mqtt_port, username=login[0],
                                        password=login[1], client_id=f"demo-{name}")
                    metrics = MetricsSettings(port=metrics_ports(options).get(name))
                    readies.append(asyncio.Event())
                    tg.create_task(process_runner(name, settings.model_copy(update={"mqtt": mqtt, "metrics": metrics}),
                                                  ready=readies[-1])(stop), name=name)
                await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready in readies)), 60)

            # Ingest subscribes first, so the concentrator's first messages have a subscriber
            # (unconfirmed ones would be sent again anyway, after confirm_timeout).
            await start("ingest", "fanout")
            tg.create_task(concentrator.run(stop), name="concentrator")
            await start("core", "domain", "monitor", "scheduler", "timesync", "campaigns", "firmware-server")
            if options.lights:
                tg.create_task(run_lights(stop, count=options.lights, host="127.0.0.1", port=options.mqtt_port,
                                          username="fleet", password=fleet_password, prefix="light-"),
                               name="street-lights")
            for sim in simulators:
                await sim.start()
            await start("api")
            _announce(options, cloud_password, token, root, tls, signing_key, ca.cert_file, app_password)
            if options.duration is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), options.duration)
                stop.set()
            await stop.wait()
    finally:
        for sim in simulators:
            await sim.stop()
        for device in (*dlms, *modbus):
            await device.stop()
        await asyncio.to_thread(mosquitto.stop)
        await asyncio.to_thread(influxd.stop)


def _announce(options: DemoOptions, cloud_password: str, token: str, root: Path, tls: dict[str, Path],
              signing_key: DemoSigningKey, ca_file: Path, app_password: str) -> None:
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    end = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    lines = [
        "",
        "Gridwire is running (Ctrl-C stops it).",
        f"  web API     https://127.0.0.1:{options.api_port}/docs   (OpenAPI; HTTPS with the demo's CA {ca_file})",
        f"  bearer      {token}",
        f"  console     https://127.0.0.1:{options.api_port}/console   (operator console: log in with the bearer "
        "token above)",
        *(f"  metrics     http://127.0.0.1:{port}/metrics   ({name})" for name, port in metrics_ports(options).items()),
        "  query       curl -s --cacert %s -X POST https://127.0.0.1:%d/v1/meterReadings -H 'Authorization: Bearer %s' "
        "-H 'Content-Type: application/json' -d '{\"readingTimeStart\": \"%s\", \"readingTimeEnd\": \"%s\", "
        "\"pageSize\": 50}'" % (ca_file, options.api_port, token, start, end),
        f"  broker      mosquitto_sub -h 127.0.0.1 -p {options.mqtt_port} -u gridwire-cloud -P '{cloud_password}' "
        "-V mqttv5 -v -t 'concentrator/#'   (cloud view; password listener, loopback only)",
        f"  over TLS    mosquitto_sub -h localhost -p {options.mqtt_tls_port} --cafile {tls['ca_file']} "
        f"--cert {tls['cert_file']} --key {tls['key_file']} -V mqttv5 -v -t 'concentrator/{CONCENTRATOR_ID}/#'",
        "              (mutual TLS as the concentrator: its certificate's CN is its username, so the ACL "
        "lets it see its own subtree only)",
        f"  app         mosquitto_sub -h 127.0.0.1 -p {options.mqtt_port} -u {APP_USERNAME} -P '{app_password}' "
        f"-V mqttv5 -q 1 -v -t 'app/{ORG}/metering/reading/+'   (an app of {ORG}: its meters' readings once "
        "stored; docs/APPS.md)",
        f"  meters      on concentrator {CONCENTRATOR_ID}: {options.meters} DSMR 5 (P1), {options.dlms_meters} "
        f"DLMS/COSEM (LLS, their last 24 h backfilled from the load profile), {options.modbus_meters} Modbus "
        "inverter(s)",
        f"  lights      {options.lights} MQTT-native street lights light-1..light-{options.lights}; switch one:",
        "              curl -s --cacert %s -X POST https://127.0.0.1:%d/v1/publiclighting/devices/light-1/light "
        "-H 'Authorization: Bearer %s' -H 'Content-Type: application/json' -d '{\"on\": true, \"dimLevel\": 70}'"
        % (ca_file, options.api_port, token),
        "              then GET the resultUrl it answers with (same header)",
        *recipe(api_port=options.api_port, token=token, key=signing_key, org=ORG, ca_file=ca_file),
        f"  data        {root}",
        "",
    ]
    print("\n".join(lines), flush=True)  # noqa: T201 - the demo's whole point is to tell the user this


async def _register_fleet(database: str, options: DemoOptions, *,
                          meters: list[tuple[str, str, str | None]]) -> None:
    """The demo organisation (an admin), its concentrator, meters and street lights in the registry.

    A meter's ``model`` is the one its concentrator reports, so a firmware campaign by model finds
    it. A device an earlier run registered is kept; only its model is brought up to date."""
    from cloud.registry import Registry
    from cloud.registry.enums import DeviceType, PlatformRole, Protocol
    from cloud.registry.errors import DeviceExists, OrganisationExists
    from cloud.registry.schemas import DeviceCreate, DeviceUpdate, OrganisationCreate

    async with Registry(url=database) as registry:
        try:
            await registry.add_organisation(OrganisationCreate(identification=ORG, name="Demo utility",
                                                               role=PlatformRole.ADMIN))
        except OrganisationExists:
            pass  # registered by an earlier run of the demo in the same directory
        devices = [DeviceCreate(identification=CONCENTRATOR_ID, device_type=DeviceType.CONCENTRATOR,
                                protocol=Protocol.MQTT)]
        devices += [DeviceCreate(identification=m, device_type=DeviceType.SMART_METER, protocol=Protocol(protocol),
                                 concentrator_id=CONCENTRATOR_ID, model=model) for m, protocol, model in meters]
        devices += [DeviceCreate(identification=f"light-{n}", device_type=DeviceType.STREET_LIGHT,
                                 protocol=Protocol.MQTT) for n in range(1, options.lights + 1)]
        for device in devices:
            try:
                await registry.create_device(device, owner=ORG)
            except DeviceExists:
                if device.model is not None and (await registry.get_device(device.identification)).model \
                        != device.model:
                    await registry.update_device(device.identification, DeviceUpdate(model=device.model))
