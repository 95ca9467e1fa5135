"""The command lifecycle store: every command's status, guarded by compare-and-set in SQL.

A final status (SUCCEEDED, FAILED, TIMEOUT, EXPIRED) never changes: every transition is an
``UPDATE ... WHERE status IN (allowed sources)`` and the caller learns from the row count
whether it won. So any number of core processes can share the table, and a late answer
from a device cannot overwrite a timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from broker.schemas.command import CommandError, CommandStatus, GenericCommand
from cloud.core.access import autocommit
from cloud.core.models import CommandRow, DeviceLockRow, FunctionalRequestRow
from cloud.registry.models import utcnow

log = logging.getLogger(__name__)

S = CommandStatus
FINAL = (S.SUCCEEDED, S.FAILED, S.TIMEOUT, S.EXPIRED)
IN_FLIGHT = (S.SENT, S.DELIVERED)
PENDING = "PENDING"
# Rows per multi-row INSERT (10 columns each stays far below SQLite's bound-variable limit).
INSERT_CHUNK = 500


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """A command as stored."""

    id: str
    correlation_id: str
    organisation: str
    device: str
    domain: str
    name: str
    parameters: dict[str, Any]
    priority: int
    status: CommandStatus
    result: dict[str, Any] | None
    error: CommandError | None
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    completed_at: datetime | None
    expires_at: datetime

    @classmethod
    def of(cls, row: CommandRow) -> CommandRecord:
        return cls(id=row.id, correlation_id=row.correlation_id, organisation=row.organisation,
                   device=row.device, domain=row.domain, name=row.name, parameters=dict(row.parameters),
                   priority=row.priority, status=CommandStatus(row.status), result=row.result,
                   error=CommandError.model_validate(row.error) if row.error else None,
                   attempts=row.attempts, created_at=row.created_at, sent_at=row.sent_at,
                   completed_at=row.completed_at, expires_at=row.expires_at)

    @classmethod
    def of_new(cls, command: GenericCommand, *, correlation_id: str, domain: str,
               status: CommandStatus) -> CommandRecord:
        """The record :meth:`CommandStore.add_decided` just stored for ``command`` (no read back)."""
        assert command.expires_at is not None
        return cls(id=str(command.command_id), correlation_id=correlation_id,
                   organisation=command.organisation or "", device=command.device_id, domain=domain,
                   name=command.name, parameters=dict(command.parameters), priority=command.priority, status=status,
                   result=None, error=None, attempts=int(status is CommandStatus.SENT), created_at=command.issued_at,
                   sent_at=None, completed_at=None, expires_at=command.expires_at)

    def to_command(self) -> GenericCommand:
        """The command as it goes on the wire."""
        return GenericCommand(commandId=self.id, deviceId=self.device, name=self.name,
                              parameters=self.parameters, organisation=self.organisation,
                              priority=self.priority, issuedAt=self.created_at, expiresAt=self.expires_at)


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

    @classmethod
    def of(cls, row: FunctionalRequestRow) -> FunctionalRecord:
        return cls(correlation_id=row.correlation_id, organisation=row.organisation, device=row.device,
                   domain=row.domain, operation=row.operation, command_ids=list(row.command_ids),
                   status=row.status, result=row.result,
                   error=CommandError.model_validate(row.error) if row.error else None,
                   created_at=row.created_at, completed_at=row.completed_at)


# Statements of the results path, built once (building one costs more CPU than running it cached).
# A request and its commands in one round trip: one row per command (command columns NULL if none).
_SETTLEMENT = (select(*(c.label(f"f_{c.name}") for c in FunctionalRequestRow.__table__.columns),
                      *CommandRow.__table__.columns)
               .select_from(FunctionalRequestRow.__table__.outerjoin(
                   CommandRow.__table__, CommandRow.correlation_id == FunctionalRequestRow.correlation_id))
               .where(FunctionalRequestRow.correlation_id == bindparam("cid")))


# The core's per-command statements. Values named like columns are set from the parameters.
_FINISH = (update(CommandRow)
           .where(CommandRow.id == bindparam("b_id"), CommandRow.device == bindparam("b_device"),
                  CommandRow.status.in_([S.QUEUED.value, *(s.value for s in IN_FLIGHT)]))
           .returning(*CommandRow.__table__.columns))
_COMPLETE = update(FunctionalRequestRow).where(FunctionalRequestRow.correlation_id == bindparam("b_cid"),
                                               FunctionalRequestRow.status == PENDING)
_UNLOCK = delete(DeviceLockRow).where(DeviceLockRow.command_id == bindparam("b_id"))


@dataclass(frozen=True, slots=True)
class NewFunctional:
    """A functional request to record: who asked what of which device, and its command ids."""

    correlation_id: str
    organisation: str
    device: str
    domain: str
    operation: str
    command_ids: Sequence[str]


class CommandStore:
    """Commands and functional requests in the registry database (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # Single statements and plain reads run in autocommit: on PostgreSQL a transaction block
        # is two more round trips (BEGIN, COMMIT/ROLLBACK) than the statement itself.
        self._auto = autocommit(engine)
        self._reads = async_sessionmaker(self._auto, expire_on_commit=False)
        self._add_command = self._insert(CommandRow).on_conflict_do_nothing()
        self._clock = clock

    def now(self) -> datetime:
        return self._clock()

    # --- functional requests -------------------------------------------------------------------

    async def add_functional(self, *, correlation_id: str, organisation: str, device: str, domain: str,
                             operation: str, command_ids: list[str]) -> bool:
        """Record a functional request; False if it was already recorded (a redelivery)."""
        return await self.add_functionals([NewFunctional(correlation_id=correlation_id, organisation=organisation,
                                                         device=device, domain=domain, operation=operation,
                                                         command_ids=command_ids)]) == 1

    async def add_functionals(self, requests: Sequence[NewFunctional]) -> int:
        """Record many functional requests in one statement; those recorded before are left as
        they are (``ON CONFLICT DO NOTHING``: no failed transaction to roll back). Returns how
        many were new."""
        if not requests:
            return 0
        now = self.now()
        rows = [{"correlation_id": r.correlation_id, "organisation": r.organisation, "device": r.device,
                 "domain": r.domain, "operation": r.operation, "command_ids": list(r.command_ids),
                 "status": PENDING, "created_at": now} for r in requests]
        added = 0
        async with self._auto.connect() as conn:
            # Multi-row VALUES in chunks: one round trip each, an exact count, under SQLite's variable limit.
            for start in range(0, len(rows), INSERT_CHUNK):
                statement = self._insert(FunctionalRequestRow).values(rows[start:start + INSERT_CHUNK])
                done = await conn.execute(statement.on_conflict_do_nothing())
                added += done.rowcount  # type: ignore[attr-defined]
        return added

    def _insert(self, model: type) -> Any:
        """An INSERT for ``model`` that can say ON CONFLICT DO NOTHING on SQLite and PostgreSQL."""
        if self.engine.dialect.name == "postgresql":
            return pg_insert(model)
        return sqlite_insert(model)

    async def functional(self, correlation_id: str) -> FunctionalRecord | None:
        async with self._reads() as session:
            row = await session.get(FunctionalRequestRow, correlation_id)
            return FunctionalRecord.of(row) if row is not None else None

    async def complete_functional(self, correlation_id: str, *, status: CommandStatus,
                                  result: dict[str, Any] | None, error: CommandError | None) -> bool:
        """Set a functional request's outcome once; True only for the caller that did it."""
        async with self._auto.connect() as conn:
            done = await conn.execute(_COMPLETE, {
                "b_cid": correlation_id, "status": status.value, "result": result,
                "error": error.model_dump() if error else None, "completed_at": self.now()})
        return done.rowcount == 1  # type: ignore[attr-defined]

    # --- commands -------------------------------------------------------------------------------

    async def add(self, command: GenericCommand, *, correlation_id: str, domain: str,
                  default_ttl: timedelta = timedelta(minutes=5)) -> tuple[CommandRecord, bool]:
        """Store a new QUEUED command; on a redelivery return the stored one and False.

        It is not due (the pump will not send it) until :meth:`make_due`: the core first
        checks the organisation's authorisation.
        """
        expires = command.expires_at or self.now() + default_ttl
        row = CommandRow(id=str(command.command_id), correlation_id=correlation_id,
                         organisation=command.organisation or "", device=command.device_id, domain=domain,
                         name=command.name, parameters=command.parameters, priority=command.priority,
                         status=S.QUEUED.value, attempts=0, created_at=command.issued_at,
                         expires_at=expires, not_before=expires)
        try:
            async with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            existing = await self.get(str(command.command_id))
            assert existing is not None
            return existing, False
        return CommandRecord.of(row), True

    async def add_decided(self, command: GenericCommand, *, correlation_id: str, domain: str,
                          status: CommandStatus, error: CommandError | None = None,
                          default_ttl: timedelta = timedelta(minutes=5)) -> bool:
        """Store a new command already SENT (authorised, about to be published) or already final
        (refused) in one statement; False if it was stored before (a redelivery: look it up).

        The fast path for devices that take commands concurrently: no QUEUED row to update twice.
        """
        now = self.now()
        sent = status is S.SENT
        if not sent and not status.final:
            raise ValueError(f"a command is stored decided as SENT or final, not {status}")
        row = {"id": str(command.command_id), "correlation_id": correlation_id,
               "organisation": command.organisation or "", "device": command.device_id, "domain": domain,
               "name": command.name, "parameters": command.parameters, "priority": command.priority,
               "status": status.value, "attempts": int(sent), "created_at": command.issued_at,
               "sent_at": now if sent else None, "completed_at": None if sent else now,
               "error": error.model_dump() if error else None, "result": None,
               "expires_at": command.expires_at or now + default_ttl,
               "not_before": now}
        async with self._auto.connect() as conn:
            done = await conn.execute(self._add_command, row)
        return done.rowcount == 1  # type: ignore[attr-defined]

    async def finish_returning(self, command_id: str, status: CommandStatus, *, device: str,
                               result: dict[str, Any] | None = None,
                               error: CommandError | None = None) -> CommandRecord | None:
        """Like :meth:`finish` for a command of ``device``, in one statement returning the command
        as it now is; None if it is unknown, of another device, or final already."""
        if not status.final:
            raise ValueError(f"{status} is not a final status")
        values = {"b_id": command_id, "b_device": device, "status": status.value, "result": result,
                  "error": error.model_dump() if error else None, "completed_at": self.now()}
        async with self._auto.connect() as conn:
            row = (await conn.execute(_FINISH, values)).first()
        return CommandRecord.of(row) if row is not None else None  # type: ignore[arg-type]

    async def settlement(self, correlation_id: str) -> tuple[FunctionalRecord | None, list[CommandRecord]]:
        """A functional request and its commands, read on one connection (the results path)."""
        async with self._auto.connect() as conn:
            rows = (await conn.execute(_SETTLEMENT, {"cid": correlation_id})).all()
        if not rows:
            return None, []
        head = rows[0]
        request = FunctionalRecord(
            correlation_id=head.f_correlation_id, organisation=head.f_organisation, device=head.f_device,
            domain=head.f_domain, operation=head.f_operation, command_ids=list(head.f_command_ids),
            status=head.f_status, result=head.f_result,
            error=CommandError.model_validate(head.f_error) if head.f_error else None,
            created_at=head.f_created_at, completed_at=head.f_completed_at)
        if request.status != PENDING:
            return request, []
        return request, [CommandRecord.of(r) for r in rows if r.id is not None]  # type: ignore[arg-type]

    async def get(self, command_id: str) -> CommandRecord | None:
        async with self._reads() as session:
            row = await session.get(CommandRow, command_id)
            return CommandRecord.of(row) if row is not None else None

    async def of_request(self, correlation_id: str) -> list[CommandRecord]:
        """The commands of one functional request, oldest first."""
        async with self._reads() as session:
            rows = await session.scalars(select(CommandRow).where(CommandRow.correlation_id == correlation_id)
                                         .order_by(CommandRow.created_at, CommandRow.id))
            return [CommandRecord.of(r) for r in rows]

    async def make_due(self, command_id: str) -> bool:
        """Let the pump send a queued command from now on (it was authorised)."""
        return await self._cas(command_id, (S.QUEUED,), CommandRow.not_before > self.now(), not_before=self.now())

    async def mark_sent(self, command_id: str) -> bool:
        """QUEUED -> SENT (counting the attempt) if still queued and not yet expired."""
        now = self.now()
        return await self._cas(command_id, (S.QUEUED,), CommandRow.expires_at > now,
                               status=S.SENT.value, sent_at=now, attempts=CommandRow.attempts + 1)

    async def mark_delivered(self, command_id: str) -> bool:
        """SENT -> DELIVERED: the concentrator has it and is working on it."""
        return await self._cas(command_id, (S.SENT,), status=S.DELIVERED.value)

    async def requeue(self, command_id: str, *, not_before: datetime) -> bool:
        """SENT/DELIVERED -> QUEUED for another attempt after a transient failure."""
        return await self._cas(command_id, IN_FLIGHT, status=S.QUEUED.value, not_before=not_before)

    async def finish(self, command_id: str, status: CommandStatus, *, result: dict[str, Any] | None = None,
                     error: CommandError | None = None) -> bool:
        """Any non-final status -> ``status`` (final); False if it was final already."""
        if not status.final:
            raise ValueError(f"{status} is not a final status")
        return await self._cas(command_id, (S.QUEUED, *IN_FLIGHT), status=status.value, result=result,
                               error=error.model_dump() if error else None, completed_at=self.now())

    async def _cas(self, command_id: str, sources: Iterable[CommandStatus], *extra: Any, **values: Any) -> bool:
        async with self._auto.connect() as session:
            done = await session.execute(
                update(CommandRow)
                .where(CommandRow.id == command_id, CommandRow.status.in_([s.value for s in sources]), *extra)
                .values(**values).execution_options(synchronize_session=False))
        return done.rowcount == 1  # type: ignore[attr-defined]

    async def due(self, *, limit: int = 100) -> list[CommandRecord]:
        """Queued commands whose wait is over, most urgent (lowest priority number) first."""
        now = self.now()
        async with self._reads() as session:
            rows = await session.scalars(
                select(CommandRow).where(CommandRow.status == S.QUEUED.value, CommandRow.not_before <= now)
                .order_by(CommandRow.priority, CommandRow.created_at).limit(limit))
            return [CommandRecord.of(r) for r in rows]

    async def overdue(self, *, limit: int = 500) -> list[CommandRecord]:
        """Non-final commands whose time-to-live has passed, the longest overdue first, at most ``limit``.

        Answered from the (status, expires_at) index: its cost follows the overdue commands
        found, not the open ones (the pump runs it twice a second in every core process).
        """
        now = self.now()
        async with self._reads() as session:
            rows = await session.scalars(
                select(CommandRow).where(CommandRow.status.in_([S.QUEUED.value, *(s.value for s in IN_FLIGHT)]),
                                         CommandRow.expires_at <= now)
                .order_by(CommandRow.expires_at).limit(limit))
            return [CommandRecord.of(r) for r in rows]

    # --- one command at a time per device --------------------------------------------------------

    async def lock_device(self, device: str, command_id: str) -> bool:
        """Take ``device`` for ``command_id``; True if taken (or already held by it)."""
        try:
            async with self._sessions.begin() as session:
                session.add(DeviceLockRow(device=device, command_id=command_id, acquired_at=self.now()))
        except IntegrityError:
            async with self._reads() as session:
                holder = await session.scalar(select(DeviceLockRow.command_id).where(DeviceLockRow.device == device))
            return holder == command_id
        return True

    async def unlock_device(self, device: str, command_id: str) -> None:
        """Release ``device`` if ``command_id`` holds it."""
        async with self._sessions.begin() as session:
            await session.execute(delete(DeviceLockRow).where(DeviceLockRow.device == device,
                                                              DeviceLockRow.command_id == command_id))

    async def unlock_command(self, command_id: str) -> bool:
        """Release whatever device ``command_id`` holds; True if it held one (one statement)."""
        async with self._auto.connect() as conn:
            done = await conn.execute(_UNLOCK, {"b_id": command_id})
        return done.rowcount == 1  # type: ignore[attr-defined]

    async def release_stale_locks(self) -> int:
        """Drop locks whose command is final or gone (a core process died holding them)."""
        final = [s.value for s in FINAL]
        async with self._sessions.begin() as session:
            # Correlated per lock (a primary-key lookup each): the lock table is small, the command table is not.
            live = select(CommandRow.id).where(CommandRow.id == DeviceLockRow.command_id,
                                               CommandRow.status.not_in(final))
            done = await session.execute(delete(DeviceLockRow).where(~live.exists())
                                         .execution_options(synchronize_session=False))
        return done.rowcount or 0  # type: ignore[attr-defined]
