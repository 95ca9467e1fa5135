"""``/v1/admin``: organisations (platform administrators only) and device authorisations (the
device's OWNER or a platform administrator).

A refused request changes nothing and says why: 403 with the missing function group, 404 for
an unknown device or organisation, 409 for a duplicate or a state conflict, 422 naming the
field for bad input.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response, status

from cloud.api.deps import Admin, Caller, RegistryDep, require
from cloud.api.errors import REFUSALS
from cloud.registry import (
    AuthorisationGrant,
    AuthorisationPublic,
    DeviceFunction,
    FunctionGroup,
    NotAuthorised,
    NotFoundError,
    OrganisationCreate,
    OrganisationPublic,
    OrganisationUpdate,
    PlatformRole,
    Registry,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/admin", tags=["admin"])


# --- admin: organisations -------------------------------------------------------------------


# The organisation made is found by its identification (an OpenAPI link, for clients and test tools).
_MADE = {"links": {"GetOrganisation": {
    "operationId": "get_organisation_v1_admin_organisations__organisation__get",
    "parameters": {"organisation": "$response.body#/identification"}}}}


@router.post("/organisations", status_code=status.HTTP_201_CREATED, response_model=OrganisationPublic,
             responses={**REFUSALS, 201: _MADE, 409: {"description": "Identification taken, or a webhook secret "
                                                                 "while the platform has no sealing key"}})
async def add_organisation(spec: OrganisationCreate, registry: RegistryDep, _admin: Admin) -> OrganisationPublic:
    """Add an organisation."""
    return await registry.add_organisation(spec)


@router.get("/organisations", response_model=list[OrganisationPublic], responses=REFUSALS)
async def list_organisations(registry: RegistryDep, _admin: Admin) -> list[OrganisationPublic]:
    """Every organisation."""
    return await registry.list_organisations()


@router.get("/organisations/{organisation}", response_model=OrganisationPublic, responses=REFUSALS)
async def get_organisation(organisation: str, registry: RegistryDep, who: Caller) -> OrganisationPublic:
    """One organisation: any organisation may see itself, administrators see all."""
    if who.role is not PlatformRole.ADMIN and who.identification != organisation:
        raise NotAuthorised("only platform administrators see other organisations")
    return await registry.get_organisation(organisation)


@router.patch("/organisations/{organisation}", response_model=OrganisationPublic,
              responses={**REFUSALS, 409: {"description": "A webhook secret while the platform has no sealing key"}})
async def update_organisation(organisation: str, change: OrganisationUpdate, registry: RegistryDep,
                              _admin: Admin) -> OrganisationPublic:
    """Rename, enable or disable an organisation, or set its webhook (the secret is stored sealed and
    never shown: ``hasWebhookSecret`` says whether one is set)."""
    return await registry.update_organisation(organisation, change)


# --- admin: device authorisations -----------------------------------------------------------


async def _may_authorise(registry: Registry, who: OrganisationPublic, device: str) -> None:
    if who.role is PlatformRole.ADMIN:
        await registry.get_device(device)
        return
    await require(registry, who, device, DeviceFunction.SET_DEVICE_AUTHORISATION)


@router.get("/devices/{device}/authorisations", response_model=list[AuthorisationPublic], responses=REFUSALS)
async def list_authorisations(device: str, registry: RegistryDep, who: Caller) -> list[AuthorisationPublic]:
    """Who holds which function groups on a device (its OWNER or an administrator may look)."""
    await _may_authorise(registry, who, device)
    return await registry.authorisations(device)


@router.post("/devices/{device}/authorisations", status_code=status.HTTP_201_CREATED,
             response_model=AuthorisationPublic,
             responses={**REFUSALS, 409: {"description": "Already held"}})
async def grant_authorisation(device: str, grant: AuthorisationGrant, registry: RegistryDep,
                              who: Caller) -> AuthorisationPublic:
    """Give an organisation a function group on a device."""
    await _may_authorise(registry, who, device)
    granted = await registry.grant(device, grant.organisation, grant.function_group)
    log.info("%s granted %s on %s to %s", who.identification, grant.function_group, device, grant.organisation)
    return granted


@router.delete("/devices/{device}/authorisations/{organisation}/{group}",
               status_code=status.HTTP_204_NO_CONTENT, responses=REFUSALS)
async def revoke_authorisation(device: str, organisation: str, group: FunctionGroup, registry: RegistryDep,
                               who: Caller) -> Response:
    """Take a function group on a device away from an organisation."""
    await _may_authorise(registry, who, device)
    revoked = await registry.revoke(device, organisation, group)
    if not revoked:
        raise NotFoundError(f"organisation {organisation!r} does not hold {group} on device {device!r}")
    log.info("%s revoked %s on %s from %s", who.identification, group, device, organisation)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
