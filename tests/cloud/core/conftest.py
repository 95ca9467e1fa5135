"""Fixtures for the core tests: the whole platform on SQLite (fast) by default."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cloud.core.harness import Stack, platform
from tests.fixtures.mosquitto import MosquittoServer


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'platform.db'}"


@pytest.fixture
async def stack(shared_mosquitto: MosquittoServer, sqlite_url: str) -> AsyncIterator[Stack]:
    async with platform(shared_mosquitto, sqlite_url) as running:
        yield running
