"""The one ``gridwire`` command: every Gridwire process and tool is a subcommand of it.

Imports happen inside the commands, so ``gridwire --help`` is quick and an edge-only install
never imports cloud packages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from gridwire.cli_adapter import adapter_app
from gridwire.cli_admin import admin_app
from gridwire.cli_broker import broker_app
from gridwire.cli_common import LogFormatError, LogLevel, _logging, run_until_signal  # noqa: F401 - run_until_signal re-exported
from gridwire.cli_firmware import firmware_app
from gridwire.cli_ops import campaign_app, fleet_app
from gridwire.cli_probe import probe_app
from gridwire.cli_secrets import secrets_app
from gridwire.cli_sim import sim_app

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Gridwire: an open smart-grid platform (meters at the edge, MQTT in the middle, cloud API).")
cloud_app = typer.Typer(no_args_is_help=True, help="Cloud services: ingest, API and the command layers.")
concentrator_app = typer.Typer(no_args_is_help=True, help="The concentrator appliance (edge).")
p1_app = typer.Typer(no_args_is_help=True, help="A meter's P1 port (DSMR telegrams), read by hand.")
app.add_typer(sim_app, name="sim")
app.add_typer(cloud_app, name="cloud")
app.add_typer(broker_app, name="broker")
app.add_typer(concentrator_app, name="concentrator")
app.add_typer(adapter_app, name="adapter")
app.add_typer(p1_app, name="p1")
app.add_typer(fleet_app, name="fleet")
app.add_typer(campaign_app, name="campaign")
app.add_typer(probe_app, name="probe")


def _registry_app() -> typer.Typer:
    from cloud.migrations.cli import app as registry_app

    return registry_app


try:
    app.add_typer(_registry_app(), name="registry", help="The device registry: schema migrations.")
except ImportError:  # an edge-only install (no cloud extra) has no registry to migrate
    pass


app.add_typer(firmware_app, name="firmware", help="Firmware: signing keys, signed manifests, uploads.")
app.add_typer(admin_app, name="admin")
app.add_typer(secrets_app, name="secrets")

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
    metrics_port: Annotated[Optional[int], typer.Option(
        help="Serve Prometheus metrics: the concentrator on this port, each cloud process on the ports after it "
             "(default: no metrics).")] = None,
    log_level: LogLevel = "WARNING",
) -> None:
    """Run the whole platform on one machine: Mosquitto, influxd, every cloud layer and a
    concentrator with simulated meters and street lights, on embedded defaults (SQLite)."""
    from gridwire.demo import DemoOptions, PortInUse, check_ports_free, run_demo

    _logging(log_level)
    options = DemoOptions(directory=directory, meters=meters, api_port=api_port, mqtt_port=mqtt_port,
                          influx_port=influx_port, interval=interval, duration=duration,
                          dlms_meters=dlms_meters, modbus_meters=modbus_meters, lights=lights,
                          mqtt_tls_port=mqtt_tls_port, metrics_port=metrics_port)
    try:
        check_ports_free(options)  # before anything starts: one line, not a task's traceback
        run_until_signal(lambda stop: run_demo(options, stop))
    except PortInUse as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


# --- edge ---------------------------------------------------------------------------------------


@concentrator_app.command("run")
def concentrator_run(config: Annotated[Path, typer.Argument(help="The concentrator's TOML config file.")],
                     log_level: LogLevel = "INFO") -> None:
    """Run a concentrator: read its meters, keep readings in the durable outbox, forward them."""
    from gridwire.concentrator_process import run

    code = _usage_errors(run, config, log_level=log_level)
    if code:
        raise typer.Exit(code)  # a bad config (2), or a self-update's restart or rollback, for the supervisor


@concentrator_app.command("supervise")
def concentrator_supervise(
    config: Annotated[Path, typer.Argument(help="The concentrator's TOML config file.")],
    software_dir: Annotated[Path, typer.Option(help="Where updates install versions beside each other "
                                                    "(releases/, the current and previous links).")] = Path(
        "/var/lib/gridwire/software"),
    factory: Annotated[Optional[Path], typer.Option(help="The tree to start when no update is installed "
                                                         "(default: this command's own virtualenv).")] = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Run the concentrator under its supervisor (what the systemd unit runs): start the current
    version's `gridwire concentrator run`, restart it on a version an update switched to, and
    roll back to the previous version when the new one fails its health check or ends before
    passing it (docs/FIRMWARE.md, "The concentrator's own software")."""
    from gridwire.concentrator_process import supervise

    raise typer.Exit(_usage_errors(supervise, config, software_dir=software_dir, factory=factory, log_level=log_level))


