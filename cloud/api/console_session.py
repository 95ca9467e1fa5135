"""The operator console's login: the same bearer tokens as the API, held in a cookie, and CSRF
protection for its forms.

- Logging in posts a token (a platform administrator's bearer token) to ``/console/login``. It is
  verified exactly as the API verifies a bearer token, and the organisation it names must be a
  registered, enabled platform administrator (decided by the registry, never by the token's
  claims). The token is then kept in an ``HttpOnly``, ``SameSite=Strict`` cookie scoped to
  ``/console`` (``Secure`` when served over HTTPS) and checked again on every page, so it
  expires when the token does and a disabled organisation is out at once.
- Every form carries a CSRF token: a random value also kept in its own ``HttpOnly`` cookie
  (double submit); a POST whose form value does not match the cookie is refused with 403.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass

from fastapi import Request, Response

from cloud.auth import AuthError, decode_token
from cloud.registry import OrganisationNotFound, PlatformRole, Registry
from cloud.settings import ApiSettings

log = logging.getLogger(__name__)

SESSION_COOKIE = "gw_console"
CSRF_COOKIE = "gw_csrf"
CSRF_FIELD = "csrf"
COOKIE_PATH = "/console"


@dataclass(frozen=True, slots=True)
class Operator:
    """Who is logged in to the console."""

    organisation: str
    subject: str


async def verify(request: Request, token: str) -> Operator:
    """The operator a token names; AuthError (with a reason fit to show) otherwise."""
    settings: ApiSettings = request.app.state.settings
    assert settings.jwt_secret is not None  # create_app refuses to build without one
    principal = decode_token(token.strip(), secret=settings.jwt_secret.get_secret_value(),
                             now=request.app.state.clock(), issuer=settings.jwt_issuer)
    registry: Registry = request.app.state.registry
    try:
        org = await registry.get_organisation(principal.org)
    except OrganisationNotFound:
        raise AuthError(f"organisation {principal.org!r} is not registered") from None
    if not org.enabled:
        raise AuthError(f"organisation {principal.org!r} is disabled")
    if org.role is not PlatformRole.ADMIN:
        raise AuthError(f"organisation {principal.org!r} is not a platform administrator")
    return Operator(organisation=org.identification, subject=principal.subject)


async def current_operator(request: Request) -> Operator | None:
    """The logged-in operator, or None (the page sends the browser to the login form)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        return await verify(request, token)
    except AuthError as exc:
        log.info("console session refused: %s", exc)
        return None


def start_session(request: Request, response: Response, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, token.strip(), httponly=True, samesite="strict", path=COOKIE_PATH,
                        secure=request.url.scheme == "https")


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)


def csrf_token(request: Request, response: Response | None = None) -> str:
    """The CSRF value for this browser's forms (a new one is set in ``response`` if it has none)."""
    value = request.cookies.get(CSRF_COOKIE)
    if value:
        return value
    value = secrets.token_urlsafe(32)
    request.state.new_csrf = value
    if response is not None:
        set_csrf(request, response)
    return value


def set_csrf(request: Request, response: Response) -> None:
    """Set the cookie of a CSRF value made while rendering (see :func:`csrf_token`)."""
    value = getattr(request.state, "new_csrf", None)
    if value:
        response.set_cookie(CSRF_COOKIE, value, httponly=True, samesite="strict", path=COOKIE_PATH,
                            secure=request.url.scheme == "https")


def csrf_ok(request: Request, submitted: str | None) -> bool:
    expected = request.cookies.get(CSRF_COOKIE)
    return bool(expected and submitted and hmac.compare_digest(expected, submitted))
