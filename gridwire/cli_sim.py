"""``gridwire sim``: simulated meters and devices, for tests and the demo."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

from gridwire.cli_common import LogLevel, _logging, run_until_signal  # noqa: F401

sim_app = typer.Typer(no_args_is_help=True, help="Simulated meters and devices, for tests and the demo.")


@sim_app.command("p1")
def sim_p1(
    interval: Annotated[float, typer.Option(help="Seconds between telegrams.")] = 1.0,
    count: Annotated[Optional[int], typer.Option(help="Stop after this many telegrams.")] = None,
    url: Annotated[Optional[str], typer.Option(help="Write to this pyserial URL instead of a new pty.")] = None,
    start: Annotated[Optional[datetime], typer.Option(help="Meter time of the first telegram (UTC).")] = None,
    corrupt_crc_every: Annotated[Optional[int], typer.Option(help="Corrupt the CRC of every Nth telegram.")] = None,
    truncate_every: Annotated[Optional[int], typer.Option(help="Truncate every Nth telegram.")] = None,
    dsmr: Annotated[str, typer.Option(help="DSMR version: 2.2, 3.0, 4.0, 4.2, 5.0, e-mucs (Belgium) or smarty "
                                           "(Luxembourg, encrypted).")] = "5.0",
    smarty_key: Annotated[Optional[str], typer.Option(
        help="A Smarty meter's AES-128 key, hex (default GRIDWIRE_P1_SMARTY_KEY, else a demo key).")] = None,
) -> None:
    """A simulated DSMR meter writing P1 telegrams to a pty; prints the pty's path."""
    from edge.p1.cli import sim_p1 as run
    from edge.p1.versions import VERSIONS

    if dsmr not in VERSIONS:
        raise typer.BadParameter(f"one of {', '.join(VERSIONS)}", param_hint="--dsmr")
    run(interval=interval, count=count, url=url, start=start, corrupt_crc_every=corrupt_crc_every,
        truncate_every=truncate_every, dsmr=dsmr, smarty_key=smarty_key)


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
    client: Annotated[Optional[list[str]], typer.Option(
        help="A client SAP and its security, ADDRESS:SECURITY (e.g. 16:none, 1:hls-gmac); repeat for each. "
             "Default: management client 1 with --security and public client 16 with none. An LLS client's "
             "password: GRIDWIRE_DLMS_PASSWORD_<ADDRESS>, else GRIDWIRE_DLMS_PASSWORD.")] = None,
    push_to: Annotated[Optional[str], typer.Option(
        help="Where the meter pushes: HOST:PORT (a concentrator's push listener) or a serial device (HDLC). "
             "A client may also write it to the push setup (class 40, attribute 3).")] = None,
    event: Annotated[Optional[list[str]], typer.Option(
        help="A push the meter makes on its own, SECONDS:KIND after its start; KIND is power-failure, "
             "power-restored, cover-open, alarm:BIT (a name such as REPLACE_BATTERY, or 0..31), disconnect or "
             "reconnect. Repeat for each.")] = None,
) -> None:
    """A simulated DLMS/COSEM electricity meter over TCP (WRAPPER) or serial (HDLC) until Ctrl-C."""
    from edge.dlms.cli import sim_dlms as run

    run(host=host, port=port, security=security, serial=serial, history_days=history_days,
        clock_offset_s=clock_offset_s, drift_ppm=drift_ppm, serial_port=serial_port, baudrate=baudrate,
        clients=client, push_to=push_to, events=event)


@sim_app.command("modbus")
def sim_modbus(
    map_name: Annotated[str, typer.Option("--map", help="Register map name (devices/modbus/maps) or YAML path.")] = (
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
