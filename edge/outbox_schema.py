"""The outbox's schema across software versions: what a version writes, what it can read, and
how an update's rollback gets the outbox back to a shape the previous version reads.

Every outbox records two numbers (table ``outbox_schema``): ``version``, the schema it has, and
``readable_from``, the oldest schema whose software can still read it. A release declares its
own schema as ``SCHEMA_BASE + len(MIGRATIONS)`` (:func:`release_schema`): it reads every outbox
whose ``readable_from`` is at or below that, and never opens one it cannot read
(:class:`OutboxUnreadable`; the concentrator does not start).

A release that brings a newer schema migrates the outbox when it opens it, one
:class:`Migration` per step, each in one transaction with its bookkeeping:

- **additive** (a column with a default, a table, an index): the previous schema still reads
  and writes the outbox; ``readable_from`` stays;
- **not additive**: ``readable_from`` becomes the new schema, and the migration must carry the
  SQL that undoes it (``down``): it is refused (:class:`broker.errors.Invalid`) without one. The
  step and its ``down`` are recorded in the outbox itself (table ``outbox_downgrade``) before
  anything changes, so the version rolled back to needs no knowledge of the newer one.

On a rollback the supervisor calls :func:`downgrade` with the schema the previous version
declared (recorded in ``update.json`` when it installed the update): the recorded steps run
newest first until the previous version can read the outbox, every message kept.

Standard library only: the supervisor (``edge/selfupdate/supervisor.py``) imports this.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from broker.errors import Invalid

log = logging.getLogger(__name__)

# The outbox's first recorded schema (the table edge/outbox.py creates).
SCHEMA_BASE = 1

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS outbox_schema (
    one           INTEGER PRIMARY KEY CHECK (one = 1),
    version       INTEGER NOT NULL,
    readable_from INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_downgrade (
    from_version  INTEGER PRIMARY KEY,
    readable_from INTEGER NOT NULL,  -- the outbox's readable_from before this step
    down          TEXT               -- NULL: additive, nothing to undo
);
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the outbox's schema, to the version after the previous step's.

    ``up`` and ``down`` are SQL scripts; ``down`` restores the outbox of the schema before,
    every message in it."""

    up: str
    additive: bool
    down: str | None = None


# This release's steps past SCHEMA_BASE, oldest first. A release with a newer outbox appends.
MIGRATIONS: list[Migration] = []


class OutboxUnreadable(Invalid):
    """An outbox written by a newer version that this version cannot read."""


def release_schema() -> int:
    """The outbox schema this release writes (and the newest it reads)."""
    return SCHEMA_BASE + len(MIGRATIONS)


def recorded(db: sqlite3.Connection) -> tuple[int, int]:
    """The outbox's ``(version, readable_from)``; an outbox from before the record is the base."""
    db.executescript(_BOOKKEEPING)
    row = db.execute("SELECT version, readable_from FROM outbox_schema").fetchone()
    return (SCHEMA_BASE, SCHEMA_BASE) if row is None else (row[0], row[1])


def open_for_release(db: sqlite3.Connection, path: Path) -> int:
    """Check this release can read the outbox and migrate it forward to this release's schema
    (called by :class:`edge.outbox.Outbox` once its base table exists); the outbox's version."""
    mine = release_schema()
    version, readable_from = recorded(db)
    if readable_from > mine:
        raise OutboxUnreadable(
            f"the outbox {path} has schema {version}, readable from schema {readable_from} on; this version "
            f"reads up to schema {mine}: it will not start on it (a rollback runs the recorded downgrade)")
    for number in range(version + 1, mine + 1):
        step = MIGRATIONS[number - SCHEMA_BASE - 1]
        if not step.additive and not step.down:
            raise Invalid(f"outbox schema {number} is not additive and has no downgrade: a rollback could not "
                          f"give the previous version an outbox it reads, so it is not applied")
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("INSERT OR REPLACE INTO outbox_downgrade VALUES (?, ?, ?)",
                       (number, readable_from, None if step.additive else step.down))
            _script(db, step.up)
            readable_from = readable_from if step.additive else number
            _set(db, number, readable_from)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        log.info("outbox %s migrated to schema %d (readable from schema %d)", path, number, readable_from)
        version = number
    if version == SCHEMA_BASE and readable_from == SCHEMA_BASE:
        db.execute("INSERT OR IGNORE INTO outbox_schema VALUES (1, ?, ?)", (version, readable_from))
    return version


def downgrade(path: Path, to: int) -> tuple[int, int]:
    """Undo the outbox's recorded steps, newest first, until software of schema ``to`` reads it
    (each step in one transaction); the outbox's ``(version, readable_from)`` after. Nothing to
    do when it already does; an outbox that does not exist is left alone."""
    if not path.exists():
        return (SCHEMA_BASE, SCHEMA_BASE)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=FULL")
        version, readable_from = recorded(db)
        while readable_from > to and version > to:
            row = db.execute("SELECT readable_from, down FROM outbox_downgrade WHERE from_version = ?",
                             (version,)).fetchone()
            if row is None:
                raise OutboxUnreadable(f"the outbox {path} has schema {version} and no recorded downgrade from it: "
                                       f"schema {to} cannot read it")
            before, down = row
            db.execute("BEGIN IMMEDIATE")
            try:
                if down:
                    _script(db, down)
                db.execute("DELETE FROM outbox_downgrade WHERE from_version = ?", (version,))
                _set(db, version - 1, before)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            log.info("outbox %s downgraded from schema %d to %d (readable from schema %d)", path, version,
                     version - 1, before)
            version, readable_from = version - 1, before
        return version, readable_from
    finally:
        db.close()


def _set(db: sqlite3.Connection, version: int, readable_from: int) -> None:
    db.execute("INSERT OR REPLACE INTO outbox_schema VALUES (1, ?, ?)", (version, readable_from))


def _script(db: sqlite3.Connection, script: str) -> None:
    """Run the statements of ``script`` inside the caller's transaction (``executescript``
    would commit it)."""
    for statement in _statements(script):
        db.execute(statement)


def _statements(script: str) -> list[str]:
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
