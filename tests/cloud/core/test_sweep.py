"""The core under load: the overdue sweep is bounded and oldest first; handlers wait in memory, not on the pool."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker.schemas.command import CommandResponse, CommandStatus, GenericCommand
from broker.session import Message, MqttSession
from cloud.core.commands import CommandStore
from cloud.core.consumer import CommandIn, CoreConsumer
from cloud.core.process import handler_concurrency
from cloud.deadletters import DeadLetterStore
from cloud.held import HELD_PER_PROCESS
from cloud.migrations import migrate
from cloud.registry.db import create_engine
from cloud.settings import DatabaseSettings

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


def test_handler_concurrency_leaves_the_writers_their_kept_connections_and_one_more() -> None:
    assert handler_concurrency(None) is None  # SQLite: no sized pool

    def sized(pool_size: int, max_overflow: int = 0) -> dict[str, object]:
        return DatabaseSettings(url="postgresql+asyncpg://gridwire@db/gridwire", pool_size=pool_size,
                                max_overflow=max_overflow).engine_options()

    # The pool a process opens is the setting plus the writers' kept connections; the slow path
    # gets the setting less one, so the writers and the other statements always find theirs.
    assert sized(10)["pool_size"] == 10 + HELD_PER_PROCESS
    assert handler_concurrency(sized(10)) == 9
    assert handler_concurrency(sized(4, 2)) == 5
    assert handler_concurrency(sized(2)) == 1
    assert handler_concurrency(sized(1)) == 1


async def test_consumer_handles_at_most_concurrency_messages_at_once(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}")
    try:
        inside = 0
        most = 0
        three_in = asyncio.Event()
        release = asyncio.Event()

        async def accept(_incoming: CommandIn) -> None:
            nonlocal inside, most
            inside += 1
            most = max(most, inside)
            if inside == 3:
                three_in.set()
            await release.wait()
            inside -= 1

        async def settle(_response: CommandResponse) -> None:
            raise AssertionError("no responses here")

        # Never connected: only the gate is exercised.
        consumer = CoreConsumer(session=MqttSession(client_id="gate-test", host="127.0.0.1", port=1),
                                dead_letters=DeadLetterStore(engine=engine), on_request=accept, on_response=settle,
                                concurrency=3)
        messages = [Message(topic="core/request/org-a", payload=_command(expired_for=-60).to_wire(), qos=1,
                            retain=False) for _ in range(20)]
        tasks = [asyncio.create_task(consumer.handle_request(m)) for m in messages]
        await three_in.wait()
        for _ in range(5):
            await asyncio.sleep(0)  # on purpose: turns for any task that could slip past the gate
        assert inside == 3
        release.set()
        await asyncio.gather(*tasks)
        assert most == 3 and inside == 0 and consumer.dead_lettered == 0
    finally:
        await engine.dispose()
