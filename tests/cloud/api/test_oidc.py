"""Tokens from an external identity provider, verified against a JWKS this test serves over HTTP.

RS256 and ES256, issuer and audience checked, keys cached, a rotated key found by its ``kid``;
the organisation comes from a claim and its role from the registry (an ``admin`` claim or scope
grants nothing). Every refusal leaves the registry as it was.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from fastapi import FastAPI

from cloud.api import create_app
from cloud.api.oidc import JwksVerifier
from cloud.auth import AuthError
from cloud.registry import OrganisationCreate
from cloud.settings import ApiSettings, OidcSettings
from tests.cloud.api.platform_rig import Rig, platform
from tests.cloud.core.harness import serve
from tests.cloud.platform.test_platform import platform_settings
from tests.fixtures.mosquitto import MosquittoServer

ISSUER, AUDIENCE = "https://idp.example.test/realm", "gridwire-api"


@dataclass
class Provider:
    """An identity provider's signing keys and the JWKS document it publishes."""

    keys: dict[str, Any] = field(default_factory=dict)  # kid -> private key
    published: list[str] = field(default_factory=list)
    fetches: int = 0

    def add(self, kid: str, key: Any) -> None:  # noqa: ANN401 - an RSA or EC private key
        self.keys[kid] = key
        self.published.append(kid)

    def jwks(self) -> dict[str, Any]:
        self.fetches += 1
        entries = []
        for kid in self.published:
            public = self.keys[kid].public_key()
            algo = jwt.algorithms.RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) else jwt.algorithms.ECAlgorithm
            entries.append({**json.loads(algo.to_jwk(public)), "kid": kid, "use": "sig"})
        return {"keys": entries}

    def token(self, kid: str, *, org: str = "org-a", issuer: str = ISSUER, audience: str = AUDIENCE,
              ttl: int = 300, **claims: Any) -> str:  # noqa: ANN401
        key = self.keys[kid]
        algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        now = int(time.time())
        body = {"iss": issuer, "aud": audience, "sub": "alice", "org": org, "iat": now, "exp": now + ttl, **claims}
        return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def provider() -> AsyncIterator[tuple[Provider, str]]:
    idp = Provider()
    idp.add("rsa-1", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    idp.add("ec-1", ec.generate_private_key(ec.SECP256R1()))
    app = FastAPI()
    app.get("/jwks")(idp.jwks)
    async with serve(app) as base:
        yield idp, f"{base}/jwks"


@pytest.fixture
async def rig(mosquitto: MosquittoServer, registry_url: str, provider: tuple[Provider, str]) -> AsyncIterator[Rig]:
    oidc = OidcSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url=provider[1], jwks_refetch_seconds=0)
    async with platform(platform_settings(mosquitto, registry_url, oidc=oidc), registry_url) as running:
        await running.registry.add_organisation(OrganisationCreate(identification="org-a", name="A"))
        yield running


async def test_provider_tokens_name_a_registered_organisation(rig: Rig, provider: tuple[Provider, str]) -> None:
    idp, _ = provider
    for kid in ("rsa-1", "ec-1", "rsa-1"):
        answer = await rig.http.get("/v1/installation/devices", headers=bearer(idp.token(kid)))
        assert answer.status_code == 200, answer.text
    assert idp.fetches == 1  # cached: both keys came in one fetch

    # Rotation: a new key is published and used; its unknown kid makes the API fetch again.
    idp.add("rsa-2", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    answer = await rig.http.get("/v1/installation/devices", headers=bearer(idp.token("rsa-2")))
    assert answer.status_code == 200, answer.text
    assert idp.fetches == 2
    # A retired key (no longer published) is refused once the keys are fetched again.
    idp.published.remove("rsa-1")
    idp.add("rsa-3", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert (await rig.http.get("/v1/installation/devices", headers=bearer(idp.token("rsa-3")))).status_code == 200
    retired = await rig.http.get("/v1/installation/devices", headers=bearer(idp.token("rsa-1")))
    assert retired.status_code == 401 and "rsa-1" in retired.json()["detail"]


async def test_provider_tokens_refused(rig: Rig, provider: tuple[Provider, str]) -> None:
    idp, _ = provider
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "org": "org-a", "exp": int(time.time()) + 60},
                        stranger, algorithm="RS256", headers={"kid": "rsa-1"})
    cases = {
        "wrong audience": idp.token("rsa-1", audience="another-api"),
        "wrong issuer": idp.token("rsa-1", issuer="https://evil.example.test"),
        "expired": idp.token("ec-1", ttl=-10),
        "no organisation claim": idp.token("rsa-1", org=""),
        "unknown kid": idp.token("rsa-1").replace(*_kid_swap()),
        "signed by another key": forged,
        "unsigned": jwt.encode({"org": "org-a", "exp": int(time.time()) + 60}, None, algorithm="none"),
    }
    before = [o.identification for o in await rig.registry.list_organisations()]
    for case, token in cases.items():
        answer = await rig.http.get("/v1/installation/devices", headers=bearer(token))
        assert answer.status_code == 401, (case, answer.text)
        assert answer.headers["www-authenticate"].startswith("Bearer"), case
    # A verified token for an organisation the registry does not know: 403, nothing made.
    unknown = await rig.http.get("/v1/installation/devices", headers=bearer(idp.token("rsa-1", org="org-zz")))
    assert unknown.status_code == 403 and "not registered" in unknown.json()["detail"]
    assert [o.identification for o in await rig.registry.list_organisations()] == before

    # Roles are the registry's: admin claims in a USER organisation's token grant nothing.
    boastful = idp.token("rsa-1", scope="admin", roles=["admin"], admin=True)
    assert (await rig.http.get("/v1/deadLetters", headers=bearer(boastful))).status_code == 403
    assert (await rig.http.get("/v1/admin/organisations", headers=bearer(boastful))).status_code == 403
    assert (await rig.http.get("/v1/deadLetters", headers=rig.admin)).status_code == 200