def _usage_errors(command: Callable[..., int], *args: Any, **kwargs: Any) -> int:
    """``command``'s exit code, a bad GRIDWIRE_LOG_FORMAT as a usage error (as every command)."""
    try:
        return command(*args, **kwargs)
    except LogFormatError as exc:
        raise typer.BadParameter(str(exc)) from None


@concentrator_app.command("check")
def concentrator_check(config: Annotated[Path, typer.Argument(help="The concentrator's TOML config file.")]) -> None:
    """Validate a concentrator config file; errors name the file, the meter and the field."""
    from edge.config import ConfigError, load_config, placeholders

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"{config}: concentrator {cfg.concentrator_id}, {len(cfg.meters)} meter(s): ok")
    if cfg.local is not None:
        from edge.local_intake import adapter_meters

        try:
            owners = adapter_meters((a.adapter_id, a.adapter_config) for a in cfg.local.adapters)
        except ValueError as exc:  # an adapter config that cannot be read, or a meter claimed twice
            typer.echo(f"error: {config}: local.adapters: {exc}", err=True)
            raise typer.Exit(2) from exc
        typer.echo(f"{config}: local listener {cfg.local.host}:{cfg.local.port}, {len(cfg.local.adapters)} "
                   f"external adapter(s) for {len(owners)} meter(s): ok")
    if left := placeholders(config):
        typer.echo(f"{config}: placeholders still to fill in: {', '.join(left)}")


@concentrator_app.command("local-broker")
def concentrator_local_broker(
    config: Annotated[Path, typer.Argument(help="The concentrator's TOML config file (its [local] section).")],
    out: Annotated[Path, typer.Option(help="Where to write mosquitto.conf and its account file.")] = Path(
        "/etc/gridwire/local-broker"),
    data_dir: Annotated[Optional[Path], typer.Option(help="The broker's persistence directory "
                                                          "(default: OUT/data).")] = None,
    run_as: Annotated[Optional[str], typer.Option(help="The user Mosquitto runs as.")] = None,
) -> None:
    """Write the Mosquitto config of the concentrator's local listener for SmartMeterAdapters on
    other devices: an account per adapter, allowed to publish only for its meters; plain on
    loopback, TLS only on the network. Run it with: mosquitto -c OUT/mosquitto.conf"""
    from broker.mosquitto_conf import write_broker_files
    from edge.config import ConfigError, load_config
    from edge.local_broker import local_broker_config

    try:
        cfg = load_config(config)
        if cfg.local is None:
            raise ConfigError(f"{config}: no [local] section: the concentrator has no local listener")
        broker = local_broker_config(cfg.local, data_dir=data_dir or out / "data", run_as=run_as)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    # Its accounts are exactly the config's: nobody changes them at run time on this broker, so an
    # adapter taken out of the config loses its account (written afresh, not merged).
    (broker.dynsec_file or out / "dynamic-security.json").unlink(missing_ok=True)
    conf = write_broker_files(broker, out)
    typer.echo(f"wrote {conf}: {len(cfg.local.adapters)} adapter account(s); run (or restart): mosquitto -c {conf}")


