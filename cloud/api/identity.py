"""Who is calling the platform API: one check for every kind of bearer credential.

- ``gw_<id>.<secret>``: an organisation's API key (:mod:`cloud.registry.apikeys`), read from the
  registry on each request, so a revocation holds at once in every API process;
- an HS256 JWT signed with ``GRIDWIRE_JWT_SECRET`` (the embedded default);
- an RS256/ES256 JWT from the identity provider ``GRIDWIRE_OIDC_ISSUER`` names
  (:class:`cloud.api.oidc.JwksVerifier`).

Each names an organisation and nothing more: its role is the registry's. A token's ``scope``
claim grants nothing (an ``admin`` scope in a USER organisation's token is ignored). An API key
may be limited to function groups: :func:`current_scope` is that limit for the request being
served (a context variable the authenticating dependency sets; FastAPI runs a route in the
context of its async dependencies), and :func:`check_scope` refuses a function outside it.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass

import jwt
from fastapi import HTTPException, Request, status

from cloud.auth import ADMIN_SCOPE, ALGORITHM, AuthError, Principal, decode_token
from cloud.registry import DeviceFunction, FunctionGroup, NotAuthorised, OrganisationNotFound, OrganisationPublic
from cloud.registry import PlatformRole, Registry
from cloud.registry.apikeys import PREFIX, ApiKeys, KeyRefused
from cloud.registry.functions import within_scope
from cloud.settings import ApiSettings

log = logging.getLogger(__name__)

_SCOPE: ContextVar[frozenset[FunctionGroup] | None] = ContextVar("gridwire_credential_scope", default=None)


@dataclass(frozen=True, slots=True)
class Credential:
    """A verified bearer credential: the organisation it names, and the key's limit if any."""

    org: str
    subject: str
    via: str  # "api-key", "token" or "oidc"
    scope: frozenset[FunctionGroup] | None = None
    registered: OrganisationPublic | None = None  # the organisation, when the check read it


def current_scope() -> frozenset[FunctionGroup] | None:
    """The function groups the request's credential is limited to (None: not limited)."""
    return _SCOPE.get()


def check_scope(function: DeviceFunction) -> None:
    """NotAuthorised (403, with the reason) if the request's credential may not ask for ``function``."""
    decision = within_scope(current_scope(), function)
    if not decision.allowed:
        raise NotAuthorised(decision.reason)


def _unauthorised(reason: str) -> HTTPException:
    reason = reason.replace('"', "'")
    return HTTPException(status.HTTP_401_UNAUTHORIZED, reason, headers={
        "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{reason}"'})


async def authenticate(request: Request) -> Credential:
    """The request's verified credential; 401 with ``WWW-Authenticate`` otherwise."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a bearer token is required",
                            headers={"WWW-Authenticate": "Bearer"})
    try:
        credential = await _verify(request, token)
    except (AuthError, KeyRefused) as exc:
        log.info("%s %s: credential refused: %s", request.method, request.url.path, exc)
        raise _unauthorised(str(exc)) from exc
    _SCOPE.set(credential.scope)
    return credential


async def _verify(request: Request, token: str) -> Credential:
    if token.startswith(PREFIX):
        holder = await ApiKeys(request.app.state.registry.engine, clock=request.app.state.clock).verify(token)
        return Credential(org=holder.organisation.identification, subject=f"key:{holder.key_id}", via="api-key",
                          scope=holder.scope, registered=holder.organisation)
    try:
        algorithm = jwt.get_unverified_header(token).get("alg")
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from exc
    if algorithm == ALGORITHM:
        settings: ApiSettings = request.app.state.settings
        assert settings.jwt_secret is not None  # create_app refuses to build without one
        principal = decode_token(token, secret=settings.jwt_secret.get_secret_value(),
                                 now=request.app.state.clock(), issuer=settings.jwt_issuer)
        return Credential(org=principal.org, subject=principal.subject, via="token")
    verifier = getattr(request.app.state, "oidc", None)
    if verifier is None:
        raise AuthError(f"tokens signed with {algorithm} need an identity provider (GRIDWIRE_OIDC_ISSUER)")
    external = await verifier.verify(token)
    return Credential(org=external.organisation, subject=external.subject, via="oidc")


async def principal_org(request: Request) -> str:
    """The calling organisation's identification (the platform app's ``app.state.current_org``,
    see :func:`cloud.api.deps.current_org`)."""
    return (await authenticate(request)).org


async def registered_principal(request: Request) -> Principal:
    """The caller of the OMDP routes (the platform app's ``app.state.principal``, see
    :func:`cloud.api.deps.get_principal`), with the ``admin`` scope only if the registry makes its organisation a platform administrator and
    its credential is not limited; 403 for an unregistered or disabled organisation."""
    credential = await authenticate(request)
    org = credential.registered
    if org is None:
        registry: Registry = request.app.state.registry
        try:
            org = await registry.get_organisation(credential.org)
        except OrganisationNotFound:
            raise NotAuthorised(f"organisation {credential.org!r} is not registered") from None
    if not org.enabled:
        raise NotAuthorised(f"organisation {credential.org!r} is disabled")
    admin = org.role is PlatformRole.ADMIN and credential.scope is None
    return Principal(subject=credential.subject, org=org.identification,
                     scopes=frozenset({ADMIN_SCOPE}) if admin else frozenset(), groups=credential.scope)


__all__ = ["Credential", "authenticate", "check_scope", "current_scope", "principal_org", "registered_principal"]
