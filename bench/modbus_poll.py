"""Bench: readings/s one MeterPoller sustains against N simulated Modbus TCP devices.

The simulators run in a child process (so the poller's CPU time is measured alone); the
poller reads every device as fast as its interval allows and the sink only counts.

    .venv/bin/python bench/modbus_poll.py --devices 50 --seconds 10 --interval 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker.schemas import MeterReading  # noqa: E402
from edge.modbus import ModbusConnections, ModbusMeterConfig, ModbusSimulator, build_sources, load_map  # noqa: E402
from broker.backoff import Backoff  # noqa: E402
from edge.polling import MeterPoller  # noqa: E402


async def serve(devices: int, map_name: str) -> None:
    """Child mode: start ``devices`` simulators, print their ports as one JSON line, run until stdin closes."""
    register_map = load_map(map_name)
    simulators = [ModbusSimulator(register_map=register_map) for _ in range(devices)]
    for simulator in simulators:
        await simulator.start()
    sys.stdout.write(json.dumps([s.port for s in simulators]) + "\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for simulator in simulators:
        await simulator.stop()


async def measure(ports: list[int], *, map_name: str, seconds: float, interval: float) -> dict[str, float]:
    count = 0

    async def sink(reading: MeterReading) -> None:
        nonlocal count
        count += 1

    configs = [ModbusMeterConfig.model_validate({
        "meterIndividualId": f"bench-{i}", "registerMap": map_name, "interval": interval, "timeout": 2.0,
        "tcp": {"host": "127.0.0.1", "port": port}}) for i, port in enumerate(ports)]
    connections = ModbusConnections()
    sources = build_sources(configs, connections)
    poller = MeterPoller(sink=sink, backoff=Backoff(initial=0.05, maximum=1.0))
    poller.add_all(sources)
    async with poller:
        # Warm up: every device connected and read once before timing starts.
        while count < len(ports):
            await asyncio.sleep(0.05)
        start_count, start_wall, start_cpu = count, time.perf_counter(), time.process_time()
        await asyncio.sleep(seconds)
        readings = count - start_count
        wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    connections.close()
    unhealthy = sum(not h.healthy for h in poller.health())
    requests = sources[0].adapter.requests_per_read
    return {
        "devices": len(ports), "interval_s": interval, "readings": readings,
        "readings_per_s": round(readings / wall, 1), "modbus_requests_per_s": round(readings * requests / wall, 1),
        "poller_cpu_s_per_reading": round(cpu / max(readings, 1), 6), "poller_cpu_share": round(cpu / wall, 3),
        "ceiling_readings_per_s": round(len(ports) / interval, 1), "unhealthy_meters": unhealthy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between reads of one device")
    parser.add_argument("--map", dest="map_name", default="solar-inverter")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.devices, args.map_name))
        return
    child = subprocess.Popen([sys.executable, __file__, "--serve", "--devices", str(args.devices),
                              "--map", args.map_name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        ports = json.loads(child.stdout.readline())
        result = asyncio.run(measure(ports, map_name=args.map_name, seconds=args.seconds, interval=args.interval))
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(10)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
