"""Functional requests as stored: what an application asked, the commands it became, its outcome.

The domain layer records a request (with its command ids) before the commands go to the
core, and completes it once, by compare-and-set, when every command is final: any number
of domain and results processes can share the table. The commands themselves are the
core's (:mod:`cloud.core.commands`); this store only reads them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.schemas.command import CommandError, CommandStatus
from cloud.core.access import autocommit
from cloud.held import connect
from cloud.core.commands import CommandRecord, insert_ignoring
from cloud.core.models import CommandRow
from cloud.domains.models import FunctionalRequestRow
from cloud.group_commit import GroupCommit
from cloud.registry.models import utcnow

# A request's status until it is completed (then its commands' overall CommandStatus).
PENDING = "PENDING"


@dataclass(frozen=True, slots=True)
class NewFunctional:
    """A functional request to record: who asked what of which device, and its command ids."""

    correlation_id: str
    organisation: str
    device: str
    domain: str
    operation: str
    command_ids: Sequence[str]


@dataclass(frozen=True, slots=True)
class FunctionalRecord:
    """A functional request as stored: its commands, and its result once all are final."""

    correlation_id: str
    organisation: str
    device: str
    domain: str
    operation: str
    command_ids: list[str]
    status: str
    result: dict[str, Any] | None
    error: CommandError | None
    created_at: datetime
    completed_at: datetime | None


# Built once (building a statement costs more CPU than running it cached).
# A request and its commands in one round trip: one row per command (command columns NULL if none).
_WITH_COMMANDS = (select(*(c.label(f"f_{c.name}") for c in FunctionalRequestRow.__table__.columns),
                         *CommandRow.__table__.columns)
                  .select_from(FunctionalRequestRow.__table__.outerjoin(
                      CommandRow.__table__, CommandRow.correlation_id == FunctionalRequestRow.correlation_id))
                  .where(FunctionalRequestRow.correlation_id.in_(bindparam("cids", expanding=True))))
_CORRELATION = select(CommandRow.correlation_id).where(CommandRow.id == bindparam("cid"))
# One request completed (status, result, error and completed_at given as the columns' values).
_COMPLETE = (update(FunctionalRequestRow)
             .where(FunctionalRequestRow.correlation_id == bindparam("b_cid"), FunctionalRequestRow.status == PENDING)
             .returning(FunctionalRequestRow.correlation_id))


@dataclass(frozen=True, slots=True)
class Completion:
    """A functional request's outcome, to set once (:meth:`RequestStore.complete`)."""

    correlation_id: str
    status: CommandStatus
    result: dict[str, Any] | None
    error: CommandError | None

    def key(self) -> str:
        """Equal for completions one statement can set together (same status, result and error)."""
        return json.dumps([self.status.value, self.result, self.error.model_dump() if self.error else None],
                          sort_keys=True, default=str)


def _functional(row: Any) -> FunctionalRecord:
    return FunctionalRecord(
        correlation_id=row.f_correlation_id, organisation=row.f_organisation, device=row.f_device,
        domain=row.f_domain, operation=row.f_operation, command_ids=list(row.f_command_ids), status=row.f_status,
        result=row.f_result, error=CommandError.model_validate(row.f_error) if row.f_error else None,
        created_at=row.f_created_at, completed_at=row.f_completed_at)


