"""The webhook outbox in SQL: add a notification, claim due ones under a lease, record outcomes.

Every change is a compare-and-set, so several delivery loops (one per domain process) can
share one PostgreSQL database: a claim takes only PENDING rows that are due and not leased
(or whose lease ran out), and an outcome is recorded only by the holder of the current claim.
A claim counts as an attempt, so a notification that kills its sender is still given up
after ``max_attempts``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from cloud.core.access import autocommit
from cloud.notify.models import ERROR_LENGTH, DeliveryState, WebhookDeliveryRow
from cloud.registry.models import utcnow

log = logging.getLogger(__name__)

# Deterministic delivery ids for notifications with a natural key (a functional request's
# correlation id): a redelivered core response then finds its row instead of adding one.
DELIVERY_NAMESPACE = uuid.UUID("5b0c1d8e-3f4a-4e57-9a61-2f1f3c0b9d47")

_T = WebhookDeliveryRow.__table__
_PENDING = DeliveryState.PENDING.value


@dataclass(frozen=True, slots=True)
class Delivery:
    """A claimed notification: what to send, and the claim that allows recording its outcome."""

    id: str
    organisation: str
    event: str
    body: bytes
    attempts: int  # including the one this claim is for
    claim: str


@dataclass(frozen=True, slots=True)
class StoredDelivery:
    """A notification's row as it is stored."""

    id: str
    organisation: str
    event: str
    body: bytes
    state: DeliveryState
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    claimed_by: str | None
    finished_at: datetime | None

    @classmethod
    def of(cls, row: Any) -> StoredDelivery:
        return cls(id=row.id, organisation=row.organisation, event=row.event, body=bytes(row.body),
                   state=DeliveryState(row.state), attempts=row.attempts, last_error=row.last_error,
                   next_attempt_at=_utc(row.next_attempt_at), claimed_by=row.claimed_by,
                   finished_at=_utc(row.finished_at) if row.finished_at is not None else None)


def _utc(value: datetime) -> datetime:
    # Core reads through the UTCDateTime type, so values are already aware; keep them in UTC.
    return value.astimezone(UTC)


def delivery_id(key: str | None) -> str:
    """The delivery id for a notification: derived from ``key`` when there is one, else random."""
    return str(uuid.uuid5(DELIVERY_NAMESPACE, key) if key is not None else uuid.uuid4())


class WebhookOutbox:
    """The ``webhook_delivery`` table."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._auto = autocommit(engine)
        self.now = clock

    async def add(self, organisation: str, body: bytes, *, event: str, key: str | None = None) -> tuple[str, bool]:
        """Store a notification, due now; its id, and False if one with this key was stored before."""
        ident = delivery_id(key)
        now = self.now()
        try:
            async with self._auto.connect() as conn:
                await conn.execute(insert(_T).values(
                    id=ident, organisation=organisation, event=event, body=body, created_at=now, attempts=0,
                    next_attempt_at=now, state=_PENDING))
        except IntegrityError:
            return ident, False
        return ident, True

    async def claim(self, *, worker: str, limit: int, lease: timedelta) -> list[Delivery]:
        """Lease up to ``limit`` due notifications to ``worker`` (one UPDATE; safe beside other workers)."""
        now = self.now()
        token = f"{worker}/{uuid.uuid4().hex[:12]}"
        free = and_(_T.c.state == _PENDING, _T.c.next_attempt_at <= now,
                    or_(_T.c.claimed_until.is_(None), _T.c.claimed_until < now))
        due = select(_T.c.id).where(free).order_by(_T.c.next_attempt_at).limit(limit).scalar_subquery()
        async with self._auto.connect() as conn:
            # The conditions are repeated on the row itself: PostgreSQL re-checks them on a row
            # another worker changed meanwhile, so a row is leased to one worker only.
            await conn.execute(update(_T).where(_T.c.id.in_(due), free).values(
                claimed_by=token, claimed_until=now + lease, attempts=_T.c.attempts + 1))
            rows = (await conn.execute(select(_T.c.id, _T.c.organisation, _T.c.event, _T.c.body, _T.c.attempts)
                                       .where(_T.c.claimed_by == token, _T.c.state == _PENDING))).all()
        return [Delivery(id=r.id, organisation=r.organisation, event=r.event, body=bytes(r.body),
                         attempts=r.attempts, claim=token) for r in rows]

    async def delivered(self, delivery: Delivery) -> bool:
        """Record that the receiver accepted it; False if the claim was lost (another worker has it)."""
        return await self._finish(delivery, state=DeliveryState.DELIVERED, error=None)

    async def failed(self, delivery: Delivery, error: str) -> bool:
        """Give it up with ``error``; False if the claim was lost."""
        return await self._finish(delivery, state=DeliveryState.FAILED, error=error)

    async def retry(self, delivery: Delivery, error: str, *, after: timedelta) -> bool:
        """Release it to be tried again ``after`` from now; False if the claim was lost."""
        async with self._auto.connect() as conn:
            done = await conn.execute(update(_T).where(_T.c.id == delivery.id, _T.c.claimed_by == delivery.claim,
                                                       _T.c.state == _PENDING).values(
                next_attempt_at=self.now() + after, last_error=error[:ERROR_LENGTH], claimed_by=None,
                claimed_until=None))
        return done.rowcount == 1  # type: ignore[attr-defined]

    async def _finish(self, delivery: Delivery, *, state: DeliveryState, error: str | None) -> bool:
        values: dict[str, object] = {"state": state.value, "finished_at": self.now(), "claimed_by": None,
                                     "claimed_until": None}
        if error is not None:
            values["last_error"] = error[:ERROR_LENGTH]
        async with self._auto.connect() as conn:
            done = await conn.execute(update(_T).where(_T.c.id == delivery.id, _T.c.claimed_by == delivery.claim,
                                                       _T.c.state == _PENDING).values(**values))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            log.warning("webhook delivery %s: lease lost before its outcome (%s) was recorded", delivery.id, state)
            return False
        return True

    async def purge(self, *, older_than: timedelta) -> int:
        """Delete DELIVERED rows finished longer than ``older_than`` ago; how many."""
        async with self._auto.connect() as conn:
            done = await conn.execute(delete(_T).where(_T.c.state == DeliveryState.DELIVERED.value,
                                                       _T.c.finished_at < self.now() - older_than))
        return done.rowcount  # type: ignore[attr-defined]

    async def get(self, ident: str) -> StoredDelivery | None:
        """One notification as it is stored (for operators and tests)."""
        async with self._auto.connect() as conn:
            row = (await conn.execute(select(_T).where(_T.c.id == ident))).first()
        return StoredDelivery.of(row) if row is not None else None

    async def all(self) -> list[StoredDelivery]:
        """Every notification, oldest first (for operators and tests)."""
        async with self._auto.connect() as conn:
            rows = (await conn.execute(select(_T).order_by(_T.c.created_at, _T.c.id))).all()
        return [StoredDelivery.of(r) for r in rows]
