"""The concentrator's durable outbox: SQLite in WAL mode, fsynced on every commit.

A message enters the outbox before anything else happens to it and leaves only after the
cloud confirmed it stored it (see :mod:`broker.schemas.delivery`), so neither a broker
outage or crash nor a concentrator killed mid-stream (SIGKILL, power loss) loses a reading.
A message not yet confirmed when the process dies is published again at start: delivery is
at-least-once, and the cloud's writes are idempotent (reading ids derive from meter and time).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from broker.errors import Unavailable

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

    def oldest_age(self, now: float | None = None) -> float:
        """Seconds the oldest waiting message has been in the outbox (0 when empty)."""
        row = self._db.execute("SELECT created FROM outbox ORDER BY seq LIMIT 1").fetchone()
        return 0.0 if row is None else max(0.0, (now or time.time()) - row[0])

    def after(self, cursor: int, *, limit: int) -> list[OutboxMessage]:
        """Messages with a sequence number above ``cursor``, oldest first."""
        rows = self._db.execute(
            "SELECT seq, topic, payload, priority, expires FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (cursor, limit),
        ).fetchall()
        return [OutboxMessage(*row) for row in rows]

    def get(self, seqs: list[int]) -> list[OutboxMessage]:
        """The messages with these sequence numbers that are still in the outbox."""
        found: list[OutboxMessage] = []
        for start in range(0, len(seqs), 500):
            chunk = seqs[start:start + 500]
            marks = ",".join("?" * len(chunk))
            found += [OutboxMessage(*row) for row in self._db.execute(
                f"SELECT seq, topic, payload, priority, expires FROM outbox WHERE seq IN ({marks}) ORDER BY seq",
                chunk).fetchall()]
        return found

    def delete(self, seqs: list[int]) -> None:
        if not seqs:
            return
        with self._transaction():
            deleted = self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs]).rowcount
        self._count -= deleted

    def _transaction(self):
        return _Transaction(self._db)


class OutboxFull(Unavailable):
    """The outbox reached its configured size; the caller must slow down or shed."""


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
