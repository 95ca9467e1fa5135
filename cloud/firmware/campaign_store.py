"""Campaigns, waves and targets in the registry database: every change a compare-and-set.

Any number of runners and API processes share these tables. A target is issued by the one
``UPDATE ... WHERE state = 'PENDING'`` that wins, with a fresh command id per attempt, so two
runners can never send a device two commands for one attempt; an outcome is recorded by the
one ``UPDATE ... WHERE state = 'IN_FLIGHT' AND command_id = :cid`` that wins. A campaign is
advanced by the runner holding its lease; another takes over when the lease runs out.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from broker.errors import Conflict
from cloud.core.models import CommandRow
from cloud.firmware.models import CampaignRow, CampaignTargetRow, CampaignWaveRow, FirmwareRow
from cloud.registry.models import utcnow
from firmware_ota.campaign_logic import (
    TRANSITIONS,
    CampaignState,
    Candidate,
    Decision,
    Outcome,
    TargetState,
    WaveCounts,
)
from firmware_ota.campaign_plan import PlannedWave
from firmware_ota.errors import CampaignNotFound

log = logging.getLogger(__name__)

T = TargetState
INSERT_CHUNK = 500


@dataclass(frozen=True, slots=True)
class CampaignSnapshot:
    """A campaign with its waves, their counts per state and its failed targets, read at once."""

    campaign: CampaignRow
    waves: list[CampaignWaveRow]
    counts: list[WaveCounts]
    failed: list[CampaignTargetRow]
    version: str | None  # the firmware's, None if it is not in the catalogue


def _wave_counts(waves: Sequence[tuple[int, int]], counts: Sequence[tuple[int, str, int]]) -> list[WaveCounts]:
    """Each wave's (index, target count) with its targets per state, in the order given."""
    per: dict[int, dict[str, int]] = {}
    for wave, state, count in counts:
        per.setdefault(wave, {})[state] = count
    return [WaveCounts(index=index, total=total, pending=per.get(index, {}).get(T.PENDING, 0),
                       in_flight=per.get(index, {}).get(T.IN_FLIGHT, 0),
                       succeeded=per.get(index, {}).get(T.SUCCEEDED, 0),
                       failed=per.get(index, {}).get(T.FAILED, 0),
                       cancelled=per.get(index, {}).get(T.CANCELLED, 0)) for index, total in waves]


class InvalidTransition(Conflict):
    """An operator action the campaign's state does not allow; the message says why."""


@dataclass(frozen=True, slots=True)
class InFlight:
    """A target whose command the runner is following."""

    target_id: int
    device: str
    command_id: str
    attempts: int
    issued_at: datetime
    feeder: str | None


@dataclass(frozen=True, slots=True)
class CommandState:
    status: str
    result: dict[str, Any] | None
    error: dict[str, Any] | None