class RequestStore:
    """Functional requests in the registry database (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        # Every call is one statement: autocommit spares the BEGIN and COMMIT round trips.
        self._auto = autocommit(engine)
        self._clock = clock
        self._adding: GroupCommit[NewFunctional, bool] | None = None
        self._add_returning = insert_ignoring(engine, FunctionalRequestRow).returning(FunctionalRequestRow.correlation_id)

    async def add(self, request: NewFunctional) -> bool:
        """Record a functional request; False if it was already recorded (a redelivery). Requests
        added while another insert runs share the next one (a group commit: the web API under a
        burst of single requests)."""
        if self._adding is None:
            self._adding = GroupCommit(self.add_each, name="requests-add")
        return await self._adding(request)

    async def add_many(self, requests: Sequence[NewFunctional]) -> int:
        """Record many functional requests; those recorded before are left as they are
        (``ON CONFLICT DO NOTHING``: no failed transaction to roll back). Returns how many were new."""
        return sum(await self.add_each(requests))

    async def add_each(self, requests: Sequence[NewFunctional]) -> list[bool]:
        """:meth:`add_many`, saying for each request whether it was new."""
        if not requests:
            return []
        now = self._clock()
        rows = [{"correlation_id": r.correlation_id, "organisation": r.organisation, "device": r.device,
                 "domain": r.domain, "operation": r.operation, "command_ids": list(r.command_ids),
                 "status": PENDING, "created_at": now} for r in requests]
        async with connect(self.engine) as conn:
            # One cached statement for many rows (SQLAlchemy's "insertmanyvalues": multi-row VALUES
            # in batches under each database's limits), not a multi-row construct compiled per call.
            new = set((await conn.execute(self._add_returning, rows)).scalars())
        answers = []
        for row in rows:  # a request twice in one batch is new once
            answers.append(row["correlation_id"] in new)
            new.discard(row["correlation_id"])
        return answers

    async def get(self, correlation_id: str) -> FunctionalRecord | None:
        """The request, or None if none was recorded under ``correlation_id``."""
        return (await self.with_commands(correlation_id))[0]

    async def with_commands(self, correlation_id: str) -> tuple[FunctionalRecord | None, list[CommandRecord]]:
        """The request and the commands stored for it so far, in one round trip."""
        return (await self.with_commands_many([correlation_id]))[0]

    async def with_commands_many(self, correlation_ids: Sequence[str]
                                 ) -> list[tuple[FunctionalRecord | None, list[CommandRecord]]]:
        """:meth:`with_commands` for many requests in one round trip (a group commit's read)."""
        async with connect(self.engine) as conn:
            rows = (await conn.execute(_WITH_COMMANDS, {"cids": list(set(correlation_ids))})).all()
        found: dict[str, tuple[FunctionalRecord, list[CommandRecord]]] = {}
        for row in rows:
            entry = found.get(row.f_correlation_id)
            if entry is None:
                entry = found[row.f_correlation_id] = (_functional(row), [])
            if row.id is not None:
                entry[1].append(CommandRecord.of(row))  # type: ignore[arg-type]
        return [found.get(cid, (None, [])) for cid in correlation_ids]

    async def complete(self, correlation_id: str, *, status: CommandStatus, result: dict[str, Any] | None,
                       error: CommandError | None) -> bool:
        """Set a functional request's outcome once; True only for the caller that did it."""
        return (await self.complete_many([Completion(correlation_id, status, result, error)]))[0]

    async def complete_many(self, completions: Sequence[Completion]) -> list[bool]:
        """:meth:`complete` for many requests (a group commit): one statement per distinct outcome,
        usually one for a whole batch; for each, True only if this call completed it."""
        now = self._clock()
        if len(completions) == 1:  # alone (an idle platform): the statement built once, not one per call
            one = completions[0]
            async with connect(self.engine) as conn:
                done_one = (await conn.execute(_COMPLETE, {
                    "b_cid": one.correlation_id, "status": one.status.value, "result": one.result,
                    "error": one.error.model_dump() if one.error else None, "completed_at": now})).first()
            return [done_one is not None]
        groups: dict[str, list[Completion]] = {}
        for completion in completions:
            groups.setdefault(completion.key(), []).append(completion)
        done: set[str] = set()
        async with connect(self.engine) as conn:
            for group in groups.values():
                first = group[0]
                ids = [c.correlation_id for c in group]
                statement = (update(FunctionalRequestRow)
                             .where(FunctionalRequestRow.correlation_id.in_(ids),
                                    FunctionalRequestRow.status == PENDING)
                             .values(status=first.status.value, result=first.result,
                                     error=first.error.model_dump() if first.error else None, completed_at=now)
                             .returning(FunctionalRequestRow.correlation_id))
                done.update((await conn.execute(statement)).scalars())
        answers = []
        for completion in completions:  # a request twice in one batch is completed once
            answers.append(completion.correlation_id in done)
            done.discard(completion.correlation_id)
        return answers

    async def recent(self, *, limit: int = 50, device: str | None = None) -> list[FunctionalRecord]:
        """The newest requests (of one device if given), newest first (the console's command list)."""
        query = select(FunctionalRequestRow).order_by(FunctionalRequestRow.created_at.desc()).limit(limit)
        if device is not None:
            query = query.where(FunctionalRequestRow.device == device)
        async with connect(self.engine) as conn:
            rows = (await conn.execute(query)).all()
        return [FunctionalRecord(correlation_id=r.correlation_id, organisation=r.organisation, device=r.device,
                                 domain=r.domain, operation=r.operation, command_ids=list(r.command_ids),
                                 status=r.status, result=r.result,
                                 error=CommandError.model_validate(r.error) if r.error else None,
                                 created_at=r.created_at, completed_at=r.completed_at) for r in rows]

    async def correlation_of(self, command_id: str) -> str | None:
        """The request a command belongs to, or None for a command the core does not know."""
        async with connect(self.engine) as conn:
            return (await conn.execute(_CORRELATION, {"cid": command_id})).scalar_one_or_none()
