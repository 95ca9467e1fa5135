"""FastAPI dependencies of the cloud API: settings, store, clock, the caller and what it may read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cloud.auth import AuthError, MeterAccess, Principal, decode_token
from cloud.settings import ApiSettings
from cloud.store import InfluxStore

Clock = Callable[[], datetime]

_bearer = HTTPBearer(auto_error=False, description="OAuth2 bearer token (HS256 JWT naming the organisation)")


def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


def get_store(request: Request) -> InfluxStore:
    store = request.app.state.store
    if store is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the time-series store is not set up yet")
    return store


def get_clock(request: Request) -> Clock:
    return request.app.state.clock


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
StoreDep = Annotated[InfluxStore, Depends(get_store)]
ClockDep = Annotated[Clock, Depends(get_clock)]


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, reason,
                         headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{reason}"'})


def get_principal(settings: SettingsDep, clock: ClockDep,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    """The authenticated caller; 401 with ``WWW-Authenticate: Bearer`` otherwise."""
    if credentials is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a bearer token is required",
                            headers={"WWW-Authenticate": "Bearer"})
    assert settings.jwt_secret is not None  # create_app refuses to build without one
    try:
        return decode_token(credentials.credentials, secret=settings.jwt_secret.get_secret_value(), now=clock(),
                            issuer=settings.jwt_issuer)
    except AuthError as exc:
        raise _unauthorized(str(exc).replace('"', "'")) from exc


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_allowed_meters(request: Request, principal: PrincipalDep) -> frozenset[str] | None:
    """The meters the caller's organisation may read (None: every meter)."""
    access: MeterAccess = request.app.state.meter_access
    return await access(principal)


AllowedMetersDep = Annotated[frozenset[str] | None, Depends(get_allowed_meters)]
