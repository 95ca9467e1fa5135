"""A migrated SQLite registry with two organisations, and the monitoring store on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cloud.migrations import migrate
from cloud.monitoring import MonitoringStore
from cloud.registry import OrganisationCreate, Registry
from tests.fixtures.clock import ManualClock


@dataclass
class Db:
    registry: Registry
    store: MonitoringStore
    clock: ManualClock


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Db]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    await migrate(url)
    clock = ManualClock(datetime(2025, 6, 1, 12, tzinfo=UTC))
    async with Registry(url=url, clock=clock) as registry:
        for ident in ("org-a", "org-b"):
            await registry.add_organisation(OrganisationCreate(identification=ident, name=ident))
        yield Db(registry=registry, store=MonitoringStore(registry.engine), clock=clock)
