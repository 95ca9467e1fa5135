"""Smart metering web API: actual and periodic reads, disconnect/reconnect, time sync, firmware, alarms."""

from __future__ import annotations

from fastapi import APIRouter, status

from cloud.api.deps import SubmitterDep
from cloud.api.routes.results import add_results_route
from cloud.domains.schemas import Accepted
from cloud.domains.smartmetering.translator import DOMAIN, PeriodicReads, SynchronizeTime

router = APIRouter(prefix="/v1/smartmetering", tags=["smart metering"])
_ACCEPTED = {"status_code": status.HTTP_202_ACCEPTED, "response_model": Accepted, "response_model_by_alias": True}


@router.post("/devices/{device_id}/actualReads", **_ACCEPTED)
async def actual_reads(device_id: str, submitter: SubmitterDep) -> Accepted:
    """Read the meter's registers now."""
    return await submitter.submit(DOMAIN, "actualReads", device_id, {})


@router.post("/devices/{device_id}/disconnect", **_ACCEPTED)
async def disconnect(device_id: str, submitter: SubmitterDep) -> Accepted:
    """Open the meter's breaker."""
    return await submitter.submit(DOMAIN, "disconnect", device_id, {})


@router.post("/devices/{device_id}/reconnect", **_ACCEPTED)
async def reconnect(device_id: str, submitter: SubmitterDep) -> Accepted:
    """Close the meter's breaker."""
    return await submitter.submit(DOMAIN, "reconnect", device_id, {})


@router.post("/devices/{device_id}/synchronizeTime", **_ACCEPTED)
async def synchronize_time(device_id: str, submitter: SubmitterDep, body: SynchronizeTime | None = None) -> Accepted:
    """Set the meter's clock (to ``time`` if given, else to the concentrator's clock)."""
    params = body.model_dump(mode="json", exclude_none=True) if body else {}
    return await submitter.submit(DOMAIN, "synchronizeTime", device_id, params)


@router.post("/devices/{device_id}/firmwareVersion", **_ACCEPTED)
async def firmware_version(device_id: str, submitter: SubmitterDep) -> Accepted:
    """Read the meter's firmware version."""
    return await submitter.submit(DOMAIN, "firmwareVersion", device_id, {})


@router.post("/devices/{device_id}/periodicReads", **_ACCEPTED)
async def periodic_reads(device_id: str, submitter: SubmitterDep, body: PeriodicReads) -> Accepted:
    """Read the meter's load profile between ``from`` and ``to`` (at most 31 days)."""
    return await submitter.submit(DOMAIN, "periodicReads", device_id, body.model_dump(mode="json", by_alias=True))


@router.post("/devices/{device_id}/alarms", **_ACCEPTED)
async def read_alarms(device_id: str, submitter: SubmitterDep) -> Accepted:
    """Read the meter's alarm register and standard event log."""
    return await submitter.submit(DOMAIN, "alarms", device_id, {})


add_results_route(router, DOMAIN)
