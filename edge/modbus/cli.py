"""``gridwire sim modbus``: run a simulated Modbus TCP device from a register map."""

from __future__ import annotations

import asyncio
import logging
import signal

from devices.modbus.register_map import available_maps, load_map
from edge.modbus.simulator import ModbusSimulator

logger = logging.getLogger(__name__)


async def serve(*, map_name: str, host: str, port: int, unit_id: int, serial_port: str | None = None,
                ready: asyncio.Event | None = None) -> None:
    """Serve one simulated device (TCP, or RTU on ``serial_port``) until cancelled or SIGINT/SIGTERM."""
    simulator = ModbusSimulator(register_map=load_map(map_name), host=host, port=port, unit_id=unit_id,
                                serial_port=serial_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with simulator:
            where = serial_port or f"{host}:{simulator.port}"
            logger.info("simulating %s (unit %d) on %s", map_name, unit_id, where)
            if ready is not None:
                ready.set()
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def sim_modbus(
    map_name: str = "solar-inverter",
    host: str = "127.0.0.1",
    port: int = 5020,
    unit_id: int = 1,
    serial_port: str = "",
    log_level: str = "INFO",
) -> None:
    """Simulate a Modbus device from a register map (devices/modbus/maps) until Ctrl-C.

    TCP on host:port, or Modbus RTU on ``serial_port`` when given. Plain keyword defaults so
    typer can wrap it: ``sim_app.command("modbus")(sim_modbus)``.
    """
    if map_name not in available_maps() and not map_name.endswith((".yaml", ".yml")):
        raise SystemExit(f"unknown map {map_name!r}; shipped maps: {', '.join(available_maps())}")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(map_name=map_name, host=host, port=port, unit_id=unit_id, serial_port=serial_port or None))


def main() -> None:
    """Entry point for ``python -m edge.modbus.cli`` without the gridwire CLI."""
    import argparse

    parser = argparse.ArgumentParser(description=sim_modbus.__doc__)
    parser.add_argument("--map", dest="map_name", default="solar-inverter")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5020)
    parser.add_argument("--unit-id", type=int, default=1)
    parser.add_argument("--serial-port", default="")
    args = parser.parse_args()
    sim_modbus(map_name=args.map_name, host=args.host, port=args.port, unit_id=args.unit_id,
               serial_port=args.serial_port)


if __name__ == "__main__":
    main()