def _kid_swap() -> tuple[str, str]:
    """Replace the header of an rsa-1 token by one naming a kid the provider never published."""
    old = jwt.utils.base64url_encode(json.dumps({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"},
                                                separators=(",", ":")).encode()).decode()
    new = jwt.utils.base64url_encode(json.dumps({"alg": "RS256", "kid": "nobody", "typ": "JWT"},
                                                separators=(",", ":")).encode()).decode()
    return old, new


@pytest.mark.parametrize("secret", [None, "", "secret", "changeme", "short-but-random-9f3", "a" * 40, "ab" * 20])
def test_the_api_refuses_to_start_with_a_weak_secret(secret: str | None) -> None:
    with pytest.raises(ValueError, match="GRIDWIRE_JWT_SECRET"):
        create_app(settings=ApiSettings(jwt_secret=secret))


def _signed(header: dict[str, Any], body: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A JWT put together by hand: PyJWT itself refuses to make the confused ones below."""
    def part(data: bytes) -> str:
        return jwt.utils.base64url_encode(data).decode()

    signing_input = f"{part(json.dumps(header).encode())}.{part(json.dumps(body).encode())}"
    return f"{signing_input}.{part(sign(signing_input.encode()))}"


async def test_algorithm_confusion_is_refused(rig: Rig, provider: tuple[Provider, str]) -> None:
    """The provider's RSA public key (as published, as PEM) used as an HMAC secret, and a header
    algorithm that does not fit the type of the key its kid names: each refused, by the API and
    by the verifier itself (with the reason)."""
    idp, jwks_url = provider
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "org": "org-a", "iat": now, "exp": now + 300}
    public_pem = idp.keys["rsa-1"].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def hmac_with(secret: bytes, digest: str) -> Callable[[bytes], bytes]:
        return lambda data: hmac.new(secret, data, digest).digest()

    def rsa_signed(data: bytes) -> bytes:
        return idp.keys["rsa-1"].sign(data, padding.PKCS1v15(), hashes.SHA256())

    def ec_signed(data: bytes) -> bytes:
        return jwt.algorithms.ECAlgorithm(hashes.SHA256).sign(data, idp.keys["ec-1"])

    confused = {
        "HS256 keyed with the RSA public key PEM": _signed(
            {"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}, body, hmac_with(public_pem, "sha256")),
        "HS256 keyed with the PEM, no kid": _signed(
            {"alg": "HS256", "typ": "JWT"}, body, hmac_with(public_pem, "sha256")),
        "HS512 keyed with the PEM": _signed(
            {"alg": "HS512", "kid": "rsa-1", "typ": "JWT"}, body, hmac_with(public_pem, "sha512")),
        "ES256 header naming the RSA key": _signed({"alg": "ES256", "kid": "rsa-1", "typ": "JWT"}, body, ec_signed),
        "RS256 header naming the EC key": _signed({"alg": "RS256", "kid": "ec-1", "typ": "JWT"}, body, rsa_signed),
        "PS256 by the RSA key": jwt.encode(body, idp.keys["rsa-1"], algorithm="PS256", headers={"kid": "rsa-1"}),
    }
    # The same key, algorithm and claims, honestly signed, are accepted: what is refused is the confusion.
    honest = _signed({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}, body, rsa_signed)
    assert (await rig.http.get("/v1/installation/devices", headers=bearer(honest))).status_code == 200
    before = [o.identification for o in await rig.registry.list_organisations()]
    for case, token in confused.items():
        answer = await rig.http.get("/v1/installation/devices", headers=bearer(token))
        assert answer.status_code == 401, (case, answer.text)
        assert answer.headers["www-authenticate"].startswith("Bearer"), case
    assert [o.identification for o in await rig.registry.list_organisations()] == before

    # The verifier on its own, against the same published keys: each refused, saying why.
    verifier = JwksVerifier(OidcSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks_url))
    reasons = {
        "HS256 keyed with the RSA public key PEM": "must be signed with one of RS256, ES256",
        "HS256 keyed with the PEM, no kid": "must be signed with one of RS256, ES256",
        "HS512 keyed with the PEM": "must be signed with one of RS256, ES256",
        "ES256 header naming the RSA key": "key 'rsa-1' is not a EC key for ES256",
        "RS256 header naming the EC key": "key 'ec-1' is not a RSA key for RS256",
        "PS256 by the RSA key": "must be signed with one of RS256, ES256",
    }
    try:
        assert (await verifier.verify(honest)).organisation == "org-a"
        for case, token in confused.items():
            with pytest.raises(AuthError) as refused:
                await verifier.verify(token)
            assert reasons[case] in str(refused.value), (case, refused.value)
    finally:
        await verifier.aclose()