@p1_app.command("read")
def p1_read(
    port: Annotated[str, typer.Argument(help="The serial device or pyserial URL (e.g. /dev/ttyUSB0).")],
    config: Annotated[Path, typer.Option(help="The meter's adapter config (MeterIndividual id, property mapping).")],
    count: Annotated[Optional[int], typer.Option(help="Stop after this many readings (default: Ctrl-C).")] = None,
) -> None:
    """Read a P1 port with an adapter config and print each MeterReading as a JSON line."""
    from edge.p1.cli import read_p1_cli

    read_p1_cli(port=port, config=config, count=count)


@concentrator_app.command("provision")
def concentrator_provision(
    api: Annotated[str, typer.Option(help="The platform API's base URL, e.g. https://gridwire.example.net.")],
    claim: Annotated[str, typer.Option(envvar="GRIDWIRE_CLAIM", help="The one-time provisioning claim the "
                                                                     "operator made (or GRIDWIRE_CLAIM).")],
    api_ca: Annotated[Optional[Path], typer.Option(help="CA certificate the API's HTTPS certificate is checked "
                                                        "against (default: the system's).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Where to write tls/ and concentrator.toml (default: "
                                                     "ROOT/etc/gridwire).")] = None,
    data_dir: Annotated[Path, typer.Option(help="Outbox and state directory named in a new config.")] = Path(
        "/var/lib/gridwire"),
    root: Annotated[Optional[Path], typer.Option(help="An install root (an image being prepared, a test's "
                                                      "throwaway root): files go under it, the config names "
                                                      "paths as the appliance sees them (default: /).")] = None,
    enable: Annotated[bool, typer.Option(help="Enable the gridwire-concentrator service (systemctl enable, "
                                              "or systemctl --root in an install root).")] = True,
) -> None:
    """Make this concentrator's key pair here (kept if it exists), send a certificate signing
    request with the claim, write the certificate the platform signs, the CA certificate and the
    config (a skeleton if there is none; else only its concentrator id and [broker] section are
    set), and enable the service. The private key never leaves this machine. Safe to run again:
    the same key and claim get the same certificate back, and nothing else changes."""
    from edge.provision import ProvisionError, provision
    from edge.service import enable_service

    out = out if out is not None else (root or Path("/")) / "etc" / "gridwire"
    try:
        done = provision(api=api, claim=claim, out=out, data_dir=data_dir, api_ca=api_ca, root=root)
    except ProvisionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    answer, written = done.answer, done.written
    typer.echo(f"provisioned concentrator {answer.concentrator_id}: certificate {answer.serial}, "
               f"valid until {answer.not_after}")
    typer.echo(f"  key {written.key_file} ({'made here' if done.key_made else 'kept'}, mode 0600, never sent)")
    typer.echo(f"  wrote {written.cert_file} and {written.ca_file}")
    typer.echo(f"  broker {answer.broker.host}:{answer.broker.port} (mutual TLS)")
    if written.config_written:
        typer.echo(f"  wrote {written.config_file}: add your meters to it")
    elif written.config_updated:
        typer.echo(f"  set {', '.join(written.config_updated)} in {written.config_file} (the rest kept)")
    else:
        typer.echo(f"  kept {written.config_file}: it already names this concentrator and these files")
    if enable:
        typer.echo(f"  {enable_service(root).report}")
    typer.echo("next steps:")
    typer.echo(f"  1. add [[meters]] to {written.config_file} (docs/INSTALL_CONCENTRATOR.md)")
    typer.echo(f"  2. gridwire concentrator check {written.config_file}")
    typer.echo("  3. systemctl restart gridwire-concentrator")


# --- cloud --------------------------------------------------------------------------------------


