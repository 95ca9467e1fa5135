"""Bearer tokens: a verified token is remembered, and remembering changes no answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloud.auth import AuthError, decode_token, issue_token

SECRET = "k3y-for-tests-only-0123456789-abcdefgh"
OTHER = "an0ther-secret-for-tests-9876543210-xyz"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_remembered_token_still_expires_and_is_still_checked_against_its_secret() -> None:
    token = issue_token(secret=SECRET, org="utility", ttl=timedelta(minutes=5), now=NOW)
    assert decode_token(token, secret=SECRET, now=NOW).org == "utility"
    assert decode_token(token, secret=SECRET, now=NOW + timedelta(minutes=4)).org == "utility"  # remembered
    with pytest.raises(AuthError, match="expired"):
        decode_token(token, secret=SECRET, now=NOW + timedelta(minutes=5))
    with pytest.raises(AuthError, match="invalid token"):
        decode_token(token, secret=OTHER, now=NOW)
    with pytest.raises(AuthError, match="invalid token"):
        decode_token(token, secret=SECRET, now=NOW, issuer="https://issuer.example")
    head, body, signature = token.split(".")
    forged = ".".join((head, body, ("A" if signature[0] != "A" else "B") + signature[1:]))
    with pytest.raises(AuthError, match="invalid token"):
        decode_token(forged, secret=SECRET, now=NOW)


def test_a_remembered_tokens_claims_are_the_callers_own_copy() -> None:
    token = issue_token(secret=SECRET, org="utility", meters=["m-1"], now=NOW)
    first = decode_token(token, secret=SECRET, now=NOW)
    first.claims["org"] = "someone-else"
    assert decode_token(token, secret=SECRET, now=NOW).org == "utility"
