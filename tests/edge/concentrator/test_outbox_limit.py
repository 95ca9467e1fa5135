"""The outbox at its limit: live values give way first, then load-profile readings, then events;
every message given up is counted and logged, the level is logged at 80% and at 100%."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.outbox import Keep, Outbox, OutboxFull


def put(outbox: Outbox, keep: Keep, *names: str) -> None:
    outbox.put_many([(f"t/{name}", name.encode()) for name in names], keep=keep)


def held(outbox: Outbox) -> list[str]:
    return [m.payload.decode() for m in outbox.after(0, limit=1000)]


def test_at_the_limit_the_oldest_live_values_give_way_first_and_are_logged(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edge.outbox")
    outbox = Outbox(tmp_path / "outbox.sqlite", max_messages=10)
    put(outbox, Keep.PROFILE, "p1", "p2")
    put(outbox, Keep.LIVE, *[f"l{n}" for n in range(1, 7)])
    assert (len(outbox), outbox.level) == (8, "HIGH")
    assert "outbox at 80% of its limit (8 of 10 messages)" in caplog.text
    put(outbox, Keep.EVENT, "e1", "e2")
    assert (len(outbox), outbox.level) == (10, "FULL")
    assert "outbox full: 10 messages, its limit" in caplog.text

    put(outbox, Keep.LIVE, "l7", "l8", "l9")
    assert held(outbox) == ["p1", "p2", "l4", "l5", "l6", "e1", "e2", "l7", "l8", "l9"]
    assert outbox.shed == {Keep.LIVE: 3, Keep.PROFILE: 0, Keep.EVENT: 0}
    assert "gave up the 3 oldest live messages (seq 3-5)" in caplog.text

    # A load-profile reading displaces live values while there are any, then older profile ones.
    put(outbox, Keep.PROFILE, *[f"p{n}" for n in range(3, 11)])
    assert held(outbox) == ["e1", "e2", *[f"p{n}" for n in range(3, 11)]]
    assert outbox.shed == {Keep.LIVE: 9, Keep.PROFILE: 2, Keep.EVENT: 0}
    # Within the minute after a line, what is given up is summed up for the next one (here: at close).
    assert "gave up the 6 oldest live" not in caplog.text

    # A live value cannot displace what is kept before it: refused, loudly, nothing changed.
    with pytest.raises(OutboxFull, match="kept before live"):
        put(outbox, Keep.LIVE, "l10")
    assert len(held(outbox)) == 10

    outbox.delete([m.seq for m in outbox.after(0, limit=5)])
    assert outbox.level == "OK"
    assert "outbox back below 80% of its limit" in caplog.text
    outbox.close()
    assert "gave up the 6 oldest live messages (seq 6-13)" in caplog.text
    assert "gave up the 2 oldest profile messages (seq 1-2)" in caplog.text

    # The count and the classes survive a restart (the level is known at once).
    reopened = Outbox(tmp_path / "outbox.sqlite", max_messages=5)
    assert (len(reopened), reopened.level) == (5, "FULL")
    put(reopened, Keep.EVENT, "e3")
    assert held(reopened) == ["p7", "p8", "p9", "p10", "e3"]  # the oldest profile reading went, not an event
    reopened.close()


def test_an_outbox_written_before_the_classes_opens_with_all_its_messages_live(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
                   "payload BLOB NOT NULL, priority INTEGER NOT NULL DEFAULT 4, created REAL NOT NULL, expires REAL)")
        db.execute("INSERT INTO outbox (topic, payload, created) VALUES ('t/old', X'6f6c64', 0)")
    outbox = Outbox(path, max_messages=1)
    put(outbox, Keep.PROFILE, "new")
    assert held(outbox) == ["new"] and outbox.shed[Keep.LIVE] == 1
    outbox.close()


@settings(max_examples=40, deadline=None)
@given(limit=st.integers(1, 6), puts=st.lists(st.tuples(st.sampled_from(list(Keep)), st.integers(1, 4)), max_size=12))
def test_nothing_leaves_the_outbox_unaccounted(tmp_path_factory, limit, puts):
    """Against a model: each put keeps its messages (refused whole if it cannot), displacing the
    oldest of the lowest class present at or below its own; every message is held, counted as
    given up, or refused."""
    outbox = Outbox(tmp_path_factory.mktemp("outbox") / "o.sqlite", max_messages=limit)
    model: list[tuple[Keep, str]] = []
    given_up = dict.fromkeys(Keep, 0)
    refused = sent = 0
    for keep, n in puts:
        names = [f"m{sent + i}" for i in range(n)]
        sent += n
        excess = len(model) + n - limit
        candidates = sorted((m for m in model if m[0] <= keep), key=lambda m: (m[0], model.index(m)))
        if n > limit or excess > len(candidates):
            with pytest.raises(OutboxFull):
                put(outbox, keep, *names)
            refused += n
            continue
        put(outbox, keep, *names)
        for victim in candidates[:max(excess, 0)]:
            model.remove(victim)
            given_up[victim[0]] += 1
        model += [(keep, name) for name in names]
        assert held(outbox) == [name for _, name in model]
    assert outbox.shed == given_up
    assert len(outbox) + sum(outbox.shed.values()) + refused == sent
    outbox.close()