# Every process reads its settings from GRIDWIRE_* variables (cloud/settings.py): the broker
# (GRIDWIRE_MQTT_HOST, _PORT, _USERNAME, _PASSWORD, _CLIENT_ID, _CA_FILE, _CERT_FILE, _KEY_FILE,
# _INFLIGHT), the database (GRIDWIRE_DATABASE_URL, _POOL_SIZE, ...) and its own section.
_SETTINGS_HELP = ("Settings from GRIDWIRE_* variables: MQTT_HOST, MQTT_PORT, MQTT_USERNAME, MQTT_PASSWORD, "
                  "MQTT_CLIENT_ID, MQTT_CA_FILE (TLS), DATABASE_URL, ... (README, cloud/settings.py).")


def _cloud_process(name: str, log_level: str, *, refuse: Callable[[Any], object] | None = None,
                   stream: bool = False, uvloop: bool = False, **overrides: object) -> None:
    """Run cloud process ``name``; ``refuse(settings)`` first, whose Invalid (settings it will
    not start with) is one line on stderr and exit 2, not a traceback. A ``stream`` process
    (one that handles a message stream) keeps its start-up heap out of the collector's way;
    ``uvloop`` runs it on uvloop's event loop when that is installed."""
    from broker.errors import Invalid
    from cloud.platform import PROCESSES, process_runner

    settings = PROCESSES[name].settings(**overrides)
    _logging(log_level, process=name, format=settings.log.format)
    if refuse is not None:
        try:
            refuse(settings)
        except Invalid as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
    if stream:
        from cloud.runtime import steady_heap

        steady_heap()
    loop_factory = None
    if uvloop:
        from cloud.runtime import api_event_loop

        loop_factory = api_event_loop("API" if name == "api" else f"{name} process")
    ready = asyncio.Event()
    run_until_signal(process_runner(name, settings, ready=ready), ready=ready.wait, loop_factory=loop_factory)


@cloud_app.command("ingest", epilog=_SETTINGS_HELP)
def cloud_ingest(log_level: LogLevel = "INFO") -> None:
    """Run one ingest process: readings from the broker into InfluxDB (also INFLUX_URL,
    INGEST_BATCH_READINGS, ...). Start more of them to share the load: they form one MQTT
    shared subscription."""
    _cloud_process("ingest", log_level, stream=True)


@cloud_app.command("fanout", epilog=_SETTINGS_HELP)
def cloud_fanout(log_level: LogLevel = "INFO") -> None:
    """Run one fan-out process: each reading, once ingest stored it, republished to
    app/<org>/metering/reading/<meter> for every organisation that may read the meter (also
    FANOUT_RETAINED, FANOUT_PROPERTIES, FANOUT_MESSAGE_EXPIRY, FANOUT_ACCESS_REFRESH_SECONDS;
    docs/APPS.md). Start more to share the load: they form one MQTT shared subscription."""
    _cloud_process("fanout", log_level)


@cloud_app.command("api", epilog=_SETTINGS_HELP)
def cloud_api(host: Annotated[Optional[str], typer.Option(help="Address to listen on (default: GRIDWIRE_API_HOST "
                                                             "or 127.0.0.1).")] = None,
              port: Annotated[Optional[int], typer.Option(help="Port to listen on (default: GRIDWIRE_API_PORT "
                                                             "or 8080).")] = None,
              insecure_http: Annotated[bool, typer.Option(
                  "--insecure-http", help="Serve plain HTTP (logged as a warning); without it the API serves "
                                          "HTTPS with API_TLS_CERT_FILE and API_TLS_KEY_FILE.")] = False,
              log_level: LogLevel = "INFO") -> None:
    """Serve the full platform web API over HTTPS: meter readings, admin and installation, the
    functional domains (public lighting, smart metering, tariff switching) and clock drift
    (OpenAPI at /docs). Migrates the database at start. Also JWT_SECRET (required),
    API_TLS_CERT_FILE, API_TLS_KEY_FILE, INFLUX_URL, PKI_DIR, CRL_FILE, BROKER_PID_FILE."""
    from cloud.api.process import https

    chosen = {"api_host": host, "api_port": port, "api_insecure_http": insecure_http or None}
    # Not on uvloop (uvloop=True): it took a tenth off the API's CPU per read (bench/api_load.py)
    # but made 40,000 lights switched in bulk take 100 s instead of 43 s, the broker backing up
    # behind the API's faster publishing (bench/README.md, issue 12).
    _cloud_process("api", log_level, refuse=https,
                   **{key: value for key, value in chosen.items() if value is not None})


