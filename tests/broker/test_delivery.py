"""``gw-seq`` as a live batch writes it: a message's sequence numbers in order, as ranges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.schemas import parse_seq_list, seq_list
from broker.schemas.delivery import MAX_SEQS


@given(st.lists(st.integers(min_value=0, max_value=2**40), max_size=300))
def test_any_sequence_numbers_round_trip_in_their_order(seqs: list[int]) -> None:
    if seqs:
        assert parse_seq_list(seq_list(seqs)) == seqs


def test_runs_are_written_as_ranges_and_a_lone_number_as_itself() -> None:
    assert seq_list([7]) == "7"  # what a one-reading message carries
    assert seq_list([41, 42, 43, 57, 60, 61]) == "41-43,57,60-61"
    assert seq_list([5, 3]) == "5,3"


@pytest.mark.parametrize("raw", ["", "a", "1,,2", "3-1", "1-", "-1", "1 2", "0x10", f"1-{MAX_SEQS + 1}"])
def test_a_malformed_or_oversized_list_is_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_seq_list(raw)
