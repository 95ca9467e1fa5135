"""The command lifecycle store: every command's status, guarded by compare-and-set in SQL.

Every transition is an ``UPDATE ... WHERE status IN (its sources)``, the sources read from
the one transition table (:mod:`cloud.core.lifecycle`), and the caller learns from the row
count whether it won. So any number of core processes can share the table, and a final
status never changes: a late answer from a device cannot overwrite a timeout.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, delete, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from broker.schemas.command import CommandError, CommandStatus, GenericCommand
from cloud.core import lifecycle
from cloud.core.access import autocommit
from cloud.held import connect
from cloud.core.lifecycle import FINAL, OPEN
from cloud.core.models import CommandRow, DeviceLockRow
from cloud.registry.models import utcnow

log = logging.getLogger(__name__)

S = CommandStatus


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
class Decided:
    """A new command already decided (:meth:`CommandStore.add_decided`), for a group commit."""

    command: GenericCommand
    correlation_id: str
    domain: str
    status: CommandStatus
    error: CommandError | None = None
    default_ttl: timedelta = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A device's final answer to one command (:meth:`CommandStore.finish_returning`), for a group commit."""

    command_id: str
    device: str
    status: CommandStatus
    result: dict[str, Any] | None = None
    error: CommandError | None = None

    def key(self) -> str:
        """Equal for outcomes one statement can set together (same status, result and error)."""
        return json.dumps([self.status.value, self.result, self.error.model_dump() if self.error else None],
                          sort_keys=True, default=str)


# The core's per-command statements. Values named like columns are set from the parameters.
# Every final status is reached from the same statuses (the open ones), so one statement ends
# a command in any of them.
_FINISH = (update(CommandRow)
           .where(CommandRow.id == bindparam("b_id"), CommandRow.device == bindparam("b_device"),
                  CommandRow.status.in_([s.value for s in OPEN]))
           .returning(*CommandRow.__table__.columns))
_UNLOCK = delete(DeviceLockRow).where(DeviceLockRow.command_id == bindparam("b_id"))
_GET = select(*CommandRow.__table__.columns).where(CommandRow.id == bindparam("b_id"))
# The pump's reads, twice a second in every core process and after every sequential command.
_DUE = (select(*CommandRow.__table__.columns)
        .where(CommandRow.status == S.QUEUED.value, CommandRow.not_before <= bindparam("b_now"))
        .order_by(CommandRow.priority, CommandRow.created_at).limit(bindparam("b_limit")))
_OVERDUE = (select(*CommandRow.__table__.columns)
            .where(CommandRow.status.in_([s.value for s in OPEN]), CommandRow.expires_at <= bindparam("b_now"))
            .order_by(CommandRow.expires_at).limit(bindparam("b_limit")))
# Correlated per lock (a primary-key lookup each): the lock table is small, the command table is not.
_STALE_LOCKS = delete(DeviceLockRow).where(~select(CommandRow.id).where(
    CommandRow.id == DeviceLockRow.command_id, CommandRow.status.not_in([s.value for s in FINAL])).exists())
_HOLDER = select(DeviceLockRow.command_id).where(DeviceLockRow.device == bindparam("b_device"))
_UNLOCK_DEVICE = delete(DeviceLockRow).where(DeviceLockRow.device == bindparam("b_device"),
                                             DeviceLockRow.command_id == bindparam("b_id"))
# A queued command made due (not a transition: it only becomes due), and QUEUED -> SENT.
_MAKE_DUE = (update(CommandRow)
             .where(CommandRow.id == bindparam("b_id"), CommandRow.status == S.QUEUED.value,
                    CommandRow.not_before > bindparam("b_now"))
             .values(not_before=bindparam("b_now")))
_MARK_SENT = (update(CommandRow)
              .where(CommandRow.id == bindparam("b_id"),
                     CommandRow.status.in_([s.value for s in lifecycle.sources(S.SENT)]),
                     CommandRow.expires_at > bindparam("b_now"))
              .values(status=S.SENT.value, sent_at=bindparam("b_now"), attempts=CommandRow.attempts + 1))


def insert_ignoring(engine: AsyncEngine, model: type) -> Any:
    """An ``INSERT ... ON CONFLICT DO NOTHING`` for ``model`` on SQLite or PostgreSQL (a redelivery
    stores nothing and fails no transaction)."""
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    return insert(model).on_conflict_do_nothing()


