"""Every dependency of the web API's routes, as ``*Dep`` aliases: settings, stores, the MQTT
session, the caller and what it may do.

Collaborators are built in the app's lifespan and put in ``app.state``; a dependency only hands
them to the route. Two seams for authentication:

- :func:`get_principal` checks the bearer token for the OMDP routes (meter data);
- :func:`current_org` gives the calling organisation to the registry-backed routes. It refuses
  every request (fail closed) until the app sets the credential check in
  ``app.state.current_org`` (see :mod:`cloud.api.identity`; tests may override it instead).
  What an organisation may do is decided from the registry, not from the token. The platform
  app sets ``app.state.principal`` too, so the OMDP routes' ``admin`` is the registry's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BeforeValidator

from broker.session import MqttSession
from cloud.accounts.service import AccountService
from cloud.api.identity import check_scope, current_scope
from cloud.auth import AuthError, MeterAccess, Principal, decode_token
from cloud.catalogue import Catalogue
from cloud.domains.requests import RequestStore
from cloud.domains.submit import Submitter
from cloud.firmware.campaign_store import CampaignStore
from cloud.firmware.campaigns import CampaignService
from cloud.firmware.catalogue import FirmwareCatalogue
from cloud.registry import (
    DeviceFunction,
    DevicePublic,
    NotAuthorised,
    OrganisationNotFound,
    OrganisationPublic,
    PlatformRole,
    Registry,
)
from cloud.scheduler import ScheduleStore
from cloud.settings import ApiSettings
from cloud.store import InfluxStore
from cloud.timesync.store import DriftStore

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
T = TypeVar("T")

_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _not_a_number(value: object) -> object:
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError("give a date-time as RFC 3339 text with its offset (2026-03-01T00:00:00Z), not a number")
    return value


# A date-time in a query string: RFC 3339 text with its offset, as the OpenAPI document says
# (pydantic alone would take a number as seconds since 1970, or a time without a zone).
QueryDatetime = Annotated[AwareDatetime, BeforeValidator(_not_a_number)]

# The deepest page number or row offset a route takes: past it no answer has rows, and the
# offset a page makes must fit the databases' 64-bit integers (SQLite, PostgreSQL, InfluxQL).
MAX_OFFSET = 1_000_000_000

_bearer = HTTPBearer(auto_error=False, description=(
    "Bearer token: an organisation's API key, an HS256 JWT signed with the platform's secret, or a token of the "
    "configured OIDC issuer (RS256/ES256); what it may do is the registry's answer for its organisation"))


# --- settings, time-series store, clock, OMDP catalogue -----------------------------------------------------------


def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


def get_store(request: Request) -> InfluxStore:
    store = request.app.state.store
    if store is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the time-series store is not set up yet")
    return store


def get_clock(request: Request) -> Clock:
    return request.app.state.clock


def get_catalogue(request: Request) -> Catalogue:
    return request.app.state.catalogue


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
StoreDep = Annotated[InfluxStore, Depends(get_store)]
ClockDep = Annotated[Clock, Depends(get_clock)]
CatalogueDep = Annotated[Catalogue, Depends(get_catalogue)]


# --- the caller of the OMDP routes: its bearer token -----------------------------------------------


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, reason,
                         headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{reason}"'})


async def get_principal(request: Request, settings: SettingsDep, clock: ClockDep,
                        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    """The authenticated caller; 401 with ``WWW-Authenticate: Bearer`` otherwise. The platform
    app sets ``app.state.principal`` (:func:`cloud.api.identity.registered_principal`), which
    then decides instead of the token's claims."""
    decide = getattr(request.app.state, "principal", None)
    if decide is not None:
        return await decide(request)
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


async def allowed_among(request: Request, principal: Principal, wanted: frozenset[str] | None) -> frozenset[str] | None:
    """What :func:`get_allowed_meters` answers, cut to ``wanted`` (None: every meter wanted), for a
    route that names its meters: the platform app then reads only those meters' authorisations
    (``app.state.meter_access_among``) instead of every device the organisation holds."""
    among = getattr(request.app.state, "meter_access_among", None)
    if wanted is not None and among is not None:
        return await among(principal, wanted)
    access: MeterAccess = request.app.state.meter_access
    return await access(principal)


# --- what the lifespan built ------------------------------------------------------------------------
# Coroutines: FastAPI runs plain functions in a worker thread, a hop that cost more than the rest
# of a switch request together.


def _state(request: Request, name: str, kind: type[T]) -> T:
    found = getattr(request.app.state, name, None)
    if not isinstance(found, kind):
        raise RuntimeError(f"app.state.{name} is not set; build the {kind.__name__} in the app's lifespan")
    return found


async def get_registry(request: Request) -> Registry:
    """The registry the app put in ``app.state.registry``."""
    return _state(request, "registry", Registry)


async def get_requests(request: Request) -> RequestStore:
    """The functional request store the app put in ``app.state.requests``."""
    return _state(request, "requests", RequestStore)


