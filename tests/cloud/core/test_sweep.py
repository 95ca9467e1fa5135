"""The core under load: the overdue sweep is bounded and oldest first; handlers wait in memory, not on the pool."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker.schemas.command import CommandStatus, GenericCommand
from broker.session import Message, MqttSession
from cloud.core.commands import CommandStore
from cloud.core.router import CoreRouter
from cloud.core.service import handler_concurrency
from cloud.registry import Registry, migrate
from cloud.registry.db import create_engine

S = CommandStatus


@pytest.fixture
async def store(registry_url: str) -> AsyncIterator[CommandStore]:
    await migrate(registry_url)
    engine = create_engine(registry_url)
    try:
        yield CommandStore(engine)
    finally:
        await engine.dispose()


def _command(*, expired_for: float) -> GenericCommand:
    now = datetime.now(UTC)
    return GenericCommand(deviceId=f"dev-{uuid.uuid4().hex[:8]}", name="read_now", organisation="org-a",
                          issuedAt=now - timedelta(hours=1), expiresAt=now - timedelta(seconds=expired_for))


async def test_overdue_is_oldest_first_bounded_and_skips_final_and_live(store: CommandStore) -> None:
    ages = [30.0, 5.0, 90.0, 60.0]
    ids = {}
    for age in ages:
        record, _ = await store.add(_command(expired_for=age), correlation_id=str(uuid.uuid4()), domain="d")
        ids[age] = record.id
    done, _ = await store.add(_command(expired_for=120.0), correlation_id=str(uuid.uuid4()), domain="d")
    assert await store.finish(done.id, S.FAILED)
    live, _ = await store.add(_command(expired_for=-60.0), correlation_id=str(uuid.uuid4()), domain="d")
    assert [r.id for r in await store.overdue()] == [ids[a] for a in sorted(ages, reverse=True)]
    assert [r.id for r in await store.overdue(limit=2)] == [ids[90.0], ids[60.0]]
    assert live.id not in {r.id for r in await store.overdue()}


def test_handler_concurrency_leaves_a_connection_for_the_pump() -> None:
    assert handler_concurrency(None) is None  # SQLite: no sized pool
    assert handler_concurrency({"pool_size": 10, "max_overflow": 0}) == 9
    assert handler_concurrency({"pool_size": 4, "max_overflow": 2}) == 5
    assert handler_concurrency({"pool_size": 1}) == 1


async def test_router_handles_at_most_concurrency_messages_at_once(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'core.db'}"
    await migrate(url)
    engine = create_engine(url)
    try:
        # Never connected: only the gate is exercised.
        session = MqttSession(client_id="gate-test", host="127.0.0.1", port=1)
        router = CoreRouter(session=session, registry=Registry(engine=engine), store=CommandStore(engine),
                            concurrency=3)
        inside = 0
        most = 0
        three_in = asyncio.Event()
        release = asyncio.Event()

        async def handler(message: Message) -> None:
            nonlocal inside, most
            inside += 1
            most = max(most, inside)
            if inside == 3:
                three_in.set()
            await release.wait()
            inside -= 1

        gated = router._gated(handler)
        tasks = [asyncio.create_task(gated(Message(topic="t", payload=b"", qos=1, retain=False))) for _ in range(20)]
        await three_in.wait()
        for _ in range(5):
            await asyncio.sleep(0)  # let any task that could slip past the gate run
        assert inside == 3
        release.set()
        await asyncio.gather(*tasks)
        assert most == 3 and inside == 0
    finally:
        await engine.dispose()
