"""Command-line entry points of the P1 adapter: ``gridwire sim p1`` and ``gridwire p1 read`` (wired in gridwire/cli.py).

Plain typed functions; the ``gridwire`` typer app wires them in. They print, being the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from devices.adapter_config import load_adapter_config
from edge.p1.reader import P1Reader
from edge.p1.simulator import MeterModel, P1Simulator

DEMO_SMARTY_KEY = "000102030405060708090a0b0c0d0e0f"


def sim_p1(
    *,
    interval: float = 1.0,
    count: int | None = None,
    url: str | None = None,
    start: datetime | None = None,
    corrupt_crc_every: int | None = None,
    truncate_every: int | None = None,
    no_gas: bool = False,
    dsmr: str = "5.0",
    smarty_key: str | None = None,
) -> None:
    """Run a simulated DSMR meter (``dsmr``: 2.2, 3.0, 4.0, 4.2, 5.0, e-mucs or smarty) on a new pty
    (or ``url``), print where, run until Ctrl-C or ``count``. A Smarty meter encrypts with
    ``smarty_key`` (hex; default GRIDWIRE_P1_SMARTY_KEY, else a demo key)."""
    model = MeterModel(start=(start or datetime.now(UTC)).replace(microsecond=0),
                       gas_channel=None if no_gas else 1)
    key = None
    if dsmr == "smarty":
        key = bytes.fromhex(smarty_key or os.environ.get("GRIDWIRE_P1_SMARTY_KEY", DEMO_SMARTY_KEY))
    simulator = P1Simulator(model=model, interval=interval, count=count, port=url,
                            corrupt_crc_every=corrupt_crc_every, truncate_every=truncate_every, dsmr=dsmr,
                            smarty_key=key)

    async def run() -> None:
        path = simulator.open()
        print(path, flush=True)
        await simulator.start()
        try:
            await simulator.done.wait()
        finally:
            await simulator.stop()
            print(f"sent {simulator.sent} telegrams ({simulator.corrupted} corrupt, "
                  f"{simulator.truncated} truncated)", file=sys.stderr)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


def read_p1_cli(*, port: str, config: Path, count: int | None = None) -> None:
    """Read a P1 port with an adapter config and print each MeterReading as a JSON line."""
    adapter = load_adapter_config(config)

    async def run() -> None:
        seen = 0
        async with P1Reader(port=port, config=adapter) as reader, contextlib.aclosing(reader.readings()) as readings:
            async for reading in readings:
                print(json.dumps(reading.to_wire()), flush=True)
                seen += 1
                if count is not None and seen >= count:
                    break
            print(f"{reader.stats}", file=sys.stderr)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
