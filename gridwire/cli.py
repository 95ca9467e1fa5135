"""The one ``gridwire`` command: every Gridwire process and tool is a subcommand of it.

Imports happen inside the commands, so ``gridwire --help`` is quick and an edge-only install
never imports cloud packages.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Gridwire: an open smart-grid platform (meters at the edge, MQTT in the middle, cloud API).")
sim_app = typer.Typer(no_args_is_help=True, help="Simulated meters and devices, for tests and the demo.")
cloud_app = typer.Typer(no_args_is_help=True, help="Cloud services: ingest, API and the command layers.")
broker_app = typer.Typer(no_args_is_help=True, help="The broker contract: Mosquitto config, ACLs, passwords.")
concentrator_app = typer.Typer(no_args_is_help=True, help="The concentrator appliance (edge).")
app.add_typer(sim_app, name="sim")
app.add_typer(cloud_app, name="cloud")
app.add_typer(broker_app, name="broker")
app.add_typer(concentrator_app, name="concentrator")


def _registry_app() -> typer.Typer:
    from cloud.registry.cli import app as registry_app

    return registry_app


try:
    app.add_typer(_registry_app(), name="registry", help="The device registry: schema migrations.")
except ImportError:  # an edge-only install (no cloud extra) has no registry to migrate
    pass


def _firmware_app() -> typer.Typer:
    from firmware_ota.cli import app as firmware_app

    return firmware_app


app.add_typer(_firmware_app(), name="firmware", help="Firmware: signing keys, signed manifests, uploads.")

LogLevel = Annotated[str, typer.Option("--log-level", help="Python logging level.")]


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_until_signal(main) -> None:
    """Run ``main(stop)`` until SIGINT or SIGTERM sets ``stop``."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


# --- the one-box platform -----------------------------------------------------------------------


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Where the demo keeps its data and configs.")] = Path(
        "var/demo"),
    meters: Annotated[int, typer.Option(help="Simulated P1 meters on the concentrator.")] = 3,
    dlms_meters: Annotated[int, typer.Option(help="Simulated DLMS/COSEM meters on the concentrator.")] = 2,
    modbus_meters: Annotated[int, typer.Option(help="Simulated Modbus solar inverters on the concentrator.")] = 1,
    lights: Annotated[int, typer.Option(help="Simulated MQTT-native street lights.")] = 20,
    api_port: Annotated[int, typer.Option(help="Port of the web API.")] = 8080,
    mqtt_port: Annotated[int, typer.Option(help="Port of the demo's Mosquitto (password listener, loopback).")] = 18830,
    mqtt_tls_port: Annotated[int, typer.Option(help="Port of its mutual-TLS listener (the concentrator).")] = 18883,
    influx_port: Annotated[int, typer.Option(help="Port of the demo's influxd.")] = 18086,
    interval: Annotated[float, typer.Option(help="Seconds between telegrams of each simulated meter.")] = 1.0,
    duration: Annotated[Optional[float], typer.Option(help="Stop after this many seconds (default: Ctrl-C).")] = None,
    log_level: LogLevel = "WARNING",
) -> None:
    """Run the whole platform on one machine: Mosquitto, influxd, ingest, the API and a
    concentrator with simulated meters, on embedded defaults (SQLite)."""
    from gridwire.demo import DemoOptions, run_demo

    _logging(log_level)
    options = DemoOptions(directory=directory, meters=meters, api_port=api_port, mqtt_port=mqtt_port,
                          influx_port=influx_port, interval=interval, duration=duration,
                          dlms_meters=dlms_meters, modbus_meters=modbus_meters, lights=lights,
                          mqtt_tls_port=mqtt_tls_port)
    run_until_signal(lambda stop: run_demo(options, stop))


# --- edge ---------------------------------------------------------------------------------------


@concentrator_app.command("run")
def concentrator_run(config: Annotated[Path, typer.Argument(help="The concentrator's TOML config file.")],
                     log_level: LogLevel = "INFO") -> None:
    """Run a concentrator: read its meters, keep readings in the durable outbox, forward them."""
    from edge.concentrator import Concentrator
    from edge.config import ConfigError, load_config

    _logging(log_level)
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    run_until_signal(lambda stop: Concentrator(config=cfg).run(stop))