class CampaignStore:
    """Reads and compare-and-set writes of campaign rows (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.clock = clock

    # --- creating and controlling ------------------------------------------------------------

    async def create(self, *, name: str, organisation: str, firmware_id: str, created_by: str,
                     settings: dict[str, Any], waves: Sequence[PlannedWave]) -> str:
        """Store a new campaign in state CREATED with its waves and PENDING targets; its id."""
        now = self.clock()
        campaign_id = str(uuid.uuid4())
        async with self._sessions.begin() as session:
            session.add(CampaignRow(id=campaign_id, name=name, organisation=organisation, firmware_id=firmware_id,
                                    state=CampaignState.CREATED.value, active=False, current_wave=0,
                                    created_by=created_by, created_at=now, updated_at=now, **settings))
            await session.flush()
            for wave in waves:
                session.add(CampaignWaveRow(campaign_id=campaign_id, index=wave.index, groups=list(wave.groups),
                                            canary=wave.canary, target_count=len(wave.targets)))
            await session.flush()
            rows = [{"campaign_id": campaign_id, "device": t.device, "wave": w.index, "group_key": t.group,
                     "feeder": t.feeder, "concentrator_id": t.concentrator_id, "state": T.PENDING.value,
                     "attempts": 0, "updated_at": now} for w in waves for t in w.targets]
            for start in range(0, len(rows), INSERT_CHUNK):
                await session.execute(CampaignTargetRow.__table__.insert(), rows[start:start + INSERT_CHUNK])
        log.info("campaign %s %r created: firmware %s, %d targets in %d waves", campaign_id, name, firmware_id,
                 len(rows), len(waves))
        return campaign_id

    async def get(self, campaign_id: str) -> CampaignRow:
        async with self._sessions() as session:
            row = await session.get(CampaignRow, campaign_id)
        if row is None:
            raise CampaignNotFound(campaign_id)
        return row

    async def list(self, *, organisation: str | None = None) -> list[CampaignRow]:
        query = select(CampaignRow).order_by(CampaignRow.created_at, CampaignRow.id)
        if organisation is not None:
            query = query.where(CampaignRow.organisation == organisation)
        async with self._sessions() as session:
            return list((await session.scalars(query)).all())

    async def control(self, campaign_id: str, action: str) -> CampaignRow:
        """start / pause / resume / cancel; InvalidTransition if the state does not allow it."""
        sources, target = TRANSITIONS[action]
        now = self.clock()
        values: dict[str, Any] = {"state": target.value, "updated_at": now,
                                  "state_reason": f"{action} by operator"}
        if action == "start":
            values |= {"started_at": now, "active": True}
        if target.final:
            values |= {"finished_at": now}
        async with self._sessions.begin() as session:
            done = await session.execute(
                update(CampaignRow).where(CampaignRow.id == campaign_id,
                                          CampaignRow.state.in_([s.value for s in sources]))
                .values(**values).execution_options(synchronize_session=False))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                current = await session.get(CampaignRow, campaign_id)
                if current is None:
                    raise CampaignNotFound(campaign_id)
                raise InvalidTransition(f"cannot {action} campaign {campaign_id}: it is {current.state}")
            if action == "cancel":
                await session.execute(self._cancel_pending(campaign_id, now))
            if action == "start":
                await session.execute(update(CampaignWaveRow).where(
                    CampaignWaveRow.campaign_id == campaign_id, CampaignWaveRow.index == 0).values(started_at=now))
        log.info("campaign %s: %s -> %s", campaign_id, action, target)
        return await self.get(campaign_id)

    def _cancel_pending(self, campaign_id: str, now: datetime) -> Any:
        return (update(CampaignTargetRow)
                .where(CampaignTargetRow.campaign_id == campaign_id, CampaignTargetRow.state == T.PENDING.value)
                .values(state=T.CANCELLED.value, failure_reason="campaign cancelled before this device's turn",
                        finished_at=now, updated_at=now)
                .execution_options(synchronize_session=False))

    # --- reading progress ----------------------------------------------------------------------

    async def wave_counts(self, campaign_id: str) -> list[WaveCounts]:
        """Targets per state for every wave of the campaign, wave 0 first."""
        async with self._sessions() as session:
            waves = (await session.execute(
                select(CampaignWaveRow.index, CampaignWaveRow.target_count)
                .where(CampaignWaveRow.campaign_id == campaign_id).order_by(CampaignWaveRow.index))).all()
            return _wave_counts([(index, total) for index, total in waves],
                                await self._state_counts(session, campaign_id))

    async def snapshot(self, campaign_id: str, *, failed_limit: int) -> CampaignSnapshot:
        """The campaign, its firmware's version, its waves with their counts per state and its
        first ``failed_limit`` failed targets, read in one session (what a status report needs,
        five queries)."""
        async with self._sessions() as session:
            row = await session.get(CampaignRow, campaign_id)
            if row is None:
                raise CampaignNotFound(campaign_id)
            version = await session.scalar(select(FirmwareRow.version)
                                           .where(FirmwareRow.firmware_id == row.firmware_id))
            waves = list((await session.scalars(select(CampaignWaveRow).where(
                CampaignWaveRow.campaign_id == campaign_id).order_by(CampaignWaveRow.index))).all())
            counts = _wave_counts([(w.index, w.target_count) for w in waves],
                                  await self._state_counts(session, campaign_id))
            failed = list((await session.scalars(
                select(CampaignTargetRow).where(CampaignTargetRow.campaign_id == campaign_id,
                                                CampaignTargetRow.state == T.FAILED.value)
                .order_by(CampaignTargetRow.wave, CampaignTargetRow.device).limit(failed_limit))).all())
        return CampaignSnapshot(campaign=row, waves=waves, counts=counts, failed=failed, version=version)

    @staticmethod
    async def _state_counts(session: AsyncSession, campaign_id: str) -> list[tuple[int, str, int]]:
        rows = (await session.execute(
            select(CampaignTargetRow.wave, CampaignTargetRow.state, func.count())
            .where(CampaignTargetRow.campaign_id == campaign_id)
            .group_by(CampaignTargetRow.wave, CampaignTargetRow.state))).all()
        return [(wave, state, count) for wave, state, count in rows]

    async def fleet_counts(self) -> dict[tuple[str, str], int]:
        """Campaigns by state, and the targets of active campaigns by state:
        {("campaign", "RUNNING"): n, ("target", "IN_FLIGHT"): n, ...} (for metrics)."""
        async with self._sessions() as session:
            campaigns = (await session.execute(select(CampaignRow.state, func.count())
                                               .group_by(CampaignRow.state))).all()
            targets = (await session.execute(
                select(CampaignTargetRow.state, func.count())
                .join(CampaignRow, CampaignRow.id == CampaignTargetRow.campaign_id)
                .where(CampaignRow.active.is_(True)).group_by(CampaignTargetRow.state))).all()
        found = {("target", state.value): 0 for state in T}
        found.update({("campaign", state): n for state, n in campaigns})
        found.update({("target", state): n for state, n in targets})
        return found

    async def waves(self, campaign_id: str) -> list[CampaignWaveRow]:
        async with self._sessions() as session:
            return list((await session.scalars(select(CampaignWaveRow).where(
                CampaignWaveRow.campaign_id == campaign_id).order_by(CampaignWaveRow.index))).all())

    async def targets(self, campaign_id: str, *, state: TargetState | None = None,
                      limit: int = 10_000, offset: int = 0) -> list[CampaignTargetRow]:
        query = select(CampaignTargetRow).where(CampaignTargetRow.campaign_id == campaign_id)
        if state is not None:
            query = query.where(CampaignTargetRow.state == state.value)
        async with self._sessions() as session:
            return list((await session.scalars(
                query.order_by(CampaignTargetRow.wave, CampaignTargetRow.device).offset(offset).limit(limit))).all())

    # --- the runner ----------------------------------------------------------------------------

    async def active_ids(self) -> list[str]:
        async with self._sessions() as session:
            return list((await session.scalars(select(CampaignRow.id).where(CampaignRow.active.is_(True))
                                               .order_by(CampaignRow.created_at))).all())

    async def take_lease(self, campaign_id: str, *, runner: str, lease: timedelta) -> bool:
        """Hold (or renew) the right to advance ``campaign_id``; False while another runner holds it."""
        now = self.clock()
        async with self._sessions.begin() as session:
            done = await session.execute(
                update(CampaignRow).where(
                    CampaignRow.id == campaign_id, CampaignRow.active.is_(True),
                    or_(CampaignRow.runner.is_(None), CampaignRow.runner == runner, CampaignRow.lease_until < now))
                .values(runner=runner, lease_until=now + lease).execution_options(synchronize_session=False))
        return done.rowcount == 1  # type: ignore[attr-defined]

    async def release_lease(self, campaign_id: str, *, runner: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(update(CampaignRow).where(CampaignRow.id == campaign_id,
                                                            CampaignRow.runner == runner)
                                  .values(runner=None, lease_until=None).execution_options(synchronize_session=False))

    async def candidates(self, campaign_id: str, *, up_to_wave: int, per_feeder: int,
                         limit: int) -> list[Candidate]:
        """PENDING targets of waves up to ``up_to_wave`` whose retry wait is over, oldest wave first,
        at most ``per_feeder`` of each feeder (so a big feeder cannot crowd the others out)."""
        now = self.clock()
        t = CampaignTargetRow
        rank = func.row_number().over(partition_by=t.feeder, order_by=(t.wave, t.id)).label("rank")
        ready = (select(t.id, t.wave, t.feeder, rank)
                 .where(t.campaign_id == campaign_id, t.state == T.PENDING.value, t.wave <= up_to_wave,
                        or_(t.not_before.is_(None), t.not_before <= now))
                 .subquery())
        async with self._sessions() as session:
            rows = (await session.execute(
                select(ready.c.id, ready.c.wave, ready.c.feeder).where(ready.c.rank <= per_feeder)
                .order_by(ready.c.wave, ready.c.id).limit(limit))).all()
        return [Candidate(target_id=r.id, wave=r.wave, feeder=r.feeder) for r in rows]

    async def in_flight(self, campaign_id: str) -> list[InFlight]:
        async with self._sessions() as session:
            rows = (await session.scalars(select(CampaignTargetRow).where(
                CampaignTargetRow.campaign_id == campaign_id, CampaignTargetRow.state == T.IN_FLIGHT.value))).all()
        return [InFlight(target_id=r.id, device=r.device, command_id=r.command_id or "", attempts=r.attempts,
                         issued_at=r.issued_at or self.clock(), feeder=r.feeder) for r in rows]

    async def commands(self, command_ids: Sequence[str]) -> dict[str, CommandState]:
        """The core's view of the given commands (absent: the core has not stored it yet)."""
        if not command_ids:
            return {}
        async with self._sessions() as session:
            rows = (await session.execute(select(CommandRow.id, CommandRow.status, CommandRow.result,
                                                 CommandRow.error).where(CommandRow.id.in_(list(command_ids))))).all()
        return {r.id: CommandState(status=r.status, result=r.result, error=r.error) for r in rows}

    async def claim_target(self, target_id: int, campaign_id: str, *, command_id: str,
                           runner: str) -> CampaignTargetRow | None:
        """PENDING -> IN_FLIGHT with a new command id, only while the campaign is RUNNING; the row if won."""
        now = self.clock()
        running = select(CampaignRow.id).where(CampaignRow.id == campaign_id,
                                               CampaignRow.state == CampaignState.RUNNING.value).exists()
        async with self._sessions.begin() as session:
            done = await session.execute(
                update(CampaignTargetRow)
                .where(CampaignTargetRow.id == target_id, CampaignTargetRow.state == T.PENDING.value, running)
                .values(state=T.IN_FLIGHT.value, command_id=command_id, issued_by=runner,
                        attempts=CampaignTargetRow.attempts + 1,
                        issued_at=now, not_before=None, updated_at=now)
                .execution_options(synchronize_session=False))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                return None
            return await session.get(CampaignTargetRow, target_id)

    async def record(self, flight: InFlight, outcome: Outcome, *, retry_delay: timedelta) -> bool:
        """Record a finished attempt once (IN_FLIGHT with that command -> its outcome); True if this call did."""
        now = self.clock()
        values: dict[str, Any] = {"state": outcome.state.value, "failure_code": outcome.code,
                                  "failure_reason": (outcome.reason or "")[:1024] or None, "updated_at": now}
        if outcome.retry:
            values |= {"not_before": now + retry_delay}
        else:
            values |= {"finished_at": now, "reported_version": outcome.reported_version, "result": outcome.result}
        async with self._sessions.begin() as session:
            done = await session.execute(
                update(CampaignTargetRow)
                .where(CampaignTargetRow.id == flight.target_id, CampaignTargetRow.state == T.IN_FLIGHT.value,
                       CampaignTargetRow.command_id == flight.command_id)
                .values(**values).execution_options(synchronize_session=False))
        return done.rowcount == 1  # type: ignore[attr-defined]

    async def apply(self, campaign_id: str, *, was: CampaignState, decision: Decision, runner: str) -> bool:
        """Store a runner's decision if the campaign is still in state ``was`` and leased to ``runner``."""
        now = self.clock()
        values: dict[str, Any] = {"state": decision.state.value, "state_reason": decision.reason,
                                  "current_wave": decision.current_wave, "active": decision.active,
                                  "updated_at": now}
        if decision.state.final and not was.final:
            values["finished_at"] = now
        if not decision.active:
            values |= {"runner": None, "lease_until": None}
        async with self._sessions.begin() as session:
            done = await session.execute(
                update(CampaignRow).where(CampaignRow.id == campaign_id, CampaignRow.state == was.value,
                                          CampaignRow.runner == runner)
                .values(**values).execution_options(synchronize_session=False))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                return False
            if decision.cancel_pending:
                await session.execute(self._cancel_pending(campaign_id, now))
            await session.execute(update(CampaignWaveRow).where(
                CampaignWaveRow.campaign_id == campaign_id, CampaignWaveRow.index <= decision.current_wave,
                CampaignWaveRow.started_at.is_(None)).values(started_at=now))
        if decision.state is not was:
            log.info("campaign %s: %s -> %s (%s)", campaign_id, was, decision.state, decision.reason)
        return True

    async def per_feeder_in_flight(self, campaign_id: str) -> dict[str | None, int]:
        async with self._sessions() as session:
            rows = (await session.execute(
                select(CampaignTargetRow.feeder, func.count()).where(and_(
                    CampaignTargetRow.campaign_id == campaign_id, CampaignTargetRow.state == T.IN_FLIGHT.value))
                .group_by(CampaignTargetRow.feeder))).all()
        return {feeder: count for feeder, count in rows}
