"""The outbox's schema across versions (edge/outbox_schema.py): a newer version's additive
migration leaves the outbox readable by the older one; a non-additive one is refused without a
downgrade, recorded with it, and undone by :func:`downgrade` with every message kept; a version
never opens an outbox it cannot read. (The same with real processes and a rollback:
tests/edge/ota/test_self_update.py.)"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from broker.errors import Invalid
from edge import outbox_schema
from edge.outbox import Outbox
from edge.outbox_schema import Migration, OutboxUnreadable, downgrade

ADD_COLUMN = Migration(up="ALTER TABLE outbox ADD COLUMN origin TEXT NOT NULL DEFAULT 'local';", additive=True)
# Not additive: the payload moves to a table of its own; the older version finds no payload column.
SPLIT_PAYLOAD = Migration(
    up="""
CREATE TABLE outbox_payload (seq INTEGER PRIMARY KEY, body BLOB NOT NULL);
INSERT INTO outbox_payload SELECT seq, payload FROM outbox;
ALTER TABLE outbox DROP COLUMN payload;
""",
    additive=False,
    down="""
ALTER TABLE outbox ADD COLUMN payload BLOB NOT NULL DEFAULT x'';
UPDATE outbox SET payload = (SELECT body FROM outbox_payload p WHERE p.seq = outbox.seq);
DROP TABLE outbox_payload;
""")


@contextmanager
def release(*steps: Migration) -> Iterator[None]:
    """Run as a release whose outbox schema has these steps."""
    saved = list(outbox_schema.MIGRATIONS)
    outbox_schema.MIGRATIONS[:] = list(steps)
    try:
        yield
    finally:
        outbox_schema.MIGRATIONS[:] = saved


def schema(path: Path) -> tuple[int, int]:
    db = sqlite3.connect(path)
    try:
        return outbox_schema.recorded(db)
    finally:
        db.close()


def test_an_additive_step_leaves_the_outbox_readable_by_the_version_before(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    a = Outbox(path)
    a.put("t/1", b"by A")
    a.close()
    assert schema(path) == (1, 1)
    with release(ADD_COLUMN):
        b = Outbox(path)
        assert b.schema == 2
        b.put("t/2", b"by B")
        b.close()
    assert schema(path) == (2, 1)
    a = Outbox(path)  # A again: reads and writes B's outbox as it is
    a.put("t/3", b"by A again")
    assert [m.payload for m in a.after(0, limit=10)] == [b"by A", b"by B", b"by A again"]
    a.close()


def test_a_non_additive_step_without_a_downgrade_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    Outbox(path).close()
    with release(Migration(up=SPLIT_PAYLOAD.up, additive=False)), pytest.raises(Invalid, match="no downgrade"):
        Outbox(path)
    assert schema(path) == (1, 1)
    Outbox(path).close()


def test_the_version_before_refuses_a_non_additive_outbox_and_reads_it_after_the_downgrade(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    a = Outbox(path)
    a.put("t/1", b"by A")
    a.close()
    with release(ADD_COLUMN, SPLIT_PAYLOAD):
        b = Outbox(path)
        b.close()
        db = sqlite3.connect(path)
        db.execute("INSERT INTO outbox (topic, priority, created, keep) VALUES ('t/2', 4, 0, 1)")
        db.execute("INSERT INTO outbox_payload VALUES (last_insert_rowid(), x'6279204221')")  # b"by B!"
        db.commit()
        db.close()
    assert schema(path) == (3, 3)
    with pytest.raises(OutboxUnreadable, match="readable from schema 3"):
        Outbox(path)
    with release(ADD_COLUMN):  # a version with the additive step only cannot read it either
        with pytest.raises(OutboxUnreadable):
            Outbox(path)
    assert downgrade(path, 1) == (2, 1)  # the non-additive step undone; the additive one is read as is
    a = Outbox(path)
    assert [(m.topic, m.payload) for m in a.after(0, limit=10)] == [("t/1", b"by A"), ("t/2", b"by B!")]
    a.close()
    assert downgrade(path, 1) == (2, 1)  # again: nothing to do


def test_a_downgrade_with_nothing_recorded_says_so(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    Outbox(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE outbox_schema SET version = 5, readable_from = 5")
    db.commit()
    db.close()
    with pytest.raises(OutboxUnreadable, match="no recorded downgrade"):
        downgrade(path, 1)
    assert downgrade(tmp_path / "absent.sqlite", 1) == (1, 1)
