"""The pure command lifecycle: its table, as documented, the errors it ends commands with, retries."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cloud.core.lifecycle
from broker.backoff import Backoff
from broker.errors import Invalid
from broker.schemas.command import CommandError, CommandStatus
from cloud.core.lifecycle import (
    FINAL,
    OPEN,
    TRANSITIONS,
    InvalidTransition,
    RetryPolicy,
    can_become,
    check_new,
    ends_from,
    is_communication_failure,
    is_transient_failure,
    overdue,
    sources,
)

S = CommandStatus
ROOT = Path(__file__).resolve().parents[3]
statuses = st.sampled_from(list(CommandStatus))


def _table(text: str) -> dict[CommandStatus, frozenset[CommandStatus]]:
    """The ``| from | may become |`` table in ``text``, as a transition map."""
    found = re.search(r"^\|\s*from\s*\|\s*may become", text, re.MULTILINE)
    assert found is not None, "no lifecycle table"
    start = found.start()
    table: dict[CommandStatus, frozenset[CommandStatus]] = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        sources_cell, targets_cell = (cell.strip() for cell in line.strip("|").split("|"))
        targets = frozenset(S(t) for t in re.findall(r"[A-Z]+", targets_cell) if t in S.__members__)
        for source in re.findall(r"[A-Z]+", sources_cell):
            table[S(source)] = targets
    return table


def test_every_status_is_in_the_table_and_finals_lead_nowhere() -> None:
    assert set(TRANSITIONS) == set(CommandStatus)
    assert {s for s, targets in TRANSITIONS.items() if not targets} == set(FINAL) == {s for s in S if s.final}
    assert set(OPEN) == set(CommandStatus) - set(FINAL)


@pytest.mark.parametrize("where", ["docs/ARCHITECTURE.md", "module docstring"])
def test_the_documented_table_is_the_code(where: str) -> None:
    text = (cloud.core.lifecycle.__doc__ or "") if where == "module docstring" else (ROOT / where).read_text()
    assert _table(text) == dict(TRANSITIONS)


def test_what_the_store_compares_against() -> None:
    assert sources(S.SENT) == (S.QUEUED,)
    assert sources(S.DELIVERED) == (S.SENT,)
    assert sources(S.QUEUED) == (S.SENT, S.DELIVERED)
    for final in FINAL:
        assert sources(final) == ends_from(final) == OPEN


@given(statuses, statuses)
def test_sources_name_exactly_the_statuses_that_may_become_the_target(current: CommandStatus,
                                                                       target: CommandStatus) -> None:
    try:
        found = sources(target)
    except InvalidTransition:
        found = ()  # nothing leads there
    assert can_become(current, target) == (current in found)


@given(statuses)
def test_only_a_final_status_ends_a_command(status: CommandStatus) -> None:
    if status.final:
        assert ends_from(status) == OPEN
    else:
        with pytest.raises(InvalidTransition):
            ends_from(status)


@given(statuses)
def test_a_new_command_is_stored_queued_sent_or_final(status: CommandStatus) -> None:
    if status is S.SENT or status.final:
        check_new(status)
    else:
        with pytest.raises(InvalidTransition) as raised:
            check_new(status)
        # One of the error family's kinds, and still the ValueError it always was.
        assert isinstance(raised.value, Invalid) and isinstance(raised.value, ValueError)


def test_overdue_commands_expire_unsent_and_time_out_in_flight() -> None:
    status, error = overdue(S.QUEUED)
    assert status is S.EXPIRED and error.code == "EXPIRED" and "before it could be sent" in error.message
    for in_flight in (S.SENT, S.DELIVERED):
        status, error = overdue(in_flight)
        assert status is S.TIMEOUT and error.code == "TIMEOUT"
    for final in FINAL:
        with pytest.raises(InvalidTransition):
            overdue(final)


def test_which_outcomes_are_retried_and_which_count_against_the_device() -> None:
    flaky = CommandError(code="DEVICE_UNREACHABLE", message="no answer", transient=True)
    broken = CommandError(code="DEVICE_ERROR", message="refused")
    assert is_transient_failure(S.FAILED, flaky)
    assert not is_transient_failure(S.FAILED, broken) and not is_transient_failure(S.FAILED, None)
    assert not is_transient_failure(S.TIMEOUT, flaky)
    assert is_communication_failure(S.TIMEOUT, None) and is_communication_failure(S.FAILED, flaky)
    assert not is_communication_failure(S.FAILED, broken) and not is_communication_failure(S.SUCCEEDED, None)


NOW = datetime(2026, 1, 1, tzinfo=UTC)


@given(st.integers(1, 5), st.integers(0, 8), st.floats(0.01, 5), st.floats(0, 60), st.floats(0, 120))
def test_a_retry_waits_within_the_backoff_and_never_past_the_ttl(max_attempts: int, attempts: int, initial: float,
                                                                 more: float, ttl: float) -> None:
    backoff = Backoff(initial=initial, maximum=initial + more)
    policy = RetryPolicy(max_attempts=max_attempts, backoff=backoff)
    expires = NOW + timedelta(seconds=ttl)
    at = policy.retry_at(attempts=attempts, now=NOW, expires_at=expires)
    # Attempts count from 1 (the first send), backoff retries from 0.
    ceiling = backoff.ceiling(attempts - 1)
    if attempts >= max_attempts:
        assert at is None
    elif at is not None:
        assert NOW < at < expires
        assert (at - NOW).total_seconds() <= ceiling + 1e-6
    else:
        # Refused only because the wait drawn would outlast the TTL, which no wait shorter than the ceiling does.
        assert ttl <= ceiling
