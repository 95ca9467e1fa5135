"""Command line for the schema: ``gridwire registry migrate --url ...`` (the registry database's tables)."""

from __future__ import annotations

import asyncio
import logging

import typer

from cloud.migrations.migrate import head_revision, migrate_when_reachable

app = typer.Typer(help="The device registry (devices, organisations, authorisations).", no_args_is_help=True)


@app.callback()
def registry() -> None:
    """The device registry (devices, organisations, authorisations)."""


URL_HELP = "SQLAlchemy async URL, e.g. sqlite+aiosqlite:///var/lib/gridwire/registry.db or postgresql+asyncpg://user@host/db"


@app.command("migrate")
def migrate_command(
    url: str = typer.Option(..., "--url", envvar=["GRIDWIRE_DATABASE_URL", "GRIDWIRE_REGISTRY_URL"], help=URL_HELP),
    revision: str = typer.Option("head", "--revision", help="Alembic revision to upgrade to."),
    wait: float = typer.Option(0.0, "--wait", help="Seconds to keep trying while the database cannot be reached "
                                                   "(starting with it, e.g. in a container)."),
) -> None:
    """Create or upgrade the registry schema to the newest revision (safe to repeat)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        reached = asyncio.run(migrate_when_reachable(url, revision=revision, wait=wait))
    except Exception as exc:  # a CLI boundary: show the reason, exit non-zero
        typer.echo(f"registry migration failed: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(f"registry schema at revision {reached} (head {head_revision()})")
