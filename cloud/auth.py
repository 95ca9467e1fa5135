"""Bearer tokens for the cloud API: HS256 JWTs naming an organisation and what it may read.

Claims: ``sub`` (who), ``org`` (the organisation), ``exp`` (required), ``scope`` (space-separated)
and ``meters`` (the meter ids the organisation may read). Only the OMDP app on its own
(``create_app`` without a registry: tests and benches) believes ``scope`` and ``meters``. The
platform app reads the organisation from the token and everything else from the registry
(:mod:`cloud.api.identity`): roles never come from a token.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from broker.errors import Forbidden

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
ADMIN_SCOPE = "admin"
# Tokens minted for another purpose (bulk links) carry ``typ``; a bearer token must not.
BEARER_TYPES = (None, "access")


# Shorter HS256 secrets can be brute-forced offline from any one token.
MIN_SECRET_LENGTH = 32
# Secrets found in examples and tutorials: an API that starts with one is open to anyone.
KNOWN_DEFAULTS = frozenset({"secret", "changeme", "change-me", "change_me", "changethis", "gridwire",
                            "your-secret-here", "jwt-secret", "supersecret", "password"})


def secret_problem(secret: str | None) -> str | None:
    """Why ``secret`` must not sign bearer tokens, or None if it may."""
    if not secret:
        return "GRIDWIRE_JWT_SECRET must be set: the API verifies bearer tokens with it"
    if secret.strip().lower() in KNOWN_DEFAULTS or len(set(secret)) < 8:
        return "GRIDWIRE_JWT_SECRET is a well-known default or too uniform; make one with `gridwire admin secret`"
    if len(secret) < MIN_SECRET_LENGTH:
        return (f"GRIDWIRE_JWT_SECRET has {len(secret)} characters, fewer than {MIN_SECRET_LENGTH}; "
                "make one with `gridwire admin secret`")
    return None


class AuthError(Forbidden):
    """A token that does not authenticate anyone; the message says why (safe to show the caller)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the organisation, its scopes, and the meters its token lists."""

    subject: str
    org: str
    scopes: frozenset[str] = frozenset()
    meters: frozenset[str] | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False)
    # The function groups the caller's credential is limited to (None: not limited).
    groups: frozenset[str] | None = None

    @property
    def admin(self) -> bool:
        return ADMIN_SCOPE in self.scopes


# Which meters a principal may read: a set, or None for every meter. Async so that a
# registry lookup (database, cache) can stand behind it.
MeterAccess = Callable[[Principal], Awaitable[frozenset[str] | None]]


async def meters_from_claims(principal: Principal) -> frozenset[str] | None:
    """The default MeterAccess: every meter for ``admin``, else the token's ``meters`` claim."""
    if principal.admin:
        return None
    return principal.meters or frozenset()


def issue_token(*, secret: str, org: str, subject: str | None = None, meters: Iterable[str] | None = None,
                scopes: Iterable[str] = (), ttl: timedelta = timedelta(hours=1), now: datetime | None = None,
                issuer: str | None = None) -> str:
    """Sign a bearer token (for operators' tooling, the demo and tests)."""
    moment = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": subject or org, "org": org, "iat": int(moment.timestamp()),
        "exp": int((moment + ttl).timestamp()), "scope": " ".join(sorted(set(scopes))),
    }
    if meters is not None:
        claims["meters"] = sorted(set(meters))
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


# Tokens whose signature was verified, with their claims: an application sends the same token
# with every request, and verifying it again (base64, JSON, HMAC) is a fair part of a request's
# CPU. What verification answers depends only on the token, the secret and the issuer, so a
# remembered answer is the same answer; times (exp, nbf) are checked on every use below.
_VERIFIED: dict[tuple[str, str, str | None], dict[str, Any]] = {}
_VERIFIED_MAX = 4096


def _verified_claims(token: str, secret: str, issuer: str | None) -> dict[str, Any]:
    key = (token, secret, issuer)
    claims = _VERIFIED.get(key)
    if claims is None:
        try:
            # Times are checked by decode_token against its ``now``, so an injected clock governs them.
            claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=issuer,
                                options={"require": ["exp", "org"], "verify_exp": False, "verify_iat": False,
                                         "verify_nbf": False})
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        _VERIFIED[key] = claims
    return dict(claims)


def decode_token(token: str, *, secret: str, now: datetime | None = None, issuer: str | None = None) -> Principal:
    """Verify signature, expiry and shape of a bearer token; raise AuthError with the reason."""
    claims = _verified_claims(token, secret, issuer)
    moment = now or datetime.now(UTC)
    if not isinstance(claims["exp"], int | float) or moment.timestamp() >= claims["exp"]:
        raise AuthError("token has expired")
    if isinstance(claims.get("nbf"), int | float) and moment.timestamp() < claims["nbf"]:
        raise AuthError("token is not valid yet")
    if claims.get("typ") not in BEARER_TYPES:
        raise AuthError("not a bearer token")
    org = claims["org"]
    if not isinstance(org, str) or not org:
        raise AuthError("token names no organisation")
    meters = claims.get("meters")
    if meters is not None and (not isinstance(meters, list) or not all(isinstance(m, str) for m in meters)):
        raise AuthError("claim 'meters' must be a list of meter ids")
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise AuthError("claim 'scope' must be a space-separated string")
    return Principal(subject=str(claims.get("sub") or org), org=org, scopes=frozenset(scope.split()),
                     meters=None if meters is None else frozenset(meters), claims=claims)
