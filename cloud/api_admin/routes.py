"""Admin and installation endpoints of the registry.

``admin_router`` (``/v1/admin``): organisations (platform administrators only) and device
authorisations (the device's OWNER or a platform administrator).
``installation_router`` (``/v1/installation``): add, change, show and decommission devices,
each checked against the caller's function groups on the device.

A refused request changes nothing and says why: 403 with the missing function group, 404 for
an unknown device or organisation, 409 for a duplicate or a state conflict, 422 naming the
field for bad input.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError

from cloud.api_admin.deps import Admin, Caller, RegistryDep, require
from cloud.registry import (
    AlreadyExistsError,
    AuthorisationGrant,
    AuthorisationPublic,
    ConflictError,
    DeviceCreate,
    DeviceFunction,
    DeviceNotFound,
    DevicePublic,
    DeviceType,
    DeviceUpdate,
    FunctionGroup,
    LifecycleState,
    NotFoundError,
    OrganisationCreate,
    OrganisationPublic,
    OrganisationUpdate,
    PlatformRole,
    Registry,
)

log = logging.getLogger(__name__)

admin_router = APIRouter(prefix="/v1/admin", tags=["admin"])
installation_router = APIRouter(prefix="/v1/installation", tags=["installation"])

_ERRORS = {
    status.HTTP_403_FORBIDDEN: {"description": "The caller lacks the function group or role needed"},
    status.HTTP_404_NOT_FOUND: {"description": "Unknown device or organisation"},
}


@contextmanager
def registry_errors() -> Iterator[None]:
    """Turn the registry's exceptions into HTTP answers carrying their message."""
    try:
        yield
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except (AlreadyExistsError, ConflictError) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc


# --- admin: organisations -------------------------------------------------------------------


@admin_router.post("/organisations", status_code=status.HTTP_201_CREATED, response_model=OrganisationPublic,
                   responses={**_ERRORS, 409: {"description": "Identification taken"}})
async def add_organisation(spec: OrganisationCreate, registry: RegistryDep, _admin: Admin) -> OrganisationPublic:
    """Add an organisation."""
    with registry_errors():
        return await registry.add_organisation(spec)


@admin_router.get("/organisations", response_model=list[OrganisationPublic], responses=_ERRORS)
async def list_organisations(registry: RegistryDep, _admin: Admin) -> list[OrganisationPublic]:
    """Every organisation."""
    return await registry.list_organisations()


@admin_router.get("/organisations/{organisation}", response_model=OrganisationPublic, responses=_ERRORS)
async def get_organisation(organisation: str, registry: RegistryDep, who: Caller) -> OrganisationPublic:
    """One organisation: any organisation may see itself, administrators see all."""
    if who.role is not PlatformRole.ADMIN and who.identification != organisation:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only platform administrators see other organisations")
    with registry_errors():
        return await registry.get_organisation(organisation)


@admin_router.patch("/organisations/{organisation}", response_model=OrganisationPublic, responses=_ERRORS)
async def update_organisation(organisation: str, change: OrganisationUpdate, registry: RegistryDep,
                              _admin: Admin) -> OrganisationPublic:
    """Rename, enable or disable an organisation, or set its webhook."""
    with registry_errors():
        return await registry.update_organisation(organisation, change)


# --- admin: device authorisations -----------------------------------------------------------


async def _may_authorise(registry: Registry, who: OrganisationPublic, device: str) -> None:
    if who.role is PlatformRole.ADMIN:
        with registry_errors():
            await registry.get_device(device)
        return
    with registry_errors():
        await require(registry, who, device, DeviceFunction.SET_DEVICE_AUTHORISATION)


@admin_router.get("/devices/{device}/authorisations", response_model=list[AuthorisationPublic],
                  responses=_ERRORS)
async def list_authorisations(device: str, registry: RegistryDep, who: Caller) -> list[AuthorisationPublic]:
    """Who holds which function groups on a device (its OWNER or an administrator may look)."""
    await _may_authorise(registry, who, device)
    with registry_errors():
        return await registry.authorisations(device)


@admin_router.post("/devices/{device}/authorisations", status_code=status.HTTP_201_CREATED,
                   response_model=AuthorisationPublic,
                   responses={**_ERRORS, 409: {"description": "Already held"}})
