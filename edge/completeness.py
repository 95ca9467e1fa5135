"""Which intervals of each meter's day the concentrator holds a reading for, and its latest reading.

The :class:`ReadingLedger` records, for every reading the concentrator accepts, the interval
slot it falls in (``floor(readingTime, period)``) and the meter's latest reading time. The
first gives completeness per meter per day (intervals present / intervals expected, e.g.
96 per day for a 15-minute profile); the second is where gap backfill starts after an outage
or a restart. Counting slots rather than readings makes duplicates (a live reading and a
backfilled one for the same interval) harmless.

The ledger is a small SQLite file next to the outbox. It is written with ``synchronous=NORMAL``:
losing its last commits on power loss only makes the next backfill start earlier, which the
cloud's idempotent writes absorb, whereas the outbox itself is fsynced on every commit.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from broker.lean import MeterReading

DAY_S = 86_400

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reading_slot (
    meter_id TEXT    NOT NULL,
    slot     INTEGER NOT NULL,
    PRIMARY KEY (meter_id, slot)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meter_state (
    meter_id     TEXT PRIMARY KEY,
    last_reading REAL NOT NULL
);
"""


# --- pure arithmetic -------------------------------------------------------------------------------

def slot_of(moment: datetime, period_s: float) -> int:
    """The start (epoch seconds) of the interval of ``period_s`` seconds that holds ``moment``."""
    if period_s <= 0:
        raise ValueError("period must be positive")
    stamp = moment.astimezone(UTC).timestamp()
    return int(math.floor(stamp / period_s) * period_s)


def expected_slots(day: date, period_s: float, now: datetime) -> int:
    """Intervals of ``day`` (UTC) that have started by ``now``: all of them for a past day."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    elapsed = min(max(now.astimezone(UTC).timestamp() - start, 0.0), DAY_S)
    if elapsed >= DAY_S:
        return math.ceil(DAY_S / period_s)
    return math.floor(elapsed / period_s) + 1 if elapsed > 0 else 0


def completeness_ratio(present: int, expected: int) -> float:
    """present/expected, capped at 1.0 (a meter read more often than its period is complete)."""
    if expected <= 0:
        return 1.0
    return round(min(present / expected, 1.0), 4)


# --- the ledger ------------------------------------------------------------------------------------

class ReadingLedger:
    """Reading slots and latest reading per meter, in SQLite; calls are short, synchronous commits."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def record(self, readings: Iterable[MeterReading], period_of: Callable[[str], float]) -> None:
        """Note the slot and time of each reading (one transaction)."""
        slots: set[tuple[str, int]] = set()
        latest: dict[str, float] = {}
        for reading in readings:
            meter_id = reading.meter_id
            slots.add((meter_id, slot_of(reading.reading_time, period_of(meter_id))))
            stamp = reading.reading_time.astimezone(UTC).timestamp()
            latest[meter_id] = max(stamp, latest.get(meter_id, stamp))
        if not slots:
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO reading_slot(meter_id, slot) VALUES (?, ?)", slots)
            self._db.executemany(
                "INSERT INTO meter_state(meter_id, last_reading) VALUES (?, ?) ON CONFLICT(meter_id) "
                "DO UPDATE SET last_reading = max(last_reading, excluded.last_reading)", latest.items())

    def last_reading(self, meter_id: str) -> datetime | None:
        """The newest reading time on record for ``meter_id`` (live or backfilled), or None."""
        row = self._db.execute("SELECT last_reading FROM meter_state WHERE meter_id = ?", (meter_id,)).fetchone()
        return datetime.fromtimestamp(row[0], UTC) if row else None

    def last_slot_before(self, meter_id: str, moment: datetime) -> datetime | None:
        """The start of the newest interval with a reading that began before ``moment``, or None."""
        row = self._db.execute("SELECT max(slot) FROM reading_slot WHERE meter_id = ? AND slot < ?",
                               (meter_id, moment.astimezone(UTC).timestamp())).fetchone()
        return datetime.fromtimestamp(row[0], UTC) if row and row[0] is not None else None

    def present(self, meter_id: str, day: date, period_s: float) -> int:
        """How many intervals of ``day`` (UTC) hold at least one reading."""
        start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
        row = self._db.execute(
            "SELECT count(*) FROM reading_slot WHERE meter_id = ? AND slot >= ? AND slot < ?",
            (meter_id, start, start + DAY_S)).fetchone()
        return int(row[0])

    def report(self, meter_id: str, *, period_s: float, days: int, now: datetime) -> dict[str, float]:
        """Completeness of the last ``days`` days (today included) as {ISO date: ratio}."""
        today = now.astimezone(UTC).date()
        out: dict[str, float] = {}
        for back in range(days - 1, -1, -1):
            day = today - timedelta(days=back)
            out[day.isoformat()] = completeness_ratio(self.present(meter_id, day, period_s),
                                                      expected_slots(day, period_s, now))
        return out

    def forget_before(self, moment: datetime) -> int:
        """Drop slots older than ``moment`` so the file stays small; returns how many went."""
        with self._db:
            cursor = self._db.execute("DELETE FROM reading_slot WHERE slot < ?", (int(moment.timestamp()),))
        return cursor.rowcount
