"""The command store: guarded transitions on SQLite and PostgreSQL, under concurrency too."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.schemas.command import CommandError, CommandStatus, GenericCommand
from cloud.core.commands import CommandStore, Decided, Outcome
from cloud.migrations import migrate
from cloud.registry.db import create_engine

S = CommandStatus


def _command(device: str = "dev-1", *, ttl: float = 60.0) -> GenericCommand:
    now = datetime.now(UTC)
    return GenericCommand(deviceId=device, name="read_now", organisation="org-a", issuedAt=now,
                          expiresAt=now + timedelta(seconds=ttl))


@pytest.fixture
async def store(registry_url: str) -> AsyncIterator[CommandStore]:
    await migrate(registry_url)
    engine = create_engine(registry_url)
    try:
        yield CommandStore(engine)
    finally:
        await engine.dispose()


async def test_lifecycle_and_final_status_is_final(store: CommandStore) -> None:
    record, new = await store.add(_command(), correlation_id=str(uuid.uuid4()), domain="smartmetering")
    assert new and record.status is S.QUEUED
    assert await store.due() == []  # not authorised yet
    assert await store.make_due(record.id)
    assert [r.id for r in await store.due()] == [record.id]
    again, new_again = await store.add(record.to_command(), correlation_id=record.correlation_id, domain="x")
    assert not new_again and again.id == record.id
    assert await store.mark_sent(record.id) and not await store.mark_sent(record.id)
    assert await store.mark_delivered(record.id)
    assert await store.finish(record.id, S.SUCCEEDED, result={"v": 1})
    assert not await store.finish(record.id, S.TIMEOUT, error=CommandError(code="TIMEOUT", message="late"))
    assert not await store.requeue(record.id, not_before=datetime.now(UTC))
    final = await store.get(record.id)
    assert final is not None and final.status is S.SUCCEEDED and final.result == {"v": 1} and final.attempts == 1


async def test_expired_command_cannot_be_sent(store: CommandStore) -> None:
    record, _ = await store.add(_command(ttl=-1), correlation_id=str(uuid.uuid4()), domain="d")
    assert not await store.mark_sent(record.id)
    assert [r.id for r in await store.overdue()] == [record.id]


async def test_concurrent_transitions_have_one_winner(store: CommandStore) -> None:
    record, _ = await store.add(_command(), correlation_id=str(uuid.uuid4()), domain="d")
    sent = await asyncio.gather(*(store.mark_sent(record.id) for _ in range(8)))
    assert sent.count(True) == 1
    outcomes = [S.SUCCEEDED, S.FAILED, S.TIMEOUT, S.EXPIRED] * 2
    finished = await asyncio.gather(*(store.finish(record.id, s) for s in outcomes))
    assert finished.count(True) == 1
    others = [_command("dev-lock") for _ in range(6)]
    records = [(await store.add(c, correlation_id=str(uuid.uuid4()), domain="d"))[0] for c in others]
    locked = await asyncio.gather(*(store.lock_device("dev-lock", r.id) for r in records))
    assert locked.count(True) == 1
    holder = records[locked.index(True)]
    await store.finish(holder.id, S.FAILED)
    assert await store.release_stale_locks() == 1
    assert await store.lock_device("dev-lock", records[0].id)


# --- a property: whatever the order of events, the store follows the lifecycle ---------------------------

_EVENTS = st.lists(st.sampled_from(["sent", "delivered", "requeue", "SUCCEEDED", "FAILED", "TIMEOUT", "EXPIRED"]),
                   max_size=8)


def _model(status: S, event: str) -> S:
    if status.final:
        return status
    if event == "sent":
        return S.SENT if status is S.QUEUED else status
    if event == "delivered":
        return S.DELIVERED if status is S.SENT else status
    if event == "requeue":
        return S.QUEUED if status in (S.SENT, S.DELIVERED) else status
    return S(event)


@pytest.fixture(scope="module")
def sqlite_store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('store') / 'prop.db'}"
    asyncio.run(migrate(url))
    return url


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=_EVENTS)
def test_store_follows_the_lifecycle_model(sqlite_store_url: str, events: list[str]) -> None:
    async def run() -> None:
        engine = create_engine(sqlite_store_url)
        store = CommandStore(engine)
        try:
            record, _ = await store.add(_command(), correlation_id=str(uuid.uuid4()), domain="d")
            expected = S.QUEUED
            for event in events:
                if event == "sent":
                    changed = await store.mark_sent(record.id)
                elif event == "delivered":
                    changed = await store.mark_delivered(record.id)
                elif event == "requeue":
                    changed = await store.requeue(record.id, not_before=datetime.now(UTC))
                else:
                    changed = await store.finish(record.id, S(event))
                after = _model(expected, event)
                assert changed is (after is not expected)
                expected = after
                current = await store.get(record.id)
                assert current is not None and current.status is expected
        finally:
            await engine.dispose()

    asyncio.run(run())



async def test_decided_many_stores_each_once_and_says_which_were_new(store: CommandStore) -> None:
    commands = [_command(f"dev-{n}") for n in range(4)]
    first = [Decided(command=c, correlation_id=str(uuid.uuid4()), domain="d", status=S.SENT) for c in commands[:2]]
    assert await store.add_decided_many(first) == [True, True]
    refused = Decided(command=commands[3], correlation_id=str(uuid.uuid4()), domain="d", status=S.FAILED,
                      error=CommandError(code="NOT_AUTHORISED", message="no"))
    again = [first[1], Decided(command=commands[2], correlation_id=str(uuid.uuid4()), domain="d", status=S.SENT),
             refused, refused]
    assert await store.add_decided_many(again) == [False, True, True, False]  # redelivered; twice in one batch
    sent = await store.get(str(commands[2].command_id))
    assert sent is not None and sent.status is S.SENT and sent.attempts == 1 and sent.sent_at is not None
    failed = await store.get(str(commands[3].command_id))
    assert failed is not None and failed.status is S.FAILED and failed.error == refused.error


async def test_finish_many_ends_only_open_commands_of_their_device(store: CommandStore) -> None:
    commands = [_command(f"dev-{n}") for n in range(5)]
    await store.add_decided_many([Decided(command=c, correlation_id=str(uuid.uuid4()), domain="d", status=S.SENT)
                                  for c in commands])
    ids = [str(c.command_id) for c in commands]
    assert await store.finish(ids[4], S.TIMEOUT, error=CommandError(code="TIMEOUT", message="late"))
    outcomes = [Outcome(ids[0], "dev-0", S.SUCCEEDED, result={"on": True}),
                Outcome(ids[1], "dev-1", S.SUCCEEDED, result={"on": True}),
                Outcome(ids[2], "dev-2", S.SUCCEEDED, result={"on": False}),  # another outcome: its own statement
                Outcome(ids[3], "dev-x", S.SUCCEEDED, result={"on": True}),  # wrong device
                Outcome(ids[4], "dev-4", S.SUCCEEDED, result={"on": True}),  # final already
                Outcome(str(uuid.uuid4()), "dev-0", S.FAILED, error=CommandError(code="X", message="x"))]  # unknown
    records = await store.finish_many(outcomes)
    assert [r.status if r else None for r in records] == [S.SUCCEEDED, S.SUCCEEDED, S.SUCCEEDED, None, None, None]
    assert [r.result for r in records[:3] if r] == [{"on": True}, {"on": True}, {"on": False}]
    assert (await store.get(ids[3])).status is S.SENT  # type: ignore[union-attr]
    assert (await store.get(ids[4])).status is S.TIMEOUT  # type: ignore[union-attr]
    assert await store.finish_many(outcomes[:2]) == [None, None]  # a final status never changes
