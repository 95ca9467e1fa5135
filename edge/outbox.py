"""The concentrator's durable outbox: SQLite in WAL mode, fsynced on every commit.

A message enters the outbox before anything else happens to it and leaves only after the
cloud confirmed it stored it (see :mod:`broker.schemas.delivery`), so neither a broker
outage or crash nor a concentrator killed mid-stream (SIGKILL, power loss) loses a reading.
A message not yet confirmed when the process dies is published again at start: delivery is
at-least-once, and the cloud's writes are idempotent (reading ids derive from meter and time).

**The limit.** The outbox holds at most ``max_messages`` messages (``outbox_limit`` in the
concentrator's config). A concentrator without network keeps reading until then. It logs a
warning when the outbox passes 80% of the limit and when it reaches it; :attr:`Outbox.level`
says which (``OK``, ``HIGH``, ``FULL``) for the status. At the limit a new message takes the
place of the oldest message of the lowest :class:`Keep` class present: live values go first,
then readings from a meter's load profile, then events. Every message given up is counted by
class (:attr:`Outbox.shed`) and logged with its count and sequence numbers (at once, then summed
up at most once a minute, and at close), never dropped silently; only an outbox full of messages of a class above the new one's refuses it
(:class:`OutboxFull`).

**Across software versions** the outbox records its schema and the oldest schema able to read
it; a version never opens an outbox it cannot read, and an update's rollback restores one it
could not (see :mod:`edge.outbox_schema`).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from broker.errors import Invalid, Unavailable
from edge import outbox_schema

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    topic    TEXT    NOT NULL,
    payload  BLOB    NOT NULL,
    priority INTEGER NOT NULL DEFAULT 4,
    created  REAL    NOT NULL,
    expires  REAL,
    keep     INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (priority, seq);
"""
_SHED_INDEX = "CREATE INDEX IF NOT EXISTS outbox_shed ON outbox (keep, seq)"
# Share of the limit past which the outbox is HIGH (logged once per crossing).
HIGH_WATER = 0.8
# What a full outbox gives up is logged at once, then summed up at most this often (seconds).
SHED_LOG_INTERVAL = 60.0


class Keep(IntEnum):
    """What a message is, in the order messages give way at the outbox limit (lowest first)."""

    LIVE = 1      # a live value (P1 telegram, a poll of a DLMS or Modbus meter): the oldest go first
    PROFILE = 2   # a reading from a meter's load profile (historical): the interval values billing needs
    EVENT = 3     # an event or alarm (the meter's log may not keep it)


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

    def __init__(self, path: Path | str, *, max_messages: int = 2_000_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if max_messages < 1:
            raise Invalid(f"an outbox limit must be at least 1 message, not {max_messages}")
        self.max_messages = max_messages
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        if "keep" not in columns:  # an outbox written before the classes existed: all live
            self._db.execute("ALTER TABLE outbox ADD COLUMN keep INTEGER NOT NULL DEFAULT 1")
        self._db.execute(_SHED_INDEX)
        try:  # refuses an outbox this version cannot read; migrates an older one forward
            self.schema = outbox_schema.open_for_release(self._db, self.path)
        except Invalid:
            self._db.close()
            raise
        self._count = self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        # Messages given up at the limit since this process started, by class.
        self.shed: dict[Keep, int] = dict.fromkeys(Keep, 0)
        # Given up and not logged yet, by class: (first seq, last seq, count).
        self._unlogged: dict[Keep, tuple[int, int, int]] = {}
        self._next_shed_log = 0.0
        self.level = "OK"
        self._update_level()

    def close(self) -> None:
        if self._unlogged:
            self._log_shed()
        self._db.close()

    def __len__(self) -> int:
        return self._count

    @property
    def fill(self) -> float:
        """Share of the limit in use (1.0: full)."""
        return self._count / self.max_messages

    def put_many(self, items: list[tuple[str, bytes]], *, priority: int = 4, ttl: float | None = None,
                 keep: Keep = Keep.LIVE) -> None:
        """Store messages durably; returns once they are on disk. At the limit, older messages of
        a class that gives way first (or the same class) make room, in the same transaction."""
        if not items:
            return
        if len(items) > self.max_messages:
            raise OutboxFull(f"{len(items)} messages cannot fit an outbox of {self.max_messages}")
        now = time.time()
        expires = now + ttl if ttl is not None else None
        excess = self._count + len(items) - self.max_messages
        with self._transaction():
            shed = self._make_room(excess, keep) if excess > 0 else []
            self._db.executemany(
                "INSERT INTO outbox (topic, payload, priority, created, expires, keep) VALUES (?, ?, ?, ?, ?, ?)",
                [(topic, payload, priority, now, expires, int(keep)) for topic, payload in items],
            )
        self._count += len(items) - sum(len(seqs) for _, seqs in shed)
        for cls, seqs in shed:
            self.shed[cls] += len(seqs)
            first, last, n = self._unlogged.get(cls, (seqs[0], seqs[-1], 0))
            self._unlogged[cls] = (min(first, seqs[0]), max(last, seqs[-1]), n + len(seqs))
        if self._unlogged and time.monotonic() >= self._next_shed_log:
            self._log_shed()
        self._update_level()

    def _log_shed(self) -> None:
        """Log what was given up since the last such line: at once the first time, then at most
        every SHED_LOG_INTERVAL seconds (a full outbox gives up a message per reading)."""
        for cls, (first, last, n) in sorted(self._unlogged.items()):
            log.warning("outbox full (%d messages): gave up the %d oldest %s messages (seq %d-%d) for newer ones; "
                        "%d given up since start", self.max_messages, n, cls.name.lower(), first, last,
                        sum(self.shed.values()))
        self._unlogged.clear()
        self._next_shed_log = time.monotonic() + SHED_LOG_INTERVAL

    def put(self, topic: str, payload: bytes, *, priority: int = 4, ttl: float | None = None,
            keep: Keep = Keep.LIVE) -> None:
        self.put_many([(topic, payload)], priority=priority, ttl=ttl, keep=keep)

    def _make_room(self, excess: int, keep: Keep) -> list[tuple[Keep, list[int]]]:
        """Delete the ``excess`` oldest messages of the classes up to ``keep``, lowest first
        (inside the caller's transaction); raise OutboxFull if those classes hold too few."""
        shed: list[tuple[Keep, list[int]]] = []
        for cls in Keep:
            if cls > keep or excess <= 0:
                break
            seqs = [row[0] for row in self._db.execute(
                "SELECT seq FROM outbox WHERE keep = ? ORDER BY seq LIMIT ?", (int(cls), excess))]
            if seqs:
                self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(seq,) for seq in seqs])
                shed.append((cls, seqs))
                excess -= len(seqs)
        if excess > 0:
            raise OutboxFull(f"outbox full: its {self._count} messages are all of classes kept before "
                             f"{keep.name.lower()} messages; limit is {self.max_messages}")
        return shed

    def _update_level(self) -> None:
        fill = self.fill
        level = "FULL" if fill >= 1.0 else "HIGH" if fill >= HIGH_WATER else "OK"
        if level == self.level:
            return
        if level == "FULL":
            log.warning("outbox full: %d messages, its limit; newer messages now take the place of the oldest "
                        "live values, then of load-profile readings (see edge/outbox.py)", self._count)
        elif level == "HIGH":
            log.warning("outbox at %.0f%% of its limit (%d of %d messages)", fill * 100, self._count,
                        self.max_messages)
        else:
            log.info("outbox back below %.0f%% of its limit (%d of %d messages)", HIGH_WATER * 100, self._count,
                     self.max_messages)
        self.level = level

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
        self._update_level()

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