@cloud_app.command("core", epilog=_SETTINGS_HELP)
def cloud_core(log_level: LogLevel = "INFO") -> None:
    """Run one core process: authorise generic commands, route them to devices, follow them to
    an end (retries, time-to-live). Start more to share the load (MQTT shared subscription).
    Run `gridwire cloud api` (or `gridwire registry migrate`) first: it migrates."""
    _cloud_process("core", log_level, stream=True)


@cloud_app.command("domain", epilog=_SETTINGS_HELP)
def cloud_domain(log_level: LogLevel = "INFO") -> None:
    """Run one domain process: the functional-domain consumer (requests to generic commands) and
    the results consumer (outcomes to apps and webhooks; also WEBHOOK_MAX_ATTEMPTS, ...). It signs
    webhook deliveries with the organisations' sealed secrets: with any stored it needs
    GRIDWIRE_SECRETS_KEY, as the API does. Start more to share the load."""
    _cloud_process("domain", log_level, stream=True)


@cloud_app.command("scheduler", epilog=_SETTINGS_HELP)
def cloud_scheduler(log_level: LogLevel = "INFO") -> None:
    """Run the scheduler: publish due schedules (meter reads, astronomical light switching)
    exactly once however many copies run (also SCHEDULER_LEASE_SECONDS, SCHEDULER_POLL_SECONDS)."""
    _cloud_process("scheduler", log_level)


@cloud_app.command("monitor", epilog=_SETTINGS_HELP)
def cloud_monitor(log_level: LogLevel = "INFO") -> None:
    """Run device status monitoring: concentrator liveness, silent devices, events and
    notifications (also MONITOR_SWEEP_SECONDS, MONITOR_FAILURES_OFFLINE)."""
    _cloud_process("monitor", log_level)


@cloud_app.command("campaigns", epilog=_SETTINGS_HELP)
def cloud_campaigns(log_level: LogLevel = "INFO") -> None:
    """Run a firmware campaign runner: issue update_firmware commands wave by wave, follow them,
    stop on thresholds. Start more for resilience (each campaign is leased to one at a time;
    also CAMPAIGN_POLL_SECONDS, CAMPAIGN_LEASE_SECONDS, CAMPAIGN_REPUBLISH_SECONDS)."""
    _cloud_process("campaigns", log_level)


@cloud_app.command("timesync", epilog=_SETTINGS_HELP)
def cloud_timesync(log_level: LogLevel = "INFO") -> None:
    """Run the time service: answer concentrators' time requests and record meters' clock
    drift (also TIMESYNC_DRIFT_ALARM_SECONDS)."""
    _cloud_process("timesync", log_level)


@cloud_app.command("firmware-server", epilog=_SETTINGS_HELP)
def cloud_firmware_server(log_level: LogLevel = "INFO") -> None:
    """Serve firmware images to concentrators in chunks over MQTT (concentrator/<cid>/firmware/...).
    Start more to share the load (MQTT shared subscription). Also FIRMWARE_STORE_DIR (the image
    store directory)."""
    _cloud_process("firmware-server", log_level)


@cloud_app.command("processing", epilog=_SETTINGS_HELP)
def cloud_processing(log_level: LogLevel = "INFO") -> None:
    """Run one processing process: validate register readings, estimate across gaps and keep
    consumption per 15 minutes, hour, day and month in InfluxDB (docs/PROCESSING.md; also
    INFLUX_URL, PROCESSING_MAX_GAP_SECONDS, ...). Start more to share the load (MQTT shared
    subscription; PostgreSQL locks keep one meter to one process at a time)."""
    _cloud_process("processing", log_level)


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
