"""Durable per-meter DLMS invocation counters (SQLite), so a restart never reuses one.

A meter refuses a ciphered request whose invocation counter is not above the last one it saw,
and reusing a counter with the same key breaks AES-GCM. So before an association starts we
*reserve* a block of counters on disk (``reserve``), and when it ends cleanly we record the
exact next value (``commit``). A crash mid-association skips at most one block, which is
harmless: counters only have to increase.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

# Frames one association may send before it must have committed; far above what a read uses.
RESERVATION = 10_000


class InvocationCounterStore:
    """Next-invocation-counter per meter in a small SQLite file owned by the DLMS adapter."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Calls are sub-millisecond single-row writes, so they run inline on the event loop.
        with closing(self._connect()) as db:
            db.execute("CREATE TABLE IF NOT EXISTS invocation_counter ("
                       "meter_id TEXT PRIMARY KEY, next_value INTEGER NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def get(self, meter_id: str) -> int:
        """The next counter value to use for ``meter_id`` (0 for a meter never talked to)."""
        with closing(self._connect()) as db:
            row = db.execute("SELECT next_value FROM invocation_counter WHERE meter_id = ?", (meter_id,)).fetchone()
        return int(row[0]) if row else 0

    def reserve(self, meter_id: str) -> int:
        """Return the counter to start from and durably move the stored value past a block of them."""
        start = self.get(meter_id)
        self._put(meter_id, start + RESERVATION)
        return start

    def commit(self, meter_id: str, next_value: int) -> None:
        """Record the next counter after a clean association (never moves backwards past it)."""
        self._put(meter_id, next_value)

    def _put(self, meter_id: str, value: int) -> None:
        with closing(self._connect()) as db:
            db.execute("INSERT INTO invocation_counter(meter_id, next_value) VALUES(?, ?) "
                       "ON CONFLICT(meter_id) DO UPDATE SET next_value = excluded.next_value",
                       (meter_id, value))
