"""Tokens from an external identity provider (OIDC): RS256 or ES256, checked against its JWKS.

:class:`JwksVerifier` keeps the provider's public keys by ``kid``: fetched at first use, again
once they are ``jwks_cache_seconds`` old, and at once for a ``kid`` it does not know (the
provider rotated its keys), at most once per ``jwks_refetch_seconds`` so unknown kids cannot make
it hammer the provider. Issuer, audience and expiry are required and checked. The token's
``org_claim`` names the organisation; what that organisation may do is the registry's answer,
never the token's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from cloud.auth import AuthError
from cloud.settings import OidcSettings

log = logging.getLogger(__name__)

ALGORITHMS = ("RS256", "ES256")
_KEY_TYPE = {"RS256": "RSA", "ES256": "EC"}


@dataclass(frozen=True, slots=True)
class External:
    """Who an identity provider's token names."""

    organisation: str
    subject: str


class JwksVerifier:
    """Verify an identity provider's tokens with its published keys (see the module doc)."""

    def __init__(self, settings: OidcSettings, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        if not settings.issuer or not settings.audience:
            raise ValueError("an identity provider needs GRIDWIRE_OIDC_ISSUER and GRIDWIRE_OIDC_AUDIENCE")
        self._settings = settings
        self._url = settings.keys_url()
        self._refetch_interval = settings.jwks_refetch_seconds
        self._monotonic = monotonic
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self._http = httpx.AsyncClient(timeout=10)
        self.fetches = 0

    async def aclose(self) -> None:
        await self._http.aclose()

    async def verify(self, token: str) -> External:
        """The organisation and subject ``token`` names; AuthError with the reason otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in ALGORITHMS:
            raise AuthError(f"identity provider tokens must be signed with one of {', '.join(ALGORITHMS)}")
        if not isinstance(kid, str) or not kid:
            raise AuthError("identity provider token names no key (kid)")
        key = await self._key(kid)
        if key.key_type != _KEY_TYPE[algorithm]:
            raise AuthError(f"key {kid!r} is not a {_KEY_TYPE[algorithm]} key for {algorithm}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=[algorithm], audience=self._settings.audience,
                issuer=self._settings.issuer, options={"require": ["exp", "iss", "aud"]})
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        org = claims.get(self._settings.org_claim)
        if not isinstance(org, str) or not org:
            raise AuthError(f"identity provider token has no organisation claim {self._settings.org_claim!r}")
        return External(organisation=org, subject=str(claims.get("sub") or org))

    async def _key(self, kid: str) -> jwt.PyJWK:
        stale = self._fetched_at is None or self._monotonic() - self._fetched_at >= self._settings.jwks_cache_seconds
        if not stale and kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            age = None if self._fetched_at is None else self._monotonic() - self._fetched_at
            if age is None or age >= self._settings.jwks_cache_seconds or (
                    kid not in self._keys and age >= self._refetch_interval):
                await self._fetch()
        if kid not in self._keys:
            raise AuthError(f"the identity provider has no key {kid!r}")
        return self._keys[kid]

    async def _fetch(self) -> None:
        try:
            answer = await self._http.get(self._url)
            answer.raise_for_status()
            keys = {}
            for entry in answer.json().get("keys", []):
                if isinstance(entry, dict) and isinstance(entry.get("kid"), str) and entry.get("use", "sig") == "sig":
                    try:
                        keys[entry["kid"]] = jwt.PyJWK(entry)
                    except jwt.PyJWTError as exc:
                        log.warning("identity provider key %r skipped: %s", entry["kid"], exc)
        except (httpx.HTTPError, ValueError) as exc:
            # Keep the keys we had: a provider's hiccup must not log every user out.
            log.warning("could not fetch the identity provider's keys from %s: %s", self._url, exc)
            if not self._keys:
                raise AuthError("the identity provider's keys cannot be fetched now") from exc
            return
        finally:
            self.fetches += 1
            self._fetched_at = self._monotonic()
        self._keys = keys
        log.info("identity provider keys fetched from %s: %s", self._url, ", ".join(sorted(keys)) or "none")
