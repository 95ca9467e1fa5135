"""What the ``gridwire`` subcommand modules share: logging set-up and running until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer

from broker.logs import configure

LogLevel = Annotated[str, typer.Option("--log-level", help="Python logging level.")]
LOG_FORMAT_VARIABLE = "GRIDWIRE_LOG_FORMAT"

# A file a long-running process writes once it serves and removes when it ends: the health check
# of its container (docker-compose.yml) or service tests it.
READY_FILE_ENV = "GRIDWIRE_READY_FILE"


def gridwire_command() -> str:
    """How a shell runs this ``gridwire``: the virtualenv's script by its absolute path (a line
    printed for a user to paste works in a fresh shell, virtualenv active or not), else this
    Python running the CLI module."""
    script = Path(os.path.abspath(sys.executable)).parent / "gridwire"
    if script.is_file():
        return shlex.quote(str(script))
    return f"{shlex.quote(os.path.abspath(sys.executable))} -m gridwire.cli"


def _logging(level: str, *, process: str | None = None, format: str | None = None) -> None:  # noqa: A002
    """Text lines, or JSON lines carrying the correlation id or reading seq being handled when
    ``GRIDWIRE_LOG_FORMAT=json`` (every process, the concentrator too; a cloud process passes its
    settings' ``log.format``)."""
    chosen = (format or os.environ.get(LOG_FORMAT_VARIABLE, "text")).strip().lower()
    if chosen not in ("text", "json"):
        raise typer.BadParameter(f"{LOG_FORMAT_VARIABLE} must be text or json, not {chosen!r}")
    configure(level=level, format="json" if chosen == "json" else "text", process=process)


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]], *,
                     ready: Callable[[], Awaitable[object]] | None = None) -> None:
    """Run ``main(stop)`` until SIGINT or SIGTERM sets ``stop``.

    ``ready`` returns once the process serves (subscribed, listening); with GRIDWIRE_READY_FILE
    set, that file is written then and removed when ``main`` returns.
    """

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with _ready_file(ready):
            await main(stop)

    asyncio.run(runner())


@contextlib.asynccontextmanager
async def _ready_file(ready: Callable[[], Awaitable[object]] | None) -> AsyncIterator[None]:
    path = os.environ.get(READY_FILE_ENV)
    if not path or ready is None:
        yield
        return
    ready_file = Path(path)
    ready_file.unlink(missing_ok=True)  # one left by a process that was killed

    async def mark() -> None:
        await ready()
        ready_file.write_text(f"{os.getpid()}\n")

    marker = asyncio.create_task(mark(), name="ready-file")
    try:
        yield
    finally:
        marker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await marker
        ready_file.unlink(missing_ok=True)
