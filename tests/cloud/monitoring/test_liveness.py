"""Which birth or death to believe: stale wills and replayed births are ignored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from broker.schemas import ConcentratorStatus
from cloud.monitoring import HeldStatus, decide

T = datetime(2025, 6, 1, 12, tzinfo=UTC)


def status(state: str, session: int, at: datetime) -> ConcentratorStatus:
    return ConcentratorStatus(concentratorId="c", state=state, session=session, timestamp=at)


def test_birth_then_own_death_then_next_birth() -> None:
    held = decide(None, status("ONLINE", 1, T), received_at=T)
    assert held == HeldStatus("ONLINE", 1, T)
    # The will was stamped at connect time, before the birth, yet it is the death of session 1.
    dead = decide(held, status("OFFLINE", 1, T - timedelta(seconds=1)), received_at=T + timedelta(minutes=1))
    assert dead is not None and dead.state == "OFFLINE"
    assert decide(dead, status("ONLINE", 1, T), received_at=T) is None  # replayed birth of the dead connection
    again = decide(dead, status("ONLINE", 2, T + timedelta(minutes=2)), received_at=T + timedelta(minutes=2))
    assert again == HeldStatus("ONLINE", 2, T + timedelta(minutes=2))


def test_stale_will_of_an_older_connection_is_ignored() -> None:
    held = HeldStatus("ONLINE", 5, T)
    assert decide(held, status("OFFLINE", 4, T - timedelta(minutes=5)), received_at=T + timedelta(seconds=1)) is None


def test_unnumbered_will_is_believed_and_beats_a_replayed_older_birth() -> None:
    held = HeldStatus("ONLINE", 3, T)
    dead = decide(held, status("OFFLINE", 0, T - timedelta(hours=1)), received_at=T + timedelta(seconds=30))
    assert dead == HeldStatus("OFFLINE", 0, T + timedelta(seconds=30))
    assert decide(dead, status("ONLINE", 3, T), received_at=T + timedelta(seconds=31)) is None


def test_restarted_concentrator_with_reset_counter_comes_online() -> None:
    held = HeldStatus("OFFLINE", 7, T)
    assert decide(held, status("ONLINE", 1, T + timedelta(hours=1)), received_at=T) == HeldStatus(
        "ONLINE", 1, T + timedelta(hours=1))


@given(st.lists(st.tuples(st.sampled_from(["ONLINE", "OFFLINE"]), st.integers(0, 5), st.integers(0, 600)),
                max_size=20))
def test_never_goes_back_to_an_older_connection(messages: list[tuple[str, int, int]]) -> None:
    held: HeldStatus | None = None
    for state, session, secs in messages:
        new = decide(held, status(state, session, T + timedelta(seconds=secs)), received_at=T)
        if new is not None:
            if held is not None and state == "OFFLINE" and session > 0:
                assert session >= held.session
            if held is not None and state == "ONLINE":
                assert new.status_at > held.status_at
            held = new