class CommandStore:
    """Commands and device locks in the registry database (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        # Single statements and plain reads run in autocommit: on PostgreSQL a transaction block
        # is two more round trips (BEGIN, COMMIT/ROLLBACK) than the statement itself.
        self._auto = autocommit(engine)
        self._reads = async_sessionmaker(self._auto, expire_on_commit=False)
        self._add_command = insert_ignoring(engine, CommandRow)
        self._add_returning = self._add_command.returning(CommandRow.id)
        self._add_lock = insert_ignoring(engine, DeviceLockRow)
        self._clock = clock

    def now(self) -> datetime:
        return self._clock()

    # --- commands -------------------------------------------------------------------------------

    async def add(self, command: GenericCommand, *, correlation_id: str, domain: str,
                  default_ttl: timedelta = timedelta(minutes=5), due: bool = False) -> tuple[CommandRecord, bool]:
        """Store a new QUEUED command; on a redelivery return the stored one and False.

        It is not due (the pump will not send it) until :meth:`make_due`: the core first
        checks the organisation's authorisation. ``due``: it was checked already, due at once.
        """
        now = self.now()
        expires = command.expires_at or now + default_ttl
        row = {"id": str(command.command_id), "correlation_id": correlation_id,
               "organisation": command.organisation or "", "device": command.device_id, "domain": domain,
               "name": command.name, "parameters": command.parameters, "priority": command.priority,
               "status": S.QUEUED.value, "attempts": 0, "created_at": command.issued_at,
               "sent_at": None, "completed_at": None, "result": None, "error": None,
               "expires_at": expires, "not_before": now if due else expires}
        # One statement in autocommit (ON CONFLICT DO NOTHING: a redelivery stores nothing), not a
        # transaction block: on PostgreSQL that was three round trips.
        async with connect(self.engine) as conn:
            stored = (await conn.execute(self._add_returning, row)).first()
        if stored is None:
            existing = await self.get(str(command.command_id))
            assert existing is not None
            return existing, False
        return CommandRecord.of(SimpleNamespace(**row)), True  # type: ignore[arg-type]

    async def add_decided(self, command: GenericCommand, *, correlation_id: str, domain: str,
                          status: CommandStatus, error: CommandError | None = None,
                          default_ttl: timedelta = timedelta(minutes=5)) -> bool:
        """Store a new command already SENT (authorised, about to be published) or already final
        (refused) in one statement; False if it was stored before (a redelivery: look it up).

        The fast path for devices that take commands concurrently: no QUEUED row to update twice.
        """
        lifecycle.check_new(status)
        now = self.now()
        sent = status is S.SENT
        row = {"id": str(command.command_id), "correlation_id": correlation_id,
               "organisation": command.organisation or "", "device": command.device_id, "domain": domain,
               "name": command.name, "parameters": command.parameters, "priority": command.priority,
               "status": status.value, "attempts": int(sent), "created_at": command.issued_at,
               "sent_at": now if sent else None, "completed_at": None if sent else now,
               "error": error.model_dump() if error else None, "result": None,
               "expires_at": command.expires_at or now + default_ttl,
               "not_before": now}
        async with connect(self.engine) as conn:
            done = await conn.execute(self._add_command, row)
        return done.rowcount == 1  # type: ignore[attr-defined]

    async def add_decided_many(self, decided: Sequence[Decided]) -> list[bool]:
        """:meth:`add_decided` for many commands in one statement per chunk (a group commit);
        for each, True if it is new, False if it was stored before."""
        now = self.now()
        rows = [self._decided_row(d, now) for d in decided]
        async with connect(self.engine) as conn:
            # One statement executed for many rows: compiled once and cached, SQLAlchemy sends the
            # rows as multi-row VALUES ("insertmanyvalues"). A multi-row .values() construct is
            # compiled afresh for every batch, which cost more CPU than the rows themselves.
            new = set((await conn.execute(self._add_returning, rows)).scalars())
        answers = []
        for row in rows:  # a command twice in one batch is new once
            answers.append(row["id"] in new)
            new.discard(row["id"])
        return answers

    @staticmethod
    def _decided_row(decided: Decided, now: datetime) -> dict[str, Any]:
        lifecycle.check_new(decided.status)
        command, sent = decided.command, decided.status is S.SENT
        return {"id": str(command.command_id), "correlation_id": decided.correlation_id,
                "organisation": command.organisation or "", "device": command.device_id, "domain": decided.domain,
                "name": command.name, "parameters": command.parameters, "priority": command.priority,
                "status": decided.status.value, "attempts": int(sent), "created_at": command.issued_at,
                "sent_at": now if sent else None, "completed_at": None if sent else now,
                "error": decided.error.model_dump() if decided.error else None, "result": None,
                "expires_at": command.expires_at or now + decided.default_ttl, "not_before": now}

    async def finish_many(self, outcomes: Sequence[Outcome]) -> list[CommandRecord | None]:
        """:meth:`finish_returning` for many commands (a group commit): one statement for each
        distinct outcome (status, result, error), usually one for a whole batch of a fleet's answers."""
        if len(outcomes) == 1:  # alone (an idle platform): the statement built once, not one built per call
            one = outcomes[0]
            return [await self.finish_returning(one.command_id, one.status, device=one.device, result=one.result,
                                                error=one.error)]
        groups: dict[str, list[int]] = {}
        for index, outcome in enumerate(outcomes):
            lifecycle.ends_from(outcome.status)
            groups.setdefault(outcome.key(), []).append(index)
        found: dict[tuple[str, str], CommandRecord] = {}
        now = self.now()
        async with connect(self.engine) as conn:
            for indexes in groups.values():
                first = outcomes[indexes[0]]
                statement = (update(CommandRow)
                             .where(tuple_(CommandRow.id, CommandRow.device).in_(
                                 [(outcomes[i].command_id, outcomes[i].device) for i in indexes]),
                                 CommandRow.status.in_([s.value for s in OPEN]))
                             .values(status=first.status.value, result=first.result,
                                     error=first.error.model_dump() if first.error else None, completed_at=now)
                             .returning(*CommandRow.__table__.columns)
                             .execution_options(synchronize_session=False))
                for row in await conn.execute(statement):
                    found[(row.id, row.device)] = CommandRecord.of(row)  # type: ignore[arg-type]
        return [found.get((o.command_id, o.device)) for o in outcomes]

    async def finish_returning(self, command_id: str, status: CommandStatus, *, device: str,
                               result: dict[str, Any] | None = None,
                               error: CommandError | None = None) -> CommandRecord | None:
        """Like :meth:`finish` for a command of ``device``, in one statement returning the command
        as it now is; None if it is unknown, of another device, or final already."""
        lifecycle.ends_from(status)
        values = {"b_id": command_id, "b_device": device, "status": status.value, "result": result,
                  "error": error.model_dump() if error else None, "completed_at": self.now()}
        async with connect(self.engine) as conn:
            row = (await conn.execute(_FINISH, values)).first()
        return CommandRecord.of(row) if row is not None else None  # type: ignore[arg-type]

    async def get(self, command_id: str) -> CommandRecord | None:
        async with connect(self.engine) as conn:
            row = (await conn.execute(_GET, {"b_id": command_id})).first()
        return CommandRecord.of(row) if row is not None else None  # type: ignore[arg-type]

    async def of_request(self, correlation_id: str) -> list[CommandRecord]:
        """The commands of one functional request, oldest first."""
        async with self._reads() as session:
            rows = await session.scalars(select(CommandRow).where(CommandRow.correlation_id == correlation_id)
                                         .order_by(CommandRow.created_at, CommandRow.id))
            return [CommandRecord.of(r) for r in rows]

    async def make_due(self, command_id: str) -> bool:
        """Let the pump send a queued command from now on (it was authorised)."""
        return await self._changed(_MAKE_DUE, {"b_id": command_id, "b_now": self.now()})

    async def mark_sent(self, command_id: str) -> bool:
        """QUEUED -> SENT (counting the attempt) if still queued and not yet expired."""
        return await self._changed(_MARK_SENT, {"b_id": command_id, "b_now": self.now()})

    async def _changed(self, statement: Any, values: dict[str, Any]) -> bool:
        """Run a prebuilt compare-and-set; True if it changed the row."""
        async with connect(self.engine) as conn:
            done = await conn.execute(statement, values)
        return done.rowcount == 1  # type: ignore[attr-defined]

    async def mark_delivered(self, command_id: str) -> bool:
        """SENT -> DELIVERED: the concentrator has it and is working on it."""
        return await self._move(command_id, S.DELIVERED)

    async def requeue(self, command_id: str, *, not_before: datetime) -> bool:
        """SENT/DELIVERED -> QUEUED for another attempt after a transient failure."""
        return await self._move(command_id, S.QUEUED, not_before=not_before)

    async def finish(self, command_id: str, status: CommandStatus, *, result: dict[str, Any] | None = None,
                     error: CommandError | None = None) -> bool:
        """Any non-final status -> ``status`` (final); False if it was final already."""
        return await self._update(command_id, lifecycle.ends_from(status), status=status.value, result=result,
                                  error=error.model_dump() if error else None, completed_at=self.now())

    async def _move(self, command_id: str, target: CommandStatus, *extra: Any, **values: Any) -> bool:
        """``target`` if the command is in one of the statuses the lifecycle lets it come from."""
        return await self._update(command_id, lifecycle.sources(target), *extra, status=target.value, **values)

    async def _update(self, command_id: str, sources: tuple[CommandStatus, ...], *extra: Any, **values: Any) -> bool:
        async with connect(self.engine) as session:
            done = await session.execute(
                update(CommandRow)
                .where(CommandRow.id == command_id, CommandRow.status.in_([s.value for s in sources]), *extra)
                .values(**values).execution_options(synchronize_session=False))
        return done.rowcount == 1  # type: ignore[attr-defined]

    async def due(self, *, limit: int = 100) -> list[CommandRecord]:
        """Queued commands whose wait is over, most urgent (lowest priority number) first."""
        return await self._records(_DUE, {"b_now": self.now(), "b_limit": limit})

    async def overdue(self, *, limit: int = 500) -> list[CommandRecord]:
        """Non-final commands whose time-to-live has passed, the longest overdue first, at most ``limit``.

        Answered from the (status, expires_at) index: its cost follows the overdue commands
        found, not the open ones (the pump runs it twice a second in every core process).
        """
        return await self._records(_OVERDUE, {"b_now": self.now(), "b_limit": limit})

    async def _records(self, statement: Any, values: dict[str, Any]) -> list[CommandRecord]:
        # A prebuilt statement on an autocommit connection: no ORM session, no BEGIN/ROLLBACK.
        async with connect(self.engine) as conn:
            rows = (await conn.execute(statement, values)).all()
        return [CommandRecord.of(r) for r in rows]  # type: ignore[arg-type]

    # --- one command at a time per device --------------------------------------------------------

    async def lock_device(self, device: str, command_id: str) -> bool:
        """Take ``device`` for ``command_id``; True if taken (or already held by it)."""
        async with connect(self.engine) as conn:
            taken = await conn.execute(self._add_lock, {"device": device, "command_id": command_id,
                                                        "acquired_at": self.now()})
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                return True
            holder = (await conn.execute(_HOLDER, {"b_device": device})).scalar_one_or_none()
        return holder == command_id

    async def unlock_device(self, device: str, command_id: str) -> None:
        """Release ``device`` if ``command_id`` holds it."""
        async with connect(self.engine) as conn:
            await conn.execute(_UNLOCK_DEVICE, {"b_device": device, "b_id": command_id})

    async def unlock_command(self, command_id: str) -> bool:
        """Release whatever device ``command_id`` holds; True if it held one (one statement)."""
        async with connect(self.engine) as conn:
            done = await conn.execute(_UNLOCK, {"b_id": command_id})
        return done.rowcount == 1  # type: ignore[attr-defined]

    async def unlock_commands(self, command_ids: Sequence[str]) -> int:
        """Release whatever devices ``command_ids`` hold (one statement); how many locks were held."""
        if not command_ids:
            return 0
        async with connect(self.engine) as conn:
            done = await conn.execute(delete(DeviceLockRow).where(DeviceLockRow.command_id.in_(list(command_ids))))
        return done.rowcount or 0  # type: ignore[attr-defined]

    async def release_stale_locks(self) -> int:
        """Drop locks whose command is final or gone (a core process died holding them)."""
        # One statement: atomic on its own, so autocommit (no BEGIN/COMMIT round trips).
        async with connect(self.engine) as conn:
            done = await conn.execute(_STALE_LOCKS)
        return done.rowcount or 0  # type: ignore[attr-defined]