@concentrator_app.command("check")
def concentrator_check(config: Annotated[Path, typer.Argument(help="The concentrator's TOML config file.")]) -> None:
    """Validate a concentrator config file; errors name the file, the meter and the field."""
    from edge.config import ConfigError, load_config

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"{config}: concentrator {cfg.concentrator_id}, {len(cfg.meters)} meter(s): ok")


@concentrator_app.command("provision")
def concentrator_provision(
    api: Annotated[str, typer.Option(help="The platform API's base URL, e.g. https://gridwire.example.net.")],
    concentrator_id: Annotated[str, typer.Option("--id", help="This concentrator's id (its certificate's CN).")],
    token: Annotated[str, typer.Option(envvar="GRIDWIRE_TOKEN",
                                       help="Bearer token of an organisation that may install it "
                                            "(or GRIDWIRE_TOKEN).")],
    out: Annotated[Path, typer.Option(help="Where to write tls/ and concentrator.toml.")] = Path("/etc/gridwire"),
    data_dir: Annotated[Path, typer.Option(help="Outbox and state directory named in a new config.")] = Path(
        "/var/lib/gridwire"),
) -> None:
    """Get this concentrator's broker certificate from the platform and write it (mode 0600)
    with a concentrator.toml skeleton (kept if one exists). Running it again issues a new
    certificate; the previous one stays valid until it expires."""
    from edge.provision import ProvisionError, request_certificate, write_provisioned

    try:
        provisioned = request_certificate(api=api, token=token, concentrator_id=concentrator_id)
        written = write_provisioned(provisioned, out=out, data_dir=data_dir)
    except ProvisionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    action = "registered and provisioned" if provisioned.registered else "provisioned"
    typer.echo(f"{action} concentrator {provisioned.concentrator_id}: certificate {provisioned.serial}, "
               f"valid until {provisioned.not_after}")
    typer.echo(f"  wrote {written.cert_file}, {written.key_file}, {written.ca_file} (mode 0600)")
    typer.echo(f"  broker {provisioned.broker.host}:{provisioned.broker.port} (mutual TLS)")
    if written.config_written:
        typer.echo(f"  wrote {written.config_file}: add your meters to it")
    else:
        typer.echo(f"  kept {written.config_file}: its [broker] section must name the files above")
    typer.echo("next steps:")
    typer.echo(f"  1. add [[meters]] to {written.config_file} (docs/INSTALL_CONCENTRATOR.md)")
    typer.echo(f"  2. gridwire concentrator check {written.config_file}")
    typer.echo("  3. systemctl enable --now gridwire-concentrator")


@sim_app.command("p1")
def sim_p1(
    interval: Annotated[float, typer.Option(help="Seconds between telegrams.")] = 1.0,
    count: Annotated[Optional[int], typer.Option(help="Stop after this many telegrams.")] = None,
    url: Annotated[Optional[str], typer.Option(help="Write to this pyserial URL instead of a new pty.")] = None,
    start: Annotated[Optional[datetime], typer.Option(help="Meter time of the first telegram (UTC).")] = None,
    corrupt_crc_every: Annotated[Optional[int], typer.Option(help="Corrupt the CRC of every Nth telegram.")] = None,
    truncate_every: Annotated[Optional[int], typer.Option(help="Truncate every Nth telegram.")] = None,
) -> None:
    """A simulated DSMR 5 meter writing P1 telegrams to a pty; prints the pty's path."""
    from edge.p1.cli import sim_p1 as run

    run(interval=interval, count=count, url=url, start=start, corrupt_crc_every=corrupt_crc_every,
        truncate_every=truncate_every)


