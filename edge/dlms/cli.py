"""``gridwire sim dlms``: run a simulated DLMS/COSEM meter over TCP (WRAPPER) or serial HDLC until Ctrl-C.

Secrets come from the environment when not given (never echoed): ``GRIDWIRE_DLMS_PASSWORD``
(``GRIDWIRE_DLMS_PASSWORD_<CLIENT>`` for one client's own), ``GRIDWIRE_DLMS_BLOCK_KEY`` and
``GRIDWIRE_DLMS_AUTH_KEY`` (hex). Without them the simulator
uses well-known demo secrets, which is what a test meter on a laptop wants.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from datetime import timedelta

from edge.dlms.config import SecurityMode
from edge.dlms.cosem_server import PUBLIC_CLIENT, ClientAccess, ServerSecurity
from edge.dlms.meter_model import MeterModel
from edge.dlms.serial_simulator import DlmsSerialMeterSimulator
from edge.dlms.sim_events import SimEvent, parse_event, run_events
from edge.dlms.simulator import DlmsMeterSimulator

logger = logging.getLogger(__name__)

DEMO_PASSWORD = "12345678"
DEMO_BLOCK_KEY = "000102030405060708090a0b0c0d0e0f"
DEMO_AUTH_KEY = "101112131415161718191a1b1c1d1e1f"


async def serve(*, simulator: DlmsMeterSimulator | DlmsSerialMeterSimulator,
                ready: asyncio.Event | None = None, events: list[SimEvent] | None = None) -> None:
    """Serve one simulated meter until cancelled or sent SIGINT/SIGTERM, carrying out ``events``
    (a TCP meter's scripted pushes) at their times."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with simulator:
            where = (f"serial {simulator.port} (HDLC)" if isinstance(simulator, DlmsSerialMeterSimulator)
                     else f"{simulator.host}:{simulator.port}")
            logger.info("DLMS meter %s on %s", simulator.name, where)
            if ready is not None:
                ready.set()
            if events and isinstance(simulator, DlmsMeterSimulator):
                await run_events(simulator, events, stop)
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def parse_clients(specs: list[str]) -> tuple[ClientAccess, ...]:
    """``ADDRESS:SECURITY`` specs (``16:none``, ``1:lls``, ``32:hls-gmac``) as client accesses;
    ``16:none`` is the public client (public objects only), as in IDIS.

    An LLS client's password is ``GRIDWIRE_DLMS_PASSWORD_<ADDRESS>`` if set (else the meter's).
    """
    clients: dict[int, ClientAccess] = {}
    for spec in specs:
        address_text, _, mode_text = spec.partition(":")
        try:
            address, mode = int(address_text), SecurityMode(mode_text)
        except ValueError:
            raise ValueError(f"client {spec!r}: write ADDRESS:SECURITY, SECURITY one of "
                             f"{', '.join(m.value for m in SecurityMode)} (e.g. 16:none)") from None
        if not 1 <= address <= 0x7F:
            raise ValueError(f"client {spec!r}: a client SAP is 1..127")
        if address in clients:
            raise ValueError(f"client {address} is given twice")
        own = os.environ.get(f"GRIDWIRE_DLMS_PASSWORD_{address}")
        clients[address] = ClientAccess(address, mode, own.encode() if own is not None else None,
                                        public=address == PUBLIC_CLIENT and mode is SecurityMode.NONE)
    return tuple(clients.values())


def build_simulator(*, host: str = "127.0.0.1", port: int = 4059, security: str = "lls", serial: str = "GW0000000001",
                    client_address: int = 1, server_address: int = 1, history_days: int = 10,
                    clock_offset_s: float = 0.0, drift_ppm: float = 0.0, clock_status: int = 0,
                    serial_port: str | None = None, baudrate: int = 9600,
                    clients: list[str] | None = None) -> DlmsMeterSimulator | DlmsSerialMeterSimulator:
    """A simulator configured from plain values (secrets from the environment or demo ones).

    Without ``clients`` the meter answers the management client ``client_address`` with
    ``security`` and the public client 16 with none; ``clients`` (``ADDRESS:SECURITY`` each)
    replaces that set. With ``serial_port`` it answers HDLC on that serial device instead of TCP.
    """
    accesses = parse_clients(clients) if clients else ()
    secrets = ServerSecurity(
        mode=accesses[0].mode if accesses else SecurityMode(security),
        password=os.environ.get("GRIDWIRE_DLMS_PASSWORD", DEMO_PASSWORD).encode(),
        block_cipher_key=bytes.fromhex(os.environ.get("GRIDWIRE_DLMS_BLOCK_KEY", DEMO_BLOCK_KEY)),
        authentication_key=bytes.fromhex(os.environ.get("GRIDWIRE_DLMS_AUTH_KEY", DEMO_AUTH_KEY)),
        client_address=accesses[0].address if accesses else client_address, server_address=server_address,
        public_client=None if accesses else PUBLIC_CLIENT, clients=accesses,
    )
    model = MeterModel(serial=serial, history_days=history_days, clock_offset=timedelta(seconds=clock_offset_s),
                       drift_ppm=drift_ppm, clock_status=clock_status)
    if serial_port is not None:
        return DlmsSerialMeterSimulator(port=serial_port, baudrate=baudrate, model=model, security=secrets,
                                        name=serial)
    return DlmsMeterSimulator(model=model, security=secrets, host=host, port=port, name=serial)


def sim_dlms(
    host: str = "127.0.0.1",
    port: int = 4059,
    security: str = "lls",
    serial: str = "GW0000000001",
    history_days: int = 10,
    clock_offset_s: float = 0.0,
    drift_ppm: float = 0.0,
    serial_port: str | None = None,
    baudrate: int = 9600,
    clients: list[str] | None = None,
    push_to: str | None = None,
    events: list[str] | None = None,
) -> None:
    """Simulate a DLMS/COSEM electricity meter (security: none, lls, hls-gmac) until Ctrl-C.

    ``clients`` (``ADDRESS:SECURITY`` each, e.g. ``16:none 1:hls-gmac``) sets the client SAPs it
    answers and the security of each; default: management client 1 with ``security`` and the
    public client 16 with none.

    ``serial_port`` serves HDLC on that serial device instead of TCP (``serial`` is the meter's
    serial number, not a port).

    ``push_to`` is where the meter pushes (``HOST:PORT``, or a serial device path for HDLC), as a
    client writing its push setup's destination would set it; ``events`` (``SECONDS:KIND`` each,
    see :mod:`edge.dlms.sim_events`) are pushes it makes on its own: power failure and restore,
    cover opened, an alarm bit, the disconnector switched.

    Plain keyword defaults so typer can wrap it: ``sim_app.command("dlms")(sim_dlms)``.
    """
    try:
        SecurityMode(security)
    except ValueError:
        raise SystemExit(f"unknown security {security!r}; use one of: "
                         f"{', '.join(m.value for m in SecurityMode)}") from None
    try:
        parse_clients(clients or [])
        scripted = [parse_event(spec) for spec in events or []]
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    if scripted and serial_port is not None:
        raise SystemExit("--event needs the TCP meter (a serial meter does not push on its own)")
    if push_to is not None and not (push_to.startswith("/") or push_to.rpartition(":")[2].isdigit()):
        raise SystemExit(f"--push-to {push_to!r}: write HOST:PORT or a serial device path")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    simulator = build_simulator(host=host, port=port, security=security, serial=serial, history_days=history_days,
                                clock_offset_s=clock_offset_s, drift_ppm=drift_ppm, serial_port=serial_port,
                                baudrate=baudrate, clients=clients)
    if push_to is not None:
        simulator.model.push_destination = push_to
    asyncio.run(serve(simulator=simulator, events=scripted))


def main() -> None:
    """Entry point for ``python -m edge.dlms.cli`` without the gridwire CLI."""
    import argparse

    parser = argparse.ArgumentParser(description=sim_dlms.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4059)
    parser.add_argument("--security", default="lls", choices=[m.value for m in SecurityMode])
    parser.add_argument("--serial", default="GW0000000001")
    parser.add_argument("--history-days", type=int, default=10)
    parser.add_argument("--clock-offset-s", type=float, default=0.0)
    parser.add_argument("--drift-ppm", type=float, default=0.0)
    parser.add_argument("--serial-port", default=None, help="serve HDLC on this serial device instead of TCP")
    parser.add_argument("--baudrate", type=int, default=9600)
    parser.add_argument("--client", action="append", default=None, help="ADDRESS:SECURITY, repeatable")
    parser.add_argument("--push-to", default=None, help="HOST:PORT or serial device the meter pushes to")
    parser.add_argument("--event", action="append", default=None, help="SECONDS:KIND[:BIT], repeatable")
    args = parser.parse_args()
    sim_dlms(host=args.host, port=args.port, security=args.security, serial=args.serial,
             history_days=args.history_days, clock_offset_s=args.clock_offset_s, drift_ppm=args.drift_ppm,
             serial_port=args.serial_port, baudrate=args.baudrate, clients=args.client, push_to=args.push_to,
             events=args.event)


if __name__ == "__main__":
    main()
