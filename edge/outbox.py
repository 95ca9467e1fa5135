"""The concentrator's durable outbox: SQLite in WAL mode, fsynced on every commit.

A message enters the outbox before anything else happens to it and leaves only after the
broker acknowledged it (PUBACK), so neither a broker outage nor a concentrator killed
mid-stream (SIGKILL, power loss) loses a reading. A message published but not yet deleted
when the process dies is published again at start: delivery is at-least-once, and the
cloud's writes are idempotent (readings carry ids derived from meter and time).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    topic    TEXT    NOT NULL,
    payload  BLOB    NOT NULL,
    priority INTEGER NOT NULL DEFAULT 4,
    created  REAL    NOT NULL,
    expires  REAL
);
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (priority, seq);
"""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    seq: int
    topic: str
    payload: bytes
    priority: int
    expires: float | None


class Outbox:
    """Messages waiting for the broker's acknowledgement, in priority then arrival order.

    Calls are synchronous: each is one short SQLite transaction on local disk, cheaper than
    handing it to a thread. ``synchronous=FULL`` makes a committed put survive power loss.
    """

    def __init__(self, path: Path | str, *, max_messages: int = 5_000_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_messages = max_messages
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._count = self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        return self._count

    def put_many(self, items: list[tuple[str, bytes]], *, priority: int = 4, ttl: float | None = None) -> None:
        """Store messages durably; returns once they are on disk."""
        if not items:
            return
        if self._count + len(items) > self.max_messages:
            raise OutboxFull(f"outbox holds {self._count} messages; limit is {self.max_messages}")
        now = time.time()
        expires = now + ttl if ttl is not None else None
        with self._transaction():
            self._db.executemany(
                "INSERT INTO outbox (topic, payload, priority, created, expires) VALUES (?, ?, ?, ?, ?)",
                [(topic, payload, priority, now, expires) for topic, payload in items],
            )
        self._count += len(items)

    def put(self, topic: str, payload: bytes, *, priority: int = 4, ttl: float | None = None) -> None:
        self.put_many([(topic, payload)], priority=priority, ttl=ttl)

    def peek(self, *, limit: int, exclude: set[int] | frozenset[int] = frozenset()) -> list[OutboxMessage]:
        """The oldest highest-priority messages not in ``exclude`` (those already in flight)."""
        rows = self._db.execute(
            "SELECT seq, topic, payload, priority, expires FROM outbox ORDER BY priority, seq LIMIT ?",
            (limit + len(exclude),),
        ).fetchall()
        return [OutboxMessage(*row) for row in rows if row[0] not in exclude][:limit]

    def delete(self, seqs: list[int]) -> None:
        if not seqs:
            return
        with self._transaction():
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
        self._count -= len(seqs)

    def _transaction(self):
        return _Transaction(self._db)


class OutboxFull(Exception):
    """The outbox reached its configured size; the caller must slow down or shed."""


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
