"""Device events into the durable outbox, each once, across restarts.

An event (a DLMS push, an entry of a P1 meter's power failure log, a failed firmware
transfer) is put in the same outbox as readings and travels as they do: published on
``concentrator/{cid}/event/{device}`` with its sequence number, kept until the cloud confirms
it stored it, sent again otherwise.

Some sources repeat themselves: a P1 meter sends its whole power failure log in every
telegram, once a second, for years. A small table next to the completeness ledger remembers
the ids of the events already put in the outbox, so each goes in once, also after a restart.
It is written after the outbox commit with ``synchronous=NORMAL``: a crash between the two, or
power lost before its last commit reached the disk, puts an event in the outbox a second time,
and the cloud's store, keyed by the event id, keeps one.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from broker import topics
from broker.lean import DeviceEvent
from edge.outbox import Keep, Outbox, OutboxFull

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS event_seen (
    event_id TEXT PRIMARY KEY,
    seen_at  REAL NOT NULL
) WITHOUT ROWID;
"""


class DeviceEvents:
    """The concentrator's way in for device events: dedupe, then the outbox, then wake the forwarder."""

    def __init__(self, *, outbox: Outbox, concentrator_id: str, state: Path,
                 notify: Callable[[], None] = lambda: None) -> None:
        self._outbox = outbox
        self._cid = concentrator_id
        self._notify = notify
        state.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(state, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        # Counts for the status and metrics.
        self.submitted = 0
        self.repeated = 0
        self.refused = 0

    def submit(self, events: Iterable[DeviceEvent]) -> list[DeviceEvent]:
        """Put the events not seen before in the outbox (durably, before this returns); the new ones."""
        fresh: dict[str, DeviceEvent] = {}
        for event in events:
            key = str(event.event_id)
            if key in fresh or self._seen(key):
                self.repeated += 1
                continue
            fresh[key] = event
        if not fresh:
            return []
        new = list(fresh.values())
        try:
            # Events give way last at the outbox limit: a meter's log may not keep them.
            self._outbox.put_many([(topics.concentrator_event(self._cid, e.device_id), e.to_wire()) for e in new],
                                  keep=Keep.EVENT)
        except OutboxFull as exc:
            self.refused += len(new)
            log.error("%d device events not kept: %s (%d refused since start)", len(new), exc, self.refused)
            return []
        now = time.time()
        self._db.execute("BEGIN")
        self._db.executemany("INSERT OR IGNORE INTO event_seen (event_id, seen_at) VALUES (?, ?)",
                             [(key, now) for key in fresh])
        self._db.execute("COMMIT")
        self.submitted += len(new)
        for event in new:
            log.info("event %s of %s at %s (%s) queued", event.event_type, event.device_id,
                     event.occurred_at.isoformat(), event.source)
        self._notify()
        return new

    def _seen(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM event_seen WHERE event_id = ?", (key,)).fetchone() is not None

    def close(self) -> None:
        self._db.close()
