"""The bodies of ``gridwire concentrator run`` and ``gridwire concentrator supervise``, without
typer: the two processes that stay resident on a concentrator (issue 15: RSS). The typer
commands (:mod:`gridwire.cli`) and the lean entry (:mod:`gridwire.entry`) both call these."""

from __future__ import annotations

import sys
from pathlib import Path

from gridwire.process import configure_logging, run_until_signal


def run(config: Path, *, log_level: str) -> int:
    """Run a concentrator until SIGINT or SIGTERM; the exit code (2: a bad config; a
    self-update's restart or rollback code, for the supervisor)."""
    import asyncio

    from gridwire import deferred

    # Loaded on first use (issue 15: RSS): paho-mqtt imports urllib.request (and with it email,
    # http.client...) for its proxy settings, which it reads only with PySocks installed; gurux's
    # object collection, XML reader and writer import ElementTree (pyexpat) and minidom, which only
    # their XML save and load use (about 1.2 MiB).
    for module in deferred.CONCENTRATOR:
        deferred.defer(module)
    from edge.concentrator import Concentrator
    from edge.config import ConfigError, load_config

    configure_logging(log_level, process="concentrator")
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    built: list[Concentrator] = []
    made = asyncio.Event()

    async def main(stop: asyncio.Event) -> None:
        # Built inside the event loop: pymodbus's async clients (Modbus meters) need a running one.
        built.append(Concentrator.from_config(cfg))
        made.set()
        await built[0].run(stop)

    async def ready() -> None:
        # Ready once connected to the broker (its outbox keeps readings whether it is or not).
        await made.wait()
        await built[0].session.connected.wait()

    run_until_signal(main, ready=ready)
    return built[0].exit_code if built else 0


def supervise(config: Path, *, software_dir: Path, factory: Path | None, log_level: str) -> int:
    """Run the concentrator under its supervisor; the exit code."""
    from edge.selfupdate.supervisor import supervise as supervised

    configure_logging(log_level, process="supervisor")
    return supervised(software_dir=software_dir, factory=factory or Path(sys.prefix),
                      args=["concentrator", "run", str(config), "--log-level", log_level])
