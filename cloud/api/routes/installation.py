"""``/v1/installation/devices``: add, change, show and decommission devices, each checked against
the caller's function groups on the device.

A refused request changes nothing and says why: 403 with the missing function group, 404 for
an unknown device, 409 for a duplicate or a state conflict, 422 naming the field for bad input.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.exceptions import RequestValidationError

from cloud.api.deps import MAX_OFFSET, AccountsDep, Caller, RegistryDep, require
from cloud.api.identity import check_scope
from cloud.api.errors import REFUSALS
from cloud.registry import (
    DeviceCreate,
    DeviceFunction,
    DeviceNotFound,
    DevicePublic,
    DeviceType,
    DeviceUpdate,
    LifecycleState,
    NotAuthorised,
    OrganisationPublic,
    Registry,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/installation", tags=["installation"])


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
        raise NotAuthorised(f"cannot install behind {concentrator!r}: {decision.reason}")


@router.post("/devices", status_code=status.HTTP_201_CREATED, response_model=DevicePublic,
             responses={**REFUSALS, 409: {"description": "Device already registered"}})
async def add_device(spec: DeviceCreate, registry: RegistryDep, who: Caller) -> DevicePublic:
    """Register a device; the calling organisation becomes its OWNER."""
    check_scope(DeviceFunction.ADD_DEVICE)
    if spec.concentrator_id is not None:
        await _check_concentrator(registry, who, spec.concentrator_id)
    return await registry.create_device(spec, owner=who.identification)


@router.get("/devices", response_model=list[DevicePublic])
async def list_devices(
    registry: RegistryDep, who: Caller,
    device_type: Annotated[DeviceType | None, Query(alias="deviceType")] = None,
    concentrator_id: Annotated[str | None, Query(alias="concentratorId")] = None,
    feeder: str | None = None,
    state: LifecycleState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[DevicePublic]:
    """The devices the caller holds any function group on, filtered."""
    return await registry.list_devices(organisation=who.identification, device_type=device_type,
                                       concentrator_id=concentrator_id, feeder=feeder, state=state,
                                       limit=limit, offset=offset)


@router.get("/devices/{device}", response_model=DevicePublic, responses=REFUSALS)
async def get_device(device: str, registry: RegistryDep, who: Caller) -> DevicePublic:
    """One device, for an organisation holding any function group on it."""
    return await require(registry, who, device, DeviceFunction.GET_DEVICE)


@router.patch("/devices/{device}", response_model=DevicePublic,
              responses={**REFUSALS, 409: {"description": "Decommissioned or invalid state change"}})
async def update_device(device: str, change: DeviceUpdate, registry: RegistryDep, who: Caller) -> DevicePublic:
    """Change a device's fields (only those given)."""
    await require(registry, who, device, DeviceFunction.UPDATE_DEVICE)
    if change.concentrator_id is not None:
        await _check_concentrator(registry, who, change.concentrator_id)
    return await registry.update_device(device, change)


@router.post("/devices/{device}/decommission", response_model=DevicePublic, responses=REFUSALS)
async def decommission_device(device: str, registry: RegistryDep, accounts: AccountsDep, who: Caller) -> DevicePublic:
    """Retire a device for good (repeating it is harmless)."""
    current = await registry.get_device(device)
    if current.state is LifecycleState.DECOMMISSIONED:
        # Already done: say so to anyone who may see the device, and change nothing.
        await require(registry, who, device, DeviceFunction.GET_DEVICE)
        return current
    await require(registry, who, device, DeviceFunction.DECOMMISSION_DEVICE)
    done = await registry.decommission(device)
    # Its certificates on the CRL, its broker accounts stripped of every right and disconnected.
    await accounts.decommissioned(device)
    return done