async def get_mqtt(request: Request) -> MqttSession:
    """The connected MQTT session the app put in ``app.state.mqtt``."""
    return _state(request, "mqtt", MqttSession)


async def get_schedules(request: Request) -> ScheduleStore:
    """The schedule store the app put in ``app.state.schedules``."""
    return _state(request, "schedules", ScheduleStore)


async def get_drift_store(request: Request) -> DriftStore:
    store = getattr(request.app.state, "drift_store", None)
    if store is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the clock drift store is not set up")
    return store


async def get_accounts(request: Request) -> AccountService:
    return _state(request, "accounts", AccountService)


RegistryDep = Annotated[Registry, Depends(get_registry)]
AccountsDep = Annotated[AccountService, Depends(get_accounts)]
RequestsDep = Annotated[RequestStore, Depends(get_requests)]
MqttDep = Annotated[MqttSession, Depends(get_mqtt)]
SchedulesDep = Annotated[ScheduleStore, Depends(get_schedules)]
DriftStoreDep = Annotated[DriftStore, Depends(get_drift_store)]


async def get_firmware_catalogue(registry: RegistryDep) -> FirmwareCatalogue:
    return FirmwareCatalogue(registry.engine)


async def get_campaigns(registry: RegistryDep) -> CampaignService:
    return CampaignService(store=CampaignStore(registry.engine), catalogue=FirmwareCatalogue(registry.engine),
                           registry=registry)


FirmwareCatalogueDep = Annotated[FirmwareCatalogue, Depends(get_firmware_catalogue)]
CampaignsDep = Annotated[CampaignService, Depends(get_campaigns)]


# --- the caller of the registry-backed routes: its organisation, as registered ----------------------


async def current_org(request: Request,
                      _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    """The calling organisation's identification, by the credential check the app put in
    ``app.state.current_org`` (the platform app: :func:`cloud.api.identity.principal_org`), or
    by an override (tests). Without either every request is refused. The bearer scheme named
    here declares it in the OpenAPI document of every route that uses it.

    Not a ``dependency_overrides`` entry in the platform app: with any override present FastAPI
    rebuilds every route's dependency tree on every request (about 2 ms of CPU each)."""
    check = getattr(request.app.state, "current_org", None)
    if check is not None:
        return await check(request)
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, "no authentication configured",
                        headers={"WWW-Authenticate": "Bearer"})


OrgId = Annotated[str, Depends(current_org)]


async def caller(registry: RegistryDep, org: OrgId) -> OrganisationPublic:
    """The calling organisation as registered; 403 if it is unknown or disabled."""
    try:
        found = await registry.get_organisation(org)
    except OrganisationNotFound:
        log.warning("request from unregistered organisation %r refused", org)
        raise NotAuthorised(f"organisation {org!r} is not registered") from None
    if not found.enabled:
        log.warning("request from disabled organisation %r refused", org)
        raise NotAuthorised(f"organisation {org!r} is disabled")
    if found.role is PlatformRole.ADMIN and current_scope() is not None:
        # A credential limited to function groups acts as an ordinary organisation.
        return found.model_copy(update={"role": PlatformRole.USER})
    return found


Caller = Annotated[OrganisationPublic, Depends(caller)]


async def platform_admin(who: Caller) -> OrganisationPublic:
    """The caller, if the registry makes it a platform administrator and its credential is not
    limited to function groups; 403 otherwise."""
    if who.role is not PlatformRole.ADMIN:
        raise NotAuthorised(f"organisation {who.identification!r} is not a platform administrator")
    if current_scope() is not None:
        raise NotAuthorised("platform administration needs a credential not limited to function groups")
    return who


Admin = Annotated[OrganisationPublic, Depends(platform_admin)]


async def require(registry: Registry, who: OrganisationPublic, device: str, function: DeviceFunction) -> DevicePublic:
    """The device, as registered, if ``who`` may do ``function`` on it; DeviceNotFound if
    ``device`` is unknown, NotAuthorised with the reason if ``who`` may not (404 and 403 by the
    error table)."""
    decision, found = await registry.permitted_device(who.identification, device, function)  # usually one query
    if not decision.allowed:
        await registry.get_device(device)  # an unknown device is 404, whatever the caller's credential
    check_scope(function)
    if not decision.allowed or found is None:
        log.warning("refused %s on %s for %s: %s", function, device, who.identification, decision.reason)
        raise NotAuthorised(decision.reason)
    return found


# --- functional requests -----------------------------------------------------------------------------


async def get_submitter(org: OrgId, registry: RegistryDep, requests: RequestsDep, mqtt: MqttDep,
                        ttl_seconds: Annotated[int, Query(alias="ttlSeconds", ge=1, le=7 * 24 * 3600)] = 300,
                        priority: Annotated[int, Query(ge=0, le=9)] = 4) -> Submitter:
    """The :class:`Submitter` for this request (time-to-live and priority from the query)."""
    return Submitter(org=org, registry=registry, requests=requests, mqtt=mqtt, ttl_seconds=ttl_seconds,
                     priority=priority, scope=current_scope())


SubmitterDep = Annotated[Submitter, Depends(get_submitter)]
