"""The DLMS keys a concentrator changed on its meters, sealed, in a small SQLite file.

A key change is two-phase and must survive a kill at any point: the new keys are written here
as *pending* before the meter is asked to take them, and become *active* only once an
association with them has worked. Active keys here override the config file's (which still
holds the keys the meter was installed with). Every value is sealed with the concentrator's
sealing key ring for its place, ``meter:<meter id>:<name>``, as in the config file.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from broker.sealing import KeyRing

ACTIVE, PENDING = "active", "pending"


class DlmsKeyStore:
    """Active and pending DLMS keys per meter (hex, sealed at rest), and the last change confirmed."""

    def __init__(self, path: str | Path, ring: KeyRing) -> None:
        self.path = Path(path)
        self._ring = ring
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db:
            db.execute("CREATE TABLE IF NOT EXISTS dlms_key (meter_id TEXT NOT NULL, slot TEXT NOT NULL, "
                       "name TEXT NOT NULL, value TEXT NOT NULL, change_id TEXT NOT NULL, "
                       "PRIMARY KEY (meter_id, slot, name))")
            row = db.execute("SELECT meter_id, name, value FROM dlms_key LIMIT 1").fetchone()
        if row is not None:  # the wrong key is refused at start, not at the first key change it meets
            ring.open(row[2], context=f"meter:{row[0]}:{row[1]}")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def _slot(self, meter_id: str, slot: str) -> tuple[str | None, dict[str, str]]:
        with closing(self._connect()) as db:
            rows = db.execute("SELECT name, value, change_id FROM dlms_key WHERE meter_id = ? AND slot = ?",
                              (meter_id, slot)).fetchall()
        keys = {name: self._ring.open(value, context=f"meter:{meter_id}:{name}") for name, value, _ in rows}
        return (rows[0][2] if rows else None), keys

    def active(self, meter_id: str) -> tuple[str | None, dict[str, str]]:
        """The change that set the meter's keys last, and those keys (none: the config's keys hold)."""
        return self._slot(meter_id, ACTIVE)

    def pending(self, meter_id: str) -> tuple[str | None, dict[str, str]]:
        """The change begun and not confirmed, and its new keys (None, {}: none)."""
        return self._slot(meter_id, PENDING)

    def begin(self, meter_id: str, change_id: str, keys: dict[str, str]) -> None:
        """Keep ``keys`` as the meter's pending keys (replacing any other pending change), durably."""
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM dlms_key WHERE meter_id = ? AND slot = ?", (meter_id, PENDING))
            db.executemany("INSERT INTO dlms_key(meter_id, slot, name, value, change_id) VALUES (?, ?, ?, ?, ?)",
                           [(meter_id, PENDING, name, self._ring.seal(key, context=f"meter:{meter_id}:{name}"),
                             change_id) for name, key in keys.items()])
            db.execute("COMMIT")

    def promote(self, meter_id: str) -> str | None:
        """Make the pending keys active (the meter answered with them); the change id, or None."""
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT change_id FROM dlms_key WHERE meter_id = ? AND slot = ? LIMIT 1",
                             (meter_id, PENDING)).fetchone()
            if row is not None:
                names = [name for (name,) in db.execute(
                    "SELECT name FROM dlms_key WHERE meter_id = ? AND slot = ?", (meter_id, PENDING))]
                db.executemany("DELETE FROM dlms_key WHERE meter_id = ? AND slot = ? AND name = ?",
                               [(meter_id, ACTIVE, name) for name in names])
                # Active keys the change did not replace keep their place, under the new change id.
                db.execute("UPDATE dlms_key SET change_id = ? WHERE meter_id = ? AND slot = ?",
                           (row[0], meter_id, ACTIVE))
                db.execute("UPDATE dlms_key SET slot = ? WHERE meter_id = ? AND slot = ?",
                           (ACTIVE, meter_id, PENDING))
            db.execute("COMMIT")
        return row[0] if row is not None else None

    def drop_pending(self, meter_id: str) -> None:
        with closing(self._connect()) as db:
            db.execute("DELETE FROM dlms_key WHERE meter_id = ? AND slot = ?", (meter_id, PENDING))
