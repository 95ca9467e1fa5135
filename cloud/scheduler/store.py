"""Persisted schedules and the claim protocol that makes each due run happen once.

Any number of scheduler processes may share the database. A run is claimed with one
compare-and-set UPDATE (``... WHERE id = :id AND next_run = :old AND pending_run IS NULL``):
exactly one process sees a row count of 1 and publishes; the others see 0 and move on. This
works the same on SQLite and PostgreSQL (no ``FOR UPDATE SKIP LOCKED`` needed).

A claimed run is recorded in ``pending_run`` with a lease until it is published and marked
done. If the process dies in between, another scheduler takes the run over when the lease has
expired and publishes it again with the same idempotency key (at least once, never lost).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from broker.errors import NotFound
from cloud.registry.models import utcnow
from cloud.scheduler.models import ScheduleRow
from cloud.scheduler.schemas import ScheduleCreate, ScheduledTask, SchedulePublic
from cloud.scheduler.timing import MissedRunPolicy, next_run, parse_trigger, plan_due

log = logging.getLogger(__name__)


class ScheduleNotFound(NotFound):
    """No schedule with that id."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A run this process won and must publish, then :meth:`ScheduleStore.complete`."""

    schedule_id: int
    due: datetime
    organisation: str
    task: ScheduledTask
    late: bool
    recovered: bool