async def grant_authorisation(device: str, grant: AuthorisationGrant, registry: RegistryDep,
                              who: Caller) -> AuthorisationPublic:
    """Give an organisation a function group on a device."""
    await _may_authorise(registry, who, device)
    with registry_errors():
        granted = await registry.grant(device, grant.organisation, grant.function_group)
    log.info("%s granted %s on %s to %s", who.identification, grant.function_group, device, grant.organisation)
    return granted


@admin_router.delete("/devices/{device}/authorisations/{organisation}/{group}",
                     status_code=status.HTTP_204_NO_CONTENT, responses=_ERRORS)
async def revoke_authorisation(device: str, organisation: str, group: FunctionGroup, registry: RegistryDep,
                               who: Caller) -> Response:
    """Take a function group on a device away from an organisation."""
    await _may_authorise(registry, who, device)
    with registry_errors():
        revoked = await registry.revoke(device, organisation, group)
    if not revoked:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"organisation {organisation!r} does not hold {group} on device {device!r}")
    log.info("%s revoked %s on %s from %s", who.identification, group, device, organisation)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- installation: devices ------------------------------------------------------------------


async def _check_concentrator(registry: Registry, who: OrganisationPublic, concentrator: str) -> None:
    """A device may only be put behind a registered concentrator the caller may install on."""
    try:
        await registry.get_device(concentrator)
    except DeviceNotFound:
        raise RequestValidationError([{
            "type": "value_error", "loc": ("body", "concentratorId"), "input": concentrator,
            "msg": f"concentrator {concentrator!r} is not registered",
        }]) from None
    decision = await registry.permission(who.identification, concentrator, DeviceFunction.ADD_DEVICE)
    if not decision.allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"cannot install behind {concentrator!r}: {decision.reason}")


@installation_router.post("/devices", status_code=status.HTTP_201_CREATED, response_model=DevicePublic,
                          responses={**_ERRORS, 409: {"description": "Device already registered"}})
async def add_device(spec: DeviceCreate, registry: RegistryDep, who: Caller) -> DevicePublic:
    """Register a device; the calling organisation becomes its OWNER."""
    if spec.concentrator_id is not None:
        await _check_concentrator(registry, who, spec.concentrator_id)
    with registry_errors():
        return await registry.create_device(spec, owner=who.identification)


@installation_router.get("/devices", response_model=list[DevicePublic])
async def list_devices(
    registry: RegistryDep, who: Caller,
    device_type: Annotated[DeviceType | None, Query(alias="deviceType")] = None,
    concentrator_id: Annotated[str | None, Query(alias="concentratorId")] = None,
    feeder: str | None = None,
    state: LifecycleState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[DevicePublic]:
    """The devices the caller holds any function group on, filtered."""
    return await registry.list_devices(organisation=who.identification, device_type=device_type,
                                       concentrator_id=concentrator_id, feeder=feeder, state=state,
                                       limit=limit, offset=offset)


@installation_router.get("/devices/{device}", response_model=DevicePublic, responses=_ERRORS)
async def get_device(device: str, registry: RegistryDep, who: Caller) -> DevicePublic:
    """One device, for an organisation holding any function group on it."""
    with registry_errors():
        await require(registry, who, device, DeviceFunction.GET_DEVICE)
        return await registry.get_device(device)


@installation_router.patch("/devices/{device}", response_model=DevicePublic,
                           responses={**_ERRORS, 409: {"description": "Decommissioned or invalid state change"}})
async def update_device(device: str, change: DeviceUpdate, registry: RegistryDep, who: Caller) -> DevicePublic:
    """Change a device's fields (only those given)."""
    with registry_errors():
        await require(registry, who, device, DeviceFunction.UPDATE_DEVICE)
    if change.concentrator_id is not None:
        await _check_concentrator(registry, who, change.concentrator_id)
    with registry_errors():
        return await registry.update_device(device, change)


@installation_router.post("/devices/{device}/decommission", response_model=DevicePublic, responses=_ERRORS)
async def decommission_device(device: str, registry: RegistryDep, who: Caller) -> DevicePublic:
    """Retire a device for good (repeating it is harmless)."""
    with registry_errors():
        current = await registry.get_device(device)
        if current.state is LifecycleState.DECOMMISSIONED:
            # Already done: say so to anyone who may see the device, and change nothing.
            await require(registry, who, device, DeviceFunction.GET_DEVICE)
            return current
        await require(registry, who, device, DeviceFunction.DECOMMISSION_DEVICE)
        return await registry.decommission(device)


router = APIRouter()
router.include_router(admin_router)
router.include_router(installation_router)
