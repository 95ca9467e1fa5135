"""Sealed secrets: what is sealed opens only with its key and for its place; rings rotate; bad
keys are refused by name, and no key or value reaches a message or a repr."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.sealing import KeyRing, SealingError, is_sealed, new_key

RING = KeyRing.parse(new_key("k1"))


@settings(max_examples=60, deadline=None)
@given(clear=st.text(max_size=200), context=st.text(min_size=1, max_size=60))
def test_a_sealed_value_opens_to_its_clear_text_and_does_not_hold_it(clear: str, context: str) -> None:
    sealed = RING.seal(clear, context=context)
    assert is_sealed(sealed) and RING.key_id_of(sealed) == "k1"
    if len(clear) >= 4:
        assert clear not in sealed
    assert RING.open(sealed, context=context) == clear


def test_two_seals_of_one_value_differ() -> None:
    assert RING.seal("00112233445566778899aabbccddeeff", context="c") != RING.seal(
        "00112233445566778899aabbccddeeff", context="c")


def test_another_place_another_key_or_a_changed_value_is_refused_by_name() -> None:
    sealed = RING.seal("secret-password", context="meter:E1:password")
    with pytest.raises(SealingError, match="meter:E2:password: sealed value does not open with key 'k1'"):
        RING.open(sealed, context="meter:E2:password")
    impostor = KeyRing.parse(new_key("k1"))  # same id, another key
    with pytest.raises(SealingError, match="does not open with key 'k1'") as caught:
        impostor.open(sealed, context="meter:E1:password")
    assert "secret-password" not in str(caught.value)
    other = KeyRing.parse(new_key("k2"))
    with pytest.raises(SealingError, match="sealed with key 'k1', which the sealing key ring \\(k2\\) does not hold"):
        other.open(sealed, context="meter:E1:password")
    flipped = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
    with pytest.raises(SealingError):
        RING.open(flipped, context="meter:E1:password")
    with pytest.raises(SealingError, match="malformed sealed value"):
        RING.open("sealed:v1:k1:abc", context="x")


def test_a_ring_rotates_the_first_key_seals_every_key_opens() -> None:
    old, new = new_key("old"), new_key("new")
    before = KeyRing.parse(old)
    sealed = before.seal("k", context="c")
    during = KeyRing.parse(f"{new},{old}")
    assert during.open(sealed, context="c") == "k" and during.needs_reseal(sealed)
    resealed = during.reseal(sealed, context="c")
    assert during.key_id_of(resealed) == "new" and not during.needs_reseal(resealed)
    after = KeyRing.parse(new)
    assert after.open(resealed, context="c") == "k"
    with pytest.raises(SealingError, match="'old'"):
        after.open(sealed, context="c")


@pytest.mark.parametrize(("text", "reason"), [
    ("", "no sealing key given"),
    ("k1", "is not '<id>:<base64url key>'"),
    ("k1:c2hvcnQ", "is 5 bytes; a sealing key is 32 bytes"),
    ("k1:!!!!", "is not base64url"),
    ("bad id:" + "A" * 43, "is not '<id>:<base64url key>'"),
])
def test_a_short_or_malformed_key_is_refused_by_name(text: str, reason: str) -> None:
    with pytest.raises(SealingError, match=reason):
        KeyRing.parse(text)


def test_a_key_id_twice_is_refused_and_repr_shows_ids_only() -> None:
    key = new_key("same")
    with pytest.raises(SealingError, match="appears twice"):
        KeyRing.parse(f"{key},{key}")
    assert repr(RING) == "KeyRing(k1)" and key.split(":")[1] not in repr(KeyRing.parse(key))
