"""The command lifecycle store: every command's status, guarded by compare-and-set in SQL.

A final status (SUCCEEDED, FAILED, TIMEOUT, EXPIRED) never changes: every transition is an
``UPDATE ... WHERE status IN (allowed sources)`` and the caller learns from the row count
whether it won. So any number of core processes can share the table, and a late answer
from a device cannot overwrite a timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from broker.schemas.command import CommandError, CommandStatus, GenericCommand
from cloud.core.models import CommandRow, DeviceLockRow, FunctionalRequestRow
from cloud.registry.models import utcnow

log = logging.getLogger(__name__)

S = CommandStatus
FINAL = (S.SUCCEEDED, S.FAILED, S.TIMEOUT, S.EXPIRED)
IN_FLIGHT = (S.SENT, S.DELIVERED)
PENDING = "PENDING"


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


class CommandStore:
    """Commands and functional requests in the registry database (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

    def now(self) -> datetime:
        return self._clock()

    # --- functional requests -------------------------------------------------------------------

    async def add_functional(self, *, correlation_id: str, organisation: str, device: str, domain: str,
                             operation: str, command_ids: list[str]) -> bool:
        """Record a functional request; False if it was already recorded (a redelivery)."""
        row = FunctionalRequestRow(correlation_id=correlation_id, organisation=organisation, device=device,
                                   domain=domain, operation=operation, command_ids=command_ids,
                                   status=PENDING, created_at=self.now())
        try:
            async with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            return False
        return True

    async def functional(self, correlation_id: str) -> FunctionalRecord | None:
        async with self._sessions() as session:
            row = await session.get(FunctionalRequestRow, correlation_id)
            return FunctionalRecord.of(row) if row is not None else None

    async def complete_functional(self, correlation_id: str, *, status: CommandStatus,
                                  result: dict[str, Any] | None, error: CommandError | None) -> bool:
        """Set a functional request's outcome once; True only for the caller that did it."""
        async with self._sessions.begin() as session:
            done = await session.execute(
                update(FunctionalRequestRow)
                .where(FunctionalRequestRow.correlation_id == correlation_id,
                       FunctionalRequestRow.status == PENDING)
                .values(status=status.value, result=result,
                        error=error.model_dump() if error else None, completed_at=self.now())
                .execution_options(synchronize_session=False))
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

    async def get(self, command_id: str) -> CommandRecord | None:
        async with self._sessions() as session:
            row = await session.get(CommandRow, command_id)
            return CommandRecord.of(row) if row is not None else None

    async def of_request(self, correlation_id: str) -> list[CommandRecord]:
        """The commands of one functional request, oldest first."""
        async with self._sessions() as session:
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
        async with self._sessions.begin() as session:
            done = await session.execute(
                update(CommandRow)
                .where(CommandRow.id == command_id, CommandRow.status.in_([s.value for s in sources]), *extra)
                .values(**values).execution_options(synchronize_session=False))
        return done.rowcount == 1  # type: ignore[attr-defined]

    async def due(self, *, limit: int = 100) -> list[CommandRecord]:
        """Queued commands whose wait is over, most urgent (lowest priority number) first."""
        now = self.now()
        async with self._sessions() as session:
            rows = await session.scalars(
                select(CommandRow).where(CommandRow.status == S.QUEUED.value, CommandRow.not_before <= now)
                .order_by(CommandRow.priority, CommandRow.created_at).limit(limit))
            return [CommandRecord.of(r) for r in rows]

    async def overdue(self, *, limit: int = 500) -> list[CommandRecord]:
        """Non-final commands whose time-to-live has passed."""
        now = self.now()
        async with self._sessions() as session:
            rows = await session.scalars(
                select(CommandRow).where(CommandRow.status.in_([S.QUEUED.value, *(s.value for s in IN_FLIGHT)]),
                                         CommandRow.expires_at <= now).limit(limit))
            return [CommandRecord.of(r) for r in rows]

    # --- one command at a time per device --------------------------------------------------------

    async def lock_device(self, device: str, command_id: str) -> bool:
        """Take ``device`` for ``command_id``; True if taken (or already held by it)."""
        try:
            async with self._sessions.begin() as session:
                session.add(DeviceLockRow(device=device, command_id=command_id, acquired_at=self.now()))
        except IntegrityError:
            async with self._sessions() as session:
                holder = await session.scalar(select(DeviceLockRow.command_id).where(DeviceLockRow.device == device))
            return holder == command_id
        return True

    async def unlock_device(self, device: str, command_id: str) -> None:
        """Release ``device`` if ``command_id`` holds it."""
        async with self._sessions.begin() as session:
            await session.execute(delete(DeviceLockRow).where(DeviceLockRow.device == device,
                                                              DeviceLockRow.command_id == command_id))

    async def release_stale_locks(self) -> int:
        """Drop locks whose command is final or gone (a core process died holding them)."""
        final = [s.value for s in FINAL]
        async with self._sessions.begin() as session:
            live = select(CommandRow.id).where(CommandRow.status.not_in(final))
            done = await session.execute(delete(DeviceLockRow).where(DeviceLockRow.command_id.not_in(live))
                                         .execution_options(synchronize_session=False))
        return done.rowcount or 0  # type: ignore[attr-defined]
