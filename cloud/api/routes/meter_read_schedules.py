"""Meter-read schedules web API: an organisation's periodic reads of a device group (CRUD).

Each run reads every meter of the group through the smart metering domain (``actualReads``),
so results, notifications and webhooks are those of any other read.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import APIRouter, Response, status

from broker.errors import Invalid
from cloud.api.deps import OrgId, RegistryDep, SchedulesDep
from cloud.api.identity import check_scope
from cloud.core.access import permissions
from cloud.domains.smartmetering.read_schedules import (
    MAX_DEVICES,
    DeviceGroup,
    ReadScheduleBody,
    ReadScheduleView,
    group_schedules,
    new_id,
    schedules_for,
    view,
)
from cloud.registry import DeviceType, NotAuthorised, Registry
from cloud.registry.functions import DeviceFunction
from cloud.scheduler import ScheduleNotFound, SchedulePublic, ScheduleStore

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/smartmetering/readSchedules", tags=["meter-read schedules"])
_VIEW = {"response_model": ReadScheduleView, "response_model_by_alias": True}


async def _members(registry: Registry, org: str, group: DeviceGroup) -> list[str]:
    """The group's meters, each one the organisation may read (403 naming those it may not)."""
    check_scope(DeviceFunction.GET_ACTUAL_METER_READS)
    if group.device_ids is not None:
        devices = group.device_ids
    else:
        found = await registry.list_devices(organisation=org, device_type=DeviceType.SMART_METER,
                                            feeder=group.feeder, concentrator_id=group.concentrator_id,
                                            limit=MAX_DEVICES + 1)
        devices = [d.identification for d in found]
        if not devices:
            raise Invalid("the group holds no meters of this organisation")
        if len(devices) > MAX_DEVICES:
            raise Invalid(f"the group holds more than {MAX_DEVICES} meters: split it")
    decisions = await permissions(registry, org, devices, DeviceFunction.GET_ACTUAL_METER_READS)
    refused = [f"{d}: {decisions[d].reason}" for d in devices if not decisions[d].allowed]
    if refused:
        raise NotAuthorised("; ".join(refused))
    return devices


async def _stored(schedules: ScheduleStore, org: str, read_id: str) -> list[SchedulePublic]:
    members = group_schedules(await schedules.list_schedules(organisation=org)).get(read_id)
    if not members:
        raise ScheduleNotFound(f"not found: {read_id}")
    return members


async def _store(schedules: ScheduleStore, registry: Registry, org: str, read_id: str,
                 body: ReadScheduleBody) -> ReadScheduleView:
    devices = await _members(registry, org, body.group)
    added = [await schedules.add(spec) for spec in schedules_for(organisation=org, read_id=read_id, body=body,
                                                                 devices=devices, now=datetime.now(UTC))]
    log.info("meter-read schedule %s of %s: %d meters", read_id, org, len(added))
    return view(read_id, added)


@router.post("", status_code=status.HTTP_201_CREATED, **_VIEW)
async def create(body: ReadScheduleBody, org: OrgId, registry: RegistryDep,
                 schedules: SchedulesDep) -> ReadScheduleView:
    """Read a group of meters on a trigger (``{"kind": "interval", "everySeconds": 900, "anchor": ...}``
    or ``{"kind": "daily", "times": ["06:00"], "timezone": "Europe/Amsterdam"}``)."""
    return await _store(schedules, registry, org, new_id(), body)


@router.get("", response_model=list[ReadScheduleView], response_model_by_alias=True)
async def list_schedules(org: OrgId, schedules: SchedulesDep) -> list[ReadScheduleView]:
    """The organisation's meter-read schedules."""
    grouped = group_schedules(await schedules.list_schedules(organisation=org))
    return [view(read_id, members) for read_id, members in sorted(grouped.items())]


@router.get("/{read_id}", **_VIEW)
async def get_schedule(read_id: str, org: OrgId, schedules: SchedulesDep) -> ReadScheduleView:
    return view(read_id, await _stored(schedules, org, read_id))


@router.put("/{read_id}", **_VIEW)
async def replace(read_id: str, body: ReadScheduleBody, org: OrgId, registry: RegistryDep,
                  schedules: SchedulesDep) -> ReadScheduleView:
    """Replace a schedule (group, trigger, name); a feeder or concentrator group is resolved again."""
    old = await _stored(schedules, org, read_id)
    await _members(registry, org, body.group)  # refuse before removing anything
    # Remove-then-add is not one transaction: a failure in between leaves fewer meters scheduled,
    # which the caller sees as an error and repairs by putting again.
    for schedule in old:
        await schedules.remove(schedule.id)
    return await _store(schedules, registry, org, read_id, body)


@router.delete("/{read_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete(read_id: str, org: OrgId, schedules: SchedulesDep) -> Response:
    for schedule in await _stored(schedules, org, read_id):
        await schedules.remove(schedule.id)
    log.info("meter-read schedule %s of %s removed", read_id, org)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
