"""Whether the concentrator's clock has been compared with the cloud's since it started.

An appliance that boots without network has only its own clock (an RTC, or whatever the
system restored) to stamp the readings it takes itself (DLMS and Modbus polls; a P1 telegram
and a load-profile row carry the meter's time). Until its first time exchange with the cloud
succeeds, such readings carry a :class:`~broker.schemas.ClockState`: free-running since the
start, and the offset measured at the last exchange before it (kept in the state database), so
the cloud can flag them and judge how far off they may be. The first exchange ends this.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from broker.lean import ClockState

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clock_sync (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    offset_s  REAL NOT NULL,
    synced_at REAL NOT NULL
);
"""


class ConcentratorClock:
    """This process's clock state; :meth:`synced` records each successful time exchange."""

    def __init__(self, path: Path, *, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT offset_s, synced_at FROM clock_sync WHERE id = 1").fetchone()
        self.last_offset: float | None = row[0] if row else None
        self.last_synced_at: float | None = row[1] if row else None
        self._monotonic, self._wall = monotonic, wall
        self._started = monotonic()
        self.synchronised = False

    def close(self) -> None:
        self._db.close()

    def state(self) -> ClockState | None:
        """What a reading stamped now carries: None once the clock was compared this run."""
        if self.synchronised:
            return None
        return ClockState(synchronised=False, freeRunningSeconds=round(self._monotonic() - self._started, 3),
                          lastOffsetSeconds=self.last_offset,
                          lastSyncedAt=datetime.fromtimestamp(self.last_synced_at, UTC)
                          if self.last_synced_at is not None else None)

    def synced(self, offset: float) -> None:
        """A time exchange succeeded: the cloud's clock is ``offset`` seconds ahead of ours."""
        if not self.synchronised:
            log.info("clock compared with the cloud's after %.1f s free-running: offset %+.3f s (last known %s)",
                     self._monotonic() - self._started, offset,
                     "none" if self.last_offset is None else f"{self.last_offset:+.3f} s")
        self.synchronised = True
        self.last_offset, self.last_synced_at = offset, self._wall()
        self._db.execute("INSERT INTO clock_sync (id, offset_s, synced_at) VALUES (1, ?, ?) "
                         "ON CONFLICT (id) DO UPDATE SET offset_s = excluded.offset_s, synced_at = excluded.synced_at",
                         (offset, self.last_synced_at))
