"""Public lighting web API: switch/dim a light, ask its status, set its switching schedule, read results."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from broker.errors import Invalid
from cloud.api.deps import OrgId, RegistryDep, SchedulesDep, SubmitterDep
from cloud.api.identity import check_scope
from cloud.api.routes.results import add_results_route
from cloud.core.access import permission
from cloud.domains.publiclighting.schedules import (
    LightSchedule,
    LightScheduleView,
    is_light_schedule,
    schedules_for,
    view,
)
from cloud.domains.publiclighting.translator import DOMAIN, DeviceScheduleEntry, SetLight
from cloud.domains.schemas import Accepted, BulkAccepted
from cloud.domains.submit import MAX_BULK_DEVICES
from cloud.registry import NotAuthorised, Registry
from cloud.registry.functions import DeviceFunction
from cloud.scheduler import SchedulePublic, ScheduleStore

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/publiclighting", tags=["public lighting"])
_ACCEPTED = {"status_code": status.HTTP_202_ACCEPTED, "response_model": Accepted, "response_model_by_alias": True}


@router.post("/devices/{device_id}/light", **_ACCEPTED)
async def set_light(device_id: str, body: SetLight, submitter: SubmitterDep) -> Accepted:
    """Switch a light on or off (``{"on": true, "dimLevel": 70}``)."""
    return await submitter.submit(DOMAIN, "setLight", device_id, body.model_dump(by_alias=True, exclude_none=True))


class SetLights(SetLight):
    """Switch many lights the same way: ``{"deviceIds": ["light-1", ...], "on": true}``."""

    device_ids: list[str] = Field(alias="deviceIds", min_length=1, max_length=MAX_BULK_DEVICES)


@router.post("/lights", status_code=status.HTTP_202_ACCEPTED, response_model=BulkAccepted,
             response_model_by_alias=True)
async def set_lights(body: SetLights, submitter: SubmitterDep) -> BulkAccepted:
    """Switch many lights on or off at once: one request per light (own result URL and
    notification), all authorised first; 403 naming the lights the caller may not switch."""
    params = body.model_dump(by_alias=True, exclude_none=True, exclude={"device_ids"})
    return await submitter.submit_many(DOMAIN, "setLight", body.device_ids, params)


@router.post("/devices/{device_id}/status", **_ACCEPTED)
async def get_status(device_id: str, submitter: SubmitterDep) -> Accepted:
    """Ask a light for its status (relays and dim level)."""
    return await submitter.submit(DOMAIN, "getStatus", device_id, {})


async def _authorise(registry: Registry, org: str, device_id: str) -> None:
    check_scope(DeviceFunction.SET_SCHEDULE)
    decision = await permission(registry, org, device_id, DeviceFunction.SET_SCHEDULE)
    if not decision.allowed:
        log.warning("refused light schedule on %s for %s: %s", device_id, org, decision.reason)
        raise NotAuthorised(decision.reason)


async def _stored(schedules: ScheduleStore, org: str, device_id: str) -> list[SchedulePublic]:
    return [s for s in await schedules.list_schedules(organisation=org) if is_light_schedule(s.name, device_id)]


@router.post("/devices/{device_id}/schedule", status_code=status.HTTP_201_CREATED, response_model=LightScheduleView,
             response_model_by_alias=True)
async def set_schedule(device_id: str, body: LightSchedule, org: OrgId, registry: RegistryDep,
                       schedules: SchedulesDep) -> LightScheduleView:
    """Replace the light's switching schedule: each entry at ``"HH:MM"`` in a time zone, or at
    ``"sunrise"``/``"sunset"`` plus ``offsetMinutes`` at the light's registered location
    (422 if it has none). Answers each entry's next run."""
    await _authorise(registry, org, device_id)
    location = (await registry.get_device(device_id)).location
    coordinates = (None if location is None or location.latitude is None or location.longitude is None
                   else (location.latitude, location.longitude))
    try:
        specs = schedules_for(organisation=org, device_id=device_id, body=body, location=coordinates,
                              now=datetime.now(UTC))
    except ValueError as exc:
        raise Invalid(f"{device_id}: {exc}") from None
    # Remove-then-add is not one transaction: a failure in between leaves the light unscheduled,
    # which the caller sees as an error and repairs by posting again.
    for old in await _stored(schedules, org, device_id):
        await schedules.remove(old.id)
    added = [await schedules.add(spec) for spec in specs]
    log.info("light %s of %s: schedule replaced with %d entries", device_id, org, len(added))
    return view(device_id, added)


@router.get("/devices/{device_id}/schedule", response_model=LightScheduleView, response_model_by_alias=True)
async def get_schedule(device_id: str, org: OrgId, registry: RegistryDep, schedules: SchedulesDep) -> LightScheduleView:
    """The light's switching schedule as stored by this organisation, with next runs."""
    await _authorise(registry, org, device_id)
    return view(device_id, await _stored(schedules, org, device_id))


class DeviceScheduleBody(BaseModel):
    """A light's schedule to keep on the device: the same entries as the cloud-run schedule."""

    model_config = ConfigDict(extra="forbid")

    entries: list[DeviceScheduleEntry] = Field(min_length=1, max_length=50)


@router.post("/devices/{device_id}/deviceSchedule", **_ACCEPTED)
async def set_device_schedule(device_id: str, body: DeviceScheduleBody, registry: RegistryDep,
                              submitter: SubmitterDep) -> Accepted:
    """Store the schedule on the light itself, which then switches on its own (also with its link
    down): absolute times in a time zone, sunrise/sunset computed by the light for its registered
    location. The version is the time it was sent (milliseconds); the light reports it in its status."""
    await _authorise(registry, submitter.org, device_id)
    location = (await registry.get_device(device_id)).location
    params = {"version": int(time.time() * 1000),
              "entries": [e.model_dump(by_alias=True, exclude_none=True) for e in body.entries]}
    if location is not None and location.latitude is not None and location.longitude is not None:
        params |= {"latitude": location.latitude, "longitude": location.longitude}
    return await submitter.submit(DOMAIN, "setDeviceSchedule", device_id, params)


add_results_route(router, DOMAIN)