class ScheduleStore:
    """Schedules in the registry database; every method is one short transaction."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

    async def add(self, spec: ScheduleCreate) -> SchedulePublic:
        """Store a schedule; its first run is the trigger's next instant after now."""
        now = self._clock()
        row = ScheduleRow(
            name=spec.name, organisation=spec.organisation, trigger=spec.trigger.model_dump(mode="json", by_alias=True),
            topic=spec.task.topic, payload=spec.task.payload, message_expiry=spec.task.message_expiry,
            missed_policy=spec.missed_policy.value, grace_seconds=spec.grace_seconds, enabled=spec.enabled,
            next_run=next_run(spec.trigger, now), run_count=0, skipped_count=0, created_at=now, updated_at=now)
        async with self._sessions.begin() as session:
            session.add(row)
            await session.flush()
            log.info("schedule %d %r for %s added; first run %s", row.id, spec.name, spec.organisation,
                     row.next_run)
            return _public(row)

    async def get(self, schedule_id: int) -> SchedulePublic:
        async with self._sessions() as session:
            row = await session.get(ScheduleRow, schedule_id)
            if row is None:
                raise ScheduleNotFound(schedule_id)
            return _public(row)

    async def list_schedules(self, *, organisation: str | None = None) -> list[SchedulePublic]:
        query = select(ScheduleRow).order_by(ScheduleRow.id)
        if organisation is not None:
            query = query.where(ScheduleRow.organisation == organisation)
        async with self._sessions() as session:
            return [_public(row) for row in (await session.scalars(query)).all()]

    async def set_enabled(self, schedule_id: int, enabled: bool) -> None:
        """Pause or resume; resuming recomputes the next run from now (paused runs are not owed)."""
        now = self._clock()
        async with self._sessions.begin() as session:
            row = await session.get(ScheduleRow, schedule_id)
            if row is None:
                raise ScheduleNotFound(schedule_id)
            row.enabled = enabled
            if enabled:
                row.next_run = next_run(parse_trigger(row.trigger), now)
            row.updated_at = now

    async def remove(self, schedule_id: int) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(delete(ScheduleRow).where(ScheduleRow.id == schedule_id))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def earliest_due(self) -> datetime | None:
        """The soonest next run of any enabled schedule (for the loop's sleep)."""
        async with self._sessions() as session:
            return await session.scalar(
                select(ScheduleRow.next_run).where(ScheduleRow.enabled.is_(True), ScheduleRow.next_run.is_not(None))
                .order_by(ScheduleRow.next_run).limit(1))

    # --- the claim protocol -------------------------------------------------------------------

    async def claim_due(self, *, owner: str, lease: timedelta, limit: int = 100) -> list[Claim]:
        """Claim every run due now (and every abandoned claim); return those this process won."""
        now = self._clock()
        query = (select(ScheduleRow).where(ScheduleRow.enabled.is_(True), or_(
            and_(ScheduleRow.pending_run.is_(None), ScheduleRow.next_run <= now),
            and_(ScheduleRow.pending_run.is_not(None), ScheduleRow.lease_until < now)))
            .order_by(ScheduleRow.next_run).limit(limit))
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
        claims: list[Claim] = []
        for row in rows:
            claim = await (self._take_over(row, owner, now, lease) if row.pending_run is not None
                           else self._claim(row, owner, now, lease))
            if claim is not None:
                claims.append(claim)
        return claims

    async def _claim(self, row: ScheduleRow, owner: str, now: datetime, lease: timedelta) -> Claim | None:
        assert row.next_run is not None
        due = row.next_run
        policy = MissedRunPolicy(row.missed_policy)
        grace = timedelta(seconds=row.grace_seconds)
        run, following = plan_due(parse_trigger(row.trigger), due=due, now=now, policy=policy, grace=grace)
        values: dict[str, object] = {"next_run": following, "updated_at": now}
        if run:
            values |= {"pending_run": due, "claimed_by": owner, "lease_until": now + lease}
        else:
            values |= {"skipped_count": ScheduleRow.skipped_count + 1}
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(ScheduleRow)
                .where(ScheduleRow.id == row.id, ScheduleRow.next_run == due, ScheduleRow.pending_run.is_(None))
                .values(**values).execution_options(synchronize_session=False))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None  # another scheduler got there first
        if not run:
            log.warning("schedule %d: run due %s missed by %s; skipped (policy SKIP); next %s",
                        row.id, due.isoformat(), now - due, following)
            return None
        return Claim(schedule_id=row.id, due=due, organisation=row.organisation, task=_task(row),
                     late=now - due > grace, recovered=False)

    async def _take_over(self, row: ScheduleRow, owner: str, now: datetime, lease: timedelta) -> Claim | None:
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(ScheduleRow)
                .where(ScheduleRow.id == row.id, ScheduleRow.pending_run == row.pending_run,
                       ScheduleRow.lease_until == row.lease_until)
                .values(claimed_by=owner, lease_until=now + lease, updated_at=now)
                .execution_options(synchronize_session=False))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        assert row.pending_run is not None
        log.warning("schedule %d: taking over run due %s abandoned by %s", row.id, row.pending_run.isoformat(),
                    row.claimed_by)
        return Claim(schedule_id=row.id, due=row.pending_run, organisation=row.organisation, task=_task(row),
                     late=True, recovered=True)

    async def complete(self, claim: Claim, *, owner: str) -> bool:
        """Mark a claimed run published; False if the lease was lost to another process meanwhile."""
        now = self._clock()
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(ScheduleRow)
                .where(ScheduleRow.id == claim.schedule_id, ScheduleRow.pending_run == claim.due,
                       ScheduleRow.claimed_by == owner)
                .values(pending_run=None, claimed_by=None, lease_until=None, last_run=claim.due,
                        run_count=ScheduleRow.run_count + 1, updated_at=now)
                .execution_options(synchronize_session=False))
        done = result.rowcount == 1  # type: ignore[attr-defined]
        if not done:
            log.warning("schedule %d: lease on run %s was taken over before it completed", claim.schedule_id,
                        claim.due.isoformat())
        return done


def _task(row: ScheduleRow) -> ScheduledTask:
    return ScheduledTask(topic=row.topic, payload=row.payload, message_expiry=row.message_expiry)


def _public(row: ScheduleRow) -> SchedulePublic:
    return SchedulePublic(
        id=row.id, name=row.name, organisation=row.organisation, trigger=parse_trigger(row.trigger),
        task=_task(row), missed_policy=MissedRunPolicy(row.missed_policy), grace_seconds=row.grace_seconds,
        enabled=row.enabled, next_run=row.next_run, last_run=row.last_run, run_count=row.run_count,
        skipped_count=row.skipped_count)
