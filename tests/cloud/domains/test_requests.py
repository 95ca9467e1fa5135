"""The functional request store on SQLite and PostgreSQL: recorded once, completed once, read
with the commands the core stored for it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from broker.schemas.command import CommandError, CommandStatus, GenericCommand
from cloud.core.commands import CommandStore
from cloud.domains.requests import PENDING, Completion, NewFunctional, RequestStore
from cloud.migrations import migrate
from cloud.registry.db import create_engine

S = CommandStatus


def _new(correlation: str, *, command_ids: list[str] | None = None) -> NewFunctional:
    return NewFunctional(correlation_id=correlation, organisation="o", device="d", domain="dm", operation="op",
                         command_ids=command_ids if command_ids is not None else ["a", "b"])


@pytest.fixture
async def stores(registry_url: str) -> AsyncIterator[tuple[RequestStore, CommandStore]]:
    await migrate(registry_url)
    engine = create_engine(registry_url)
    try:
        yield RequestStore(engine), CommandStore(engine)
    finally:
        await engine.dispose()


async def test_functional_request_completes_once(stores: tuple[RequestStore, CommandStore]) -> None:
    requests, _ = stores
    correlation = str(uuid.uuid4())
    assert await requests.add(_new(correlation))
    assert not await requests.add(_new(correlation))
    won = await asyncio.gather(*(requests.complete(correlation, status=S.SUCCEEDED, result={"i": i}, error=None)
                                 for i in range(5)))
    assert won.count(True) == 1
    found = await requests.get(correlation)
    assert found is not None and found.status == "SUCCEEDED" and found.command_ids == ["a", "b"]
    assert found.result in ({"i": i} for i in range(5)) and found.completed_at is not None


async def test_many_are_recorded_in_chunks_and_only_new_ones_count(stores: tuple[RequestStore, CommandStore]) -> None:
    requests, _ = stores
    ids = [str(uuid.uuid4()) for _ in range(1200)]  # more than one multi-row INSERT
    assert await requests.add_many([_new(c) for c in ids[:700]]) == 700
    assert await requests.add_many([_new(c) for c in ids]) == 500
    assert await requests.add_many([]) == 0
    assert all(r is not None and r.status == PENDING for r in [await requests.get(c) for c in ids[::97]])


async def test_read_with_its_commands_and_found_by_command(stores: tuple[RequestStore, CommandStore]) -> None:
    requests, commands = stores
    correlation = str(uuid.uuid4())
    now = datetime.now(UTC)
    sent = [GenericCommand(deviceId="d", name=name, organisation="o", issuedAt=now,
                           expiresAt=now + timedelta(minutes=1)) for name in ("set_relay", "set_dim_level")]
    await requests.add(_new(correlation, command_ids=[str(c.command_id) for c in sent]))
    assert await requests.with_commands(correlation) == (await requests.get(correlation), [])
    for command in sent:
        await commands.add(command, correlation_id=correlation, domain="dm")
    error = CommandError(code="X", message="failed")
    assert await commands.finish(str(sent[0].command_id), S.FAILED, error=error)

    request, found = await requests.with_commands(correlation)
    assert request is not None and request.status == PENDING
    assert {c.id: (c.name, c.status, c.error) for c in found} == {
        str(sent[0].command_id): ("set_relay", S.FAILED, error),
        str(sent[1].command_id): ("set_dim_level", S.QUEUED, None)}
    assert await requests.correlation_of(str(sent[1].command_id)) == correlation
    assert await requests.correlation_of(str(uuid.uuid4())) is None
    assert await requests.with_commands(str(uuid.uuid4())) == (None, [])


async def test_many_read_and_completed_at_once_each_once(stores: tuple[RequestStore, CommandStore]) -> None:
    requests, _ = stores
    ids = [str(uuid.uuid4()) for _ in range(4)]
    await requests.add_many([_new(cid, command_ids=[]) for cid in ids[:3]])
    read = await requests.with_commands_many([ids[2], ids[3], ids[0]])
    assert [r.correlation_id if r else None for r, _ in read] == [ids[2], None, ids[0]]
    error = CommandError(code="FAILED", message="no")
    done = await requests.complete_many([Completion(ids[0], S.SUCCEEDED, {"on": True}, None),
                                         Completion(ids[1], S.FAILED, None, error),
                                         Completion(ids[1], S.FAILED, None, error),  # twice: completed once
                                         Completion(ids[3], S.SUCCEEDED, {"on": True}, None)])  # never recorded
    assert done == [True, True, False, False]
    assert await requests.complete_many([Completion(ids[0], S.FAILED, None, error)]) == [False]
    first, second = await requests.get(ids[0]), await requests.get(ids[1])
    assert first is not None and first.status == "SUCCEEDED" and first.result == {"on": True}
    assert second is not None and second.status == "FAILED" and second.error == error
    assert (await requests.get(ids[2])).status == PENDING  # type: ignore[union-attr]


async def test_requests_added_together_share_inserts_and_each_learns_if_it_was_new(
        stores: tuple[RequestStore, CommandStore]) -> None:
    requests, _ = stores
    ids = [str(uuid.uuid4()) for _ in range(30)]
    assert await requests.add(_new(ids[0]))
    added = await asyncio.gather(*(requests.add(_new(cid)) for cid in [*ids, ids[5]]))
    assert added.count(True) == 29 and added[0] is False  # recorded before
    assert sorted(added[5::25]) == [False, True]  # asked twice at once: new once
    assert all([await requests.get(cid) for cid in ids])
