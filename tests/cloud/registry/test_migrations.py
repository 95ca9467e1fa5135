"""The Alembic migrations: they run on both backends, repeat safely, and match the models."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from typer.testing import CliRunner

from cloud.migrations import alembic_config, current_revision, head_revision, migrate
from cloud.migrations.cli import app as cli_app
from cloud.registry.db import create_engine
from cloud.registry.models import Base
from gridwire.procs import ManagedProcess, free_port
from gridwire.services import LocalPostgres
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.waiting import wait_for


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_migrate_reaches_head_and_repeats(registry_url: str) -> None:
    assert await current_revision(registry_url) is None
    assert await migrate(registry_url) == head_revision()
    assert await migrate(registry_url) == head_revision()
    assert await current_revision(registry_url) == head_revision()


async def test_migrated_schema_matches_models(registry_url: str) -> None:
    await migrate(registry_url)
    engine = create_engine(registry_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
            tables = await conn.run_sync(_tables)
    finally:
        await engine.dispose()
    assert diff == []
    assert {"device", "organisation", "device_authorisation", "alembic_version"} <= tables


async def test_downgrade_to_base_and_back(registry_url: str) -> None:
    await migrate(registry_url)
    engine = create_engine(registry_url)

    def downgrade(connection: Connection) -> set[str]:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
        return _tables(connection)

    try:
        async with engine.begin() as conn:
            left = await conn.run_sync(downgrade)
    finally:
        await engine.dispose()
    assert left <= {"alembic_version"}
    assert await migrate(registry_url) == head_revision()


def test_cli_migrate(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    result = CliRunner().invoke(cli_app, ["migrate", "--url", url])
    assert result.exit_code == 0, result.output
    assert head_revision() in result.output
    assert asyncio.run(current_revision(url)) == head_revision()
    failed = CliRunner().invoke(cli_app, ["migrate", "--url", "postgresql+asyncpg://nobody@127.0.0.1:1/none"])
    assert failed.exit_code == 1


def _migrate_process(url: str, log: Path, *, wait: float) -> ManagedProcess:
    return ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", "registry", "migrate", "--url", url,
                                "--wait", str(wait)], log=log)


async def test_cli_migrate_waits_for_a_database_that_starts_later(tmp_path: Path) -> None:
    """A deployment starts the migration with its database: until PostgreSQL listens it tries
    again, then migrates once it does."""
    port = free_port()
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
    log = tmp_path / "migrate.log"
    process = _migrate_process(url, log, wait=120)
    process.start()
    try:
        await wait_for(lambda: "not reachable yet" in log.read_text(), timeout=60, what="a failed first attempt")
        assert process.running
        database = LocalPostgres(port=port)
        try:
            database.start()
            assert process.proc is not None
            await asyncio.to_thread(process.proc.wait, 60)
            assert process.proc.returncode == 0, log.read_text()
            assert f"registry schema at revision {head_revision()}" in log.read_text()
            assert await current_revision(url) == head_revision()
        finally:
            database.remove()
    finally:
        process.stop()


async def test_cli_migrate_does_not_wait_out_a_refusal(postgres_server: PostgresServer, tmp_path: Path) -> None:
    """A database that answers with a refusal (here: no such database) fails the migration at
    once, however long it may wait for an unreachable one."""
    log = tmp_path / "migrate.log"
    process = _migrate_process(postgres_server.url("gw_no_such_database"), log, wait=600)
    process.start()
    try:
        assert process.proc is not None
        await asyncio.to_thread(process.proc.wait, 60)
        assert process.proc.returncode == 1
        text = log.read_text()
        assert "does not exist" in text and "not reachable yet" not in text, text
    finally:
        process.stop()
