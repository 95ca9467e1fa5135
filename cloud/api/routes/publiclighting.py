"""Public lighting web API: switch/dim a light, ask its status, set its switching schedule, read results."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from broker.errors import Invalid, NotFound
from cloud.api.deps import OrgId, RegistryDep, SchedulesDep, SubmitterDep
from cloud.api.identity import check_scope
from cloud.api.routes.results import add_results_route
from cloud.core.access import permission
from cloud.domains.device_schedules import DeviceScheduleStore
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


SET_DEVICE_SCHEDULE = "setDeviceSchedule"


@router.post("/devices/{device_id}/deviceSchedule", **_ACCEPTED)
async def set_device_schedule(device_id: str, body: DeviceScheduleBody, registry: RegistryDep,
                              submitter: SubmitterDep) -> Accepted:
    """Store the schedule on the light itself, which then switches on its own (also with its link
    down): absolute times in a time zone, sunrise/sunset computed by the light for its registered
    location. The version is the time it was sent (milliseconds); the light reports it in its status.
    The cloud keeps it as the schedule the light should hold, and sends it again when the light
    connects holding another (``GET`` shows the version sent and the version the light reports)."""
    await _authorise(registry, submitter.org, device_id)
    location = (await registry.get_device(device_id)).location
    params = {"version": int(time.time() * 1000),
              "entries": [e.model_dump(by_alias=True, exclude_none=True) for e in body.entries]}
    if location is not None and location.latitude is not None and location.longitude is not None:
        params |= {"latitude": location.latitude, "longitude": location.longitude}
    try:
        DOMAIN.operation(SET_DEVICE_SCHEDULE).commands(params)
    except ValidationError as exc:
        raise Invalid(f"{device_id}: {exc.errors(include_url=False, include_context=False)}") from None
    # Kept before it is sent, so the light's answer (its status with the new version) finds it.
    schedules = DeviceScheduleStore(registry.engine)
    await schedules.set(organisation=submitter.org, device=device_id, domain=DOMAIN.name,
                        operation=SET_DEVICE_SCHEDULE, version=params["version"], parameters=params)
    accepted = await submitter.submit(DOMAIN, SET_DEVICE_SCHEDULE, device_id, params)
    await schedules.sent(device_id, version=params["version"], correlation=str(accepted.correlation_id))
    return accepted


class DeviceScheduleView(BaseModel):
    """The schedule a light should keep, and how far it got: the version last sent (at setting, or
    again when the light came back without it) and the version the light last reported holding."""

    model_config = ConfigDict(populate_by_name=True)

    device_id: str = Field(alias="deviceId")
    organisation: str
    version: int
    entries: list[DeviceScheduleEntry]
    set_at: datetime = Field(alias="setAt")
    sent_version: int | None = Field(alias="sentVersion")
    sent_at: datetime | None = Field(alias="sentAt")
    sent_correlation_id: str | None = Field(alias="sentCorrelationId", description="the request that last sent it")
    resends: int = Field(description="times sent again to the light when it connected holding another version")
    reported_version: int | None = Field(alias="reportedVersion")
    reported_at: datetime | None = Field(alias="reportedAt")
    confirmed: bool = Field(description="the light last reported holding this version")


@router.get("/devices/{device_id}/deviceSchedule", response_model=DeviceScheduleView, response_model_by_alias=True)
async def get_device_schedule(device_id: str, org: OrgId, registry: RegistryDep) -> DeviceScheduleView:
    """The schedule the light should keep on itself, the version sent and the version it reports."""
    await _authorise(registry, org, device_id)
    state = await DeviceScheduleStore(registry.engine).get(device_id)
    if state is None or state.operation != SET_DEVICE_SCHEDULE:
        raise NotFound(f"no schedule kept on light {device_id!r}; POST one")
    return DeviceScheduleView(device_id=device_id, organisation=state.organisation, version=state.version,
                              entries=state.parameters["entries"], set_at=state.set_at, sent_version=state.sent_version,
                              sent_at=state.sent_at, sent_correlation_id=state.sent_correlation, resends=state.resends,
                              reported_version=state.reported_version, reported_at=state.reported_at,
                              confirmed=state.confirmed)


add_results_route(router, DOMAIN)
