"""What a long-running ``gridwire`` process needs, without typer: logging set-up and running
until a signal. The concentrator's resident commands (:mod:`gridwire.entry`) use it directly,
the typer commands through :mod:`gridwire.cli_common`."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from broker.errors import Invalid
from broker.logs import configure

if TYPE_CHECKING:  # asyncio (and ssl with it) only in the processes that run a loop: not the supervisor
    import asyncio

LOG_FORMAT_VARIABLE = "GRIDWIRE_LOG_FORMAT"

# A file a long-running process writes once it serves and removes when it ends: the health check
# of its container (docker-compose.yml) or service tests it.
READY_FILE_ENV = "GRIDWIRE_READY_FILE"


class LogFormatError(Invalid):
    """GRIDWIRE_LOG_FORMAT names neither text nor json."""


def log_format(format: str | None = None) -> str:  # noqa: A002
    """The log format chosen: ``format`` (a cloud process's setting), else GRIDWIRE_LOG_FORMAT, else text."""
    chosen = (format or os.environ.get(LOG_FORMAT_VARIABLE, "text")).strip().lower()
    if chosen not in ("text", "json"):
        raise LogFormatError(f"{LOG_FORMAT_VARIABLE} must be text or json, not {chosen!r}")
    return chosen


def configure_logging(level: str, *, process: str | None = None, format: str | None = None) -> None:  # noqa: A002
    """Text lines, or JSON lines carrying the correlation id or reading seq being handled when
    ``GRIDWIRE_LOG_FORMAT=json`` (every process, the concentrator too; a cloud process passes its
    settings' ``log.format``)."""
    configure(level=level, format="json" if log_format(format) == "json" else "text", process=process)


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]], *,
                     ready: Callable[[], Awaitable[object]] | None = None,
                     loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None) -> None:
    """Run ``main(stop)`` until SIGINT or SIGTERM sets ``stop``.

    ``ready`` returns once the process serves (subscribed, listening); with GRIDWIRE_READY_FILE
    set, that file is written then and removed when ``main`` returns. ``loop_factory`` makes the
    event loop (default: asyncio's own).
    """
    import asyncio

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with _ready_file(ready):
            await main(stop)

    with asyncio.Runner(loop_factory=loop_factory) as run:
        run.run(runner())


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

    import asyncio

    marker = asyncio.create_task(mark(), name="ready-file")
    try:
        yield
    finally:
        marker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await marker
        ready_file.unlink(missing_ok=True)
