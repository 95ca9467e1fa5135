"""The dead-letter store on SQL (SQLite by default, PostgreSQL in production).

A rejected message is written here *before* its MQTT acknowledgement, so it is never lost;
it can be listed through the API and replayed after the cause is fixed.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from broker.schemas import DeadLetter

metadata = sa.MetaData()

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("consumer", sa.String(64), nullable=False),
    sa.Column("topic", sa.String(1024), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("payload_truncated", sa.Boolean, nullable=False, default=False),
)


class DeadLetterStore:
    """Append and list dead letters."""

    def __init__(self, *, engine: AsyncEngine) -> None:
        self._engine = engine

    @classmethod
    def from_url(cls, url: str) -> DeadLetterStore:
        return cls(engine=create_async_engine(url))

    async def create_schema(self) -> None:
        """Create the table if it is missing; safe while other processes do the same."""
        try:
            async with self._engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
        except sa.exc.DBAPIError:
            # Processes start together: another may create it between our check and our CREATE.
            async with self._engine.connect() as conn:
                if not await conn.run_sync(lambda sync: sa.inspect(sync).has_table(dead_letters.name)):
                    raise

    async def aclose(self) -> None:
        await self._engine.dispose()

    async def add_many(self, letters: list[DeadLetter]) -> None:
        if not letters:
            return
        async with self._engine.begin() as conn:
            await conn.execute(dead_letters.insert(), [
                {"received_at": d.received_at, "consumer": d.consumer, "topic": d.topic, "reason": d.reason,
                 "payload": d.payload, "payload_truncated": d.payload_truncated} for d in letters
            ])

    async def add(self, letter: DeadLetter) -> None:
        await self.add_many([letter])

    async def list(self, *, since: datetime | None = None, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        # Oldest first by when each was received (a relayed edge letter may arrive after newer ones).
        stmt = (sa.select(dead_letters).order_by(dead_letters.c.received_at, dead_letters.c.id)
                .limit(limit).offset(offset))
        if since is not None:
            stmt = stmt.where(dead_letters.c.received_at >= since)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [DeadLetter(topic=r["topic"], reason=r["reason"], receivedAt=_aware(r["received_at"]), payload=r["payload"],
                           payloadTruncated=r["payload_truncated"], consumer=r["consumer"]) for r in rows]

    async def count(self) -> int:
        async with self._engine.connect() as conn:
            return (await conn.execute(sa.select(sa.func.count()).select_from(dead_letters))).scalar_one()


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were written in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
