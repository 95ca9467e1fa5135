"""``gridwire adapter``: a SmartMeterAdapter as a process of its own, on another device than
the concentrator (needs the edge extra only)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from gridwire.cli_common import LogLevel, _logging, run_until_signal

adapter_app = typer.Typer(no_args_is_help=True,
                          help="An external SmartMeterAdapter: reads one meter, publishes to a concentrator's "
                               "local listener.")


def _load(config: Path):  # -> StandaloneConfig
    from edge.config import ConfigError
    from edge.standalone import load_standalone_config

    try:
        return load_standalone_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@adapter_app.command("run")
def adapter_run(config: Annotated[Path, typer.Argument(help="The adapter's TOML config file.")],
                log_level: LogLevel = "INFO") -> None:
    """Run an adapter: read its P1, DLMS or Modbus meter, keep each reading in its small outbox
    and publish it to the concentrator's local listener until the concentrator confirms it."""
    from edge.standalone import StandaloneAdapter

    _logging(log_level, process="adapter")
    cfg = _load(config)
    built: list[StandaloneAdapter] = []
    made = asyncio.Event()

    async def run(stop: asyncio.Event) -> None:
        # Built inside the event loop: pymodbus's async clients (a Modbus meter) need a running one.
        built.append(StandaloneAdapter.from_config(cfg))
        made.set()
        await built[0].run(stop)

    async def ready() -> None:
        await made.wait()
        await built[0].session.connected.wait()

    run_until_signal(run, ready=ready)


@adapter_app.command("check")
def adapter_check(config: Annotated[Path, typer.Argument(help="The adapter's TOML config file.")]) -> None:
    """Validate an adapter config file; errors name the file and the field."""
    cfg = _load(config)
    typer.echo(f"{config}: adapter {cfg.adapter_id}, a {cfg.meter.protocol} meter, listener "
               f"{cfg.listener.host}:{cfg.listener.port}: ok")