@sim_app.command("dlms")
def sim_dlms(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (DLMS WRAPPER).")] = 4059,
    security: Annotated[str, typer.Option(help="none, lls or hls-gmac (secrets from GRIDWIRE_DLMS_*).")] = "lls",
    serial: Annotated[str, typer.Option(help="The meter's serial number.")] = "GW0000000001",
    history_days: Annotated[int, typer.Option(help="Days of 15-minute load profile the meter keeps.")] = 10,
    clock_offset_s: Annotated[float, typer.Option(help="Meter clock minus true time, in seconds.")] = 0.0,
    drift_ppm: Annotated[float, typer.Option(help="Meter clock drift in parts per million.")] = 0.0,
    serial_port: Annotated[Optional[str], typer.Option(help="Serve HDLC on this serial device instead of TCP.")] = None,
    baudrate: Annotated[int, typer.Option(help="Baud rate on the serial device.")] = 9600,
) -> None:
    """A simulated DLMS/COSEM electricity meter over TCP (WRAPPER) or serial (HDLC) until Ctrl-C."""
    from edge.dlms.cli import sim_dlms as run

    run(host=host, port=port, security=security, serial=serial, history_days=history_days,
        clock_offset_s=clock_offset_s, drift_ppm=drift_ppm, serial_port=serial_port, baudrate=baudrate)


@sim_app.command("modbus")
def sim_modbus(
    map_name: Annotated[str, typer.Option("--map", help="Register map name (edge/modbus/maps) or YAML path.")] = (
        "solar-inverter"),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Modbus TCP port.")] = 5020,
    unit_id: Annotated[int, typer.Option(help="Modbus unit id.")] = 1,
    serial_port: Annotated[str, typer.Option(help="Speak Modbus RTU on this serial device instead.")] = "",
    log_level: LogLevel = "INFO",
) -> None:
    """A simulated Modbus device from a register map until Ctrl-C."""
    from edge.modbus.cli import sim_modbus as run

    run(map_name=map_name, host=host, port=port, unit_id=unit_id, serial_port=serial_port, log_level=log_level)


