"""What the ``gridwire`` subcommand modules share: logging set-up and running until a signal."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated

import typer

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