@sim_app.command("firmware-image")
def sim_firmware_image(
    version: Annotated[str, typer.Option("--version", help="The version a simulated DLMS meter reports after "
                                                           "activating the image.")],
    out: Annotated[Path, typer.Option("--out", help="The image file to write.")],
    payload_bytes: Annotated[int, typer.Option("--payload-bytes", min=0, max=16 * 1024 * 1024,
                                               help="Filler bytes after the header (image size).")] = 4096,
) -> None:
    """Write a firmware image for the simulated DLMS meters (b"GWFW" header carrying the version);
    sign it with `gridwire firmware sign`."""
    from edge.dlms.sim_firmware import build_sim_image

    try:
        image = build_sim_image(version, bytes(n % 251 for n in range(payload_bytes)))
    except ValueError as exc:
        typer.echo(f"cannot build the image: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    out.write_bytes(image)
    typer.echo(f"wrote {out} ({len(image)} bytes, version {version})")


@sim_app.command("lights")
def sim_lights(
    count: Annotated[int, typer.Option(help="How many street lights (ids light-1 .. light-N).")] = 100,
    host: Annotated[str, typer.Option(help="Broker address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Broker port.")] = 1883,
    username: Annotated[str, typer.Option(help="Broker account with the fleet role.")] = "fleet-lights",
    password: Annotated[str, typer.Option(envvar="GRIDWIRE_FLEET_PASSWORD",
                                          help="Its password (or GRIDWIRE_FLEET_PASSWORD).")] = "",
    sessions: Annotated[int, typer.Option(help="MQTT connections sharing the lights' commands.")] = 1,
    prefix: Annotated[str, typer.Option(help="Device id prefix.")] = "light-",
    client_id: Annotated[str, typer.Option(help="Client id prefix of the sessions (-0, -1, ...).")] = "light-fleet",
    initial_status: Annotated[bool, typer.Option(help="Publish each light's retained status at start.")] = True,
    log_level: LogLevel = "INFO",
) -> None:
    """A fleet of simulated MQTT-native street lights answering set_relay, set_dim_level and
    get_light_status on device/<id>/command, over a few sessions of one fleet account."""
    from edge.devices.service import run_lights

    _logging(log_level)
    run_until_signal(lambda stop: run_lights(stop, count=count, host=host, port=port, username=username,
                                             password=password, sessions=sessions, prefix=prefix,
                                             client_id=client_id, initial_status=initial_status))


# --- cloud --------------------------------------------------------------------------------------


@cloud_app.command("ingest")
def cloud_ingest(log_level: LogLevel = "INFO") -> None:
    """Run one ingest process (settings from GRIDWIRE_* variables: MQTT_HOST, INFLUX_URL, ...).
    Start more of them to share the load: they form one MQTT shared subscription."""
    from cloud.ingest.service import IngestSettings, run_ingest

    _logging(log_level)
    settings = IngestSettings()
    run_until_signal(lambda stop: run_ingest(settings, stop))


@cloud_app.command("api")
def cloud_api(host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
              port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
              log_level: LogLevel = "INFO") -> None:
    """Serve the full platform web API: meter readings, admin and installation, the functional
    domains (public lighting, smart metering, tariff switching) and clock drift (OpenAPI at
    /docs). Migrates the registry at start. Settings from GRIDWIRE_* variables: JWT_SECRET
    (required), REGISTRY_URL, MQTT_HOST, MQTT_PORT, MQTT_USERNAME, MQTT_PASSWORD, INFLUX_URL."""
    import uvicorn

    from cloud.platform import PlatformSettings, create_platform_app

    _logging(log_level)
    uvicorn.run(create_platform_app(PlatformSettings()), host=host, port=port, log_level=log_level.lower(),
                # Longer than clients typically idle between calls: a keep-alive connection closed just
                # as a busy client reuses it surfaces as a failed request.
                timeout_keep_alive=30)


def _platform_process(name: str, log_level: str) -> None:
    from cloud.platform import PlatformSettings, process_runner

    _logging(log_level)
    run_until_signal(process_runner(name, PlatformSettings()))


@cloud_app.command("core")
def cloud_core(log_level: LogLevel = "INFO") -> None:
    """Run one core process: authorise generic commands, route them to devices, follow them to
    an end (retries, time-to-live). Start more to share the load (MQTT shared subscription).
    Settings from GRIDWIRE_* variables: REGISTRY_URL, MQTT_HOST, MQTT_PORT, MQTT_USERNAME,
    MQTT_PASSWORD. Run `gridwire cloud api` (or `gridwire registry migrate`) first: it migrates."""
    _platform_process("core", log_level)


@cloud_app.command("domain")
def cloud_domain(log_level: LogLevel = "INFO") -> None:
    """Run one domain process: the functional-domain consumer (requests to generic commands) and
    the results consumer (outcomes to apps and webhooks). Start more to share the load.
    Settings as for `gridwire cloud core`."""
    _platform_process("domain", log_level)


@cloud_app.command("scheduler")
def cloud_scheduler(log_level: LogLevel = "INFO") -> None:
    """Run the scheduler: publish due schedules (meter reads, astronomical light switching)
    exactly once however many copies run. Settings as for `gridwire cloud core`."""
    _platform_process("scheduler", log_level)


@cloud_app.command("monitor")
def cloud_monitor(log_level: LogLevel = "INFO") -> None:
    """Run device status monitoring: concentrator liveness, silent devices, events and
    notifications. Settings as for `gridwire cloud core`."""
    _platform_process("monitor", log_level)


@cloud_app.command("campaigns")
def cloud_campaigns(log_level: LogLevel = "INFO") -> None:
    """Run a firmware campaign runner: issue update_firmware commands wave by wave, follow them,
    stop on thresholds. Start more for resilience (each campaign is leased to one at a time).
    Settings as for `gridwire cloud core`."""
    _platform_process("campaigns", log_level)


@cloud_app.command("timesync")
def cloud_timesync(log_level: LogLevel = "INFO") -> None:
    """Run the time service: answer concentrators' time requests and record meters' clock
    drift. Settings as for `gridwire cloud core`."""
    _platform_process("timesync", log_level)


@cloud_app.command("firmware-server")
def cloud_firmware_server(log_level: LogLevel = "INFO") -> None:
    """Serve firmware images to concentrators in chunks over MQTT (concentrator/<cid>/firmware/...).
    Start more to share the load (MQTT shared subscription). Settings from GRIDWIRE_* variables:
    FIRMWARE_STORE_DIR (the image store directory), MQTT_HOST, MQTT_PORT, MQTT_USERNAME, MQTT_PASSWORD."""
    from firmware_ota.server_process import FirmwareServerSettings, run_firmware_server

    _logging(log_level)
    settings = FirmwareServerSettings()
    run_until_signal(lambda stop: run_firmware_server(settings, stop))


# --- broker -------------------------------------------------------------------------------------


@broker_app.command("config")
def broker_config(
    out: Annotated[Path, typer.Option(help="Directory to write mosquitto.conf, passwords and acl into.")],
    accounts: Annotated[Path, typer.Option(help="TOML file listing accounts: [[account]] username, password, "
                                                "role (cloud|concentrator|app|device|fleet).")],
    port: Annotated[int, typer.Option(help="Plain MQTT listener port.")] = 1883,
    bind: Annotated[str, typer.Option(help="Listener address.")] = "127.0.0.1",
    data_dir: Annotated[Path, typer.Option(help="Persistence directory.")] = Path("/var/lib/mosquitto"),
    run_as: Annotated[Optional[str], typer.Option(help="User mosquitto switches to when started as root.")] = None,
    tls_port: Annotated[Optional[int], typer.Option(help="Mutual-TLS listener port for concentrators "
                                                         "(needs --pki-dir).")] = None,
    pki_dir: Annotated[Optional[Path], typer.Option(help="Directory with ca.pem, server.pem and server.key "
                                                         "(gridwire broker pki ensure).")] = None,
) -> None:
    """Write the Mosquitto configuration Gridwire runs with (persistence, queue limits, ACLs)."""
    import tomllib

    from broker.mosquitto_conf import Account, BrokerConfig, write_broker_files

    import os

    listed = tomllib.loads(accounts.read_text()).get("account", [])
    resolved = []
    for entry in listed:
        password = entry.get("password")
        if password is None and "password_env" in entry:
            password = os.environ.get(entry["password_env"])
        if not password:
            typer.echo(f"error: {accounts}: account {entry.get('username')!r} has no password "
                       f"(set password, or the variable named by password_env)", err=True)
            raise typer.Exit(2)
        resolved.append(Account(username=entry["username"], password=password, role=entry["role"]))
    if (tls_port is None) != (pki_dir is None):
        typer.echo("error: --tls-port and --pki-dir go together", err=True)
        raise typer.Exit(2)
    tls = {} if pki_dir is None else {"tls_port": tls_port, "tls_ca_file": pki_dir / "ca.pem",
                                      "tls_cert_file": pki_dir / "server.pem", "tls_key_file": pki_dir / "server.key"}
    cfg = BrokerConfig(port=port, bind=bind, data_dir=data_dir, run_as=run_as, accounts=resolved, **tls)
    conf = write_broker_files(cfg, out)
    typer.echo(f"wrote {conf} ({len(listed)} accounts)")


pki_app = typer.Typer(no_args_is_help=True, help="A private CA for mutual TLS: broker and concentrator certificates.")
broker_app.add_typer(pki_app, name="pki")
PkiDir = Annotated[Path, typer.Option("--dir", help="The CA's directory (ca.pem, ca.key; keys are written 0600).")]


def _pki_error(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2) from exc


@pki_app.command("init-ca")
def broker_pki_init_ca(directory: PkiDir,
                       name: Annotated[str, typer.Option(help="The CA's common name.")] = "Gridwire CA",
                       days: Annotated[int, typer.Option(help="Validity in days.")] = 3650) -> None:
    """Create a new certificate authority (refuses to overwrite an existing one)."""
    from broker.pki import CertificateAuthority, PkiError

    try:
        ca = CertificateAuthority.create(directory, name=name, days=days)
    except PkiError as exc:
        _pki_error(exc)
    typer.echo(f"wrote {ca.cert_file} and its key")


@pki_app.command("ensure")
def broker_pki_ensure(directory: PkiDir,
                      name: Annotated[Optional[list[str]], typer.Option(
                          "--name", help="DNS name or IP address of the broker (repeat; default localhost, "
                                         "127.0.0.1).")] = None,
                      client: Annotated[Optional[list[str]], typer.Option(
                          "--client", help="A concentrator id to issue a client certificate for (repeat).")] = None,
                      reserved: Annotated[Optional[list[str]], typer.Option(
                          "--reserved", help="Privileged broker usernames no client certificate may carry "
                                             "(repeat; default gridwire-cloud).")] = None,
                      server_dir: Annotated[Optional[Path], typer.Option(
                          help="Where server.pem, server.key and a copy of ca.pem go (default: --dir).")] = None,
                      clients_dir: Annotated[Optional[Path], typer.Option(
                          help="Where <id>.pem, <id>.key and a copy of ca.pem go (default: <dir>/clients).")] = None,
                      owner: Annotated[Optional[int], typer.Option(
                          help="Give the broker's key and certificate to this uid (the broker reads them "
                               "after dropping root; 1883 in the eclipse-mosquitto image).")] = None) -> None:
    """Create the CA, the broker's certificate and the named client certificates if they are
    missing (clients under <dir>/clients); keeps whatever exists. Safe to run at every start."""
    from broker.pki import DEFAULT_SERVER_NAMES, PkiError, ensure_pki
    from broker.topics import TopicError

    try:
        ensure_pki(directory, server_names=name or DEFAULT_SERVER_NAMES, clients=client or [],
                   reserved=reserved or ["gridwire-cloud"], server_dir=server_dir, clients_dir=clients_dir)
    except (PkiError, TopicError) as exc:
        _pki_error(exc)
    if owner is not None:
        import os

        for path in ((server_dir or directory) / "server.key", (server_dir or directory) / "server.pem"):
            os.chown(path, owner, -1)
    typer.echo(f"PKI ready in {directory}")


@pki_app.command("server")
def broker_pki_server(directory: PkiDir,
                      name: Annotated[Optional[list[str]], typer.Option(
                          "--name", help="DNS name or IP address of the broker (repeat; default localhost, "
                                         "127.0.0.1).")] = None,
                      days: Annotated[int, typer.Option(help="Validity in days.")] = 825) -> None:
    """Issue the broker's server certificate (server.pem, server.key in the CA's directory)."""
    from broker.pki import DEFAULT_SERVER_NAMES, CertificateAuthority, PkiError

    try:
        files = CertificateAuthority.load(directory).issue_server(directory, names=name or DEFAULT_SERVER_NAMES,
                                                                  days=days)
    except PkiError as exc:
        _pki_error(exc)
    typer.echo(f"wrote {files.cert_file} and {files.key_file}")


@pki_app.command("client")
def broker_pki_client(concentrator_id: Annotated[str, typer.Argument(help="The concentrator id: the certificate's "
                                                                          "CN and so its broker username.")],
                      directory: PkiDir,
                      out: Annotated[Optional[Path], typer.Option(help="Where to write <id>.pem and <id>.key "
                                                                       "(default: <dir>/clients).")] = None,
                      days: Annotated[int, typer.Option(help="Validity in days.")] = 825) -> None:
    """Issue a concentrator's client certificate for the broker's mutual-TLS listener."""
    from broker.pki import CertificateAuthority, PkiError
    from broker.topics import TopicError

    try:
        files = CertificateAuthority.load(directory).issue_client(out or directory / "clients", concentrator_id,
                                                                  days=days)
    except (PkiError, TopicError) as exc:
        _pki_error(exc)
    typer.echo(f"wrote {files.cert_file} and {files.key_file}")


docs_app = typer.Typer(no_args_is_help=True, help="Generate the API documents kept in docs/.")
app.add_typer(docs_app, name="docs")


@docs_app.command("asyncapi")
def docs_asyncapi(out: Annotated[Path, typer.Option(help="Where to write the AsyncAPI YAML.")] = Path(
        "docs/asyncapi.yaml")) -> None:
    """Write the MQTT API (AsyncAPI 2.6) generated from the topic tree and the message schemas."""
    from gridwire.apidocs import asyncapi_yaml

    out.write_text(asyncapi_yaml())
    typer.echo(f"wrote {out}")


@docs_app.command("openapi")
def docs_openapi(out: Annotated[Path, typer.Option(help="Where to write the OpenAPI JSON.")] = Path(
        "docs/openapi.json")) -> None:
    """Write the web API's OpenAPI document (the running API also serves it at /openapi.json)."""
    from gridwire.apidocs import openapi_json

    out.write_text(openapi_json())
    typer.echo(f"wrote {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
