"""Power quality web API: actual values per phase, the power-quality profile by range, sags and swells."""

from __future__ import annotations

from fastapi import APIRouter, status

from cloud.api.deps import SubmitterDep
from cloud.api.routes.results import add_results_route
from cloud.domains.powerquality.translator import DOMAIN
from cloud.domains.schemas import Accepted
from cloud.domains.smartmetering.translator import PeriodicReads

router = APIRouter(prefix="/v1/powerquality", tags=["power quality"])
_ACCEPTED = {"status_code": status.HTTP_202_ACCEPTED, "response_model": Accepted, "response_model_by_alias": True}


@router.post("/devices/{device_id}/actualValues", **_ACCEPTED)
async def actual_values(device_id: str, submitter: SubmitterDep) -> Accepted:
    """Voltage, current, power factor and THD per phase, frequency, sag and swell counters, now."""
    return await submitter.submit(DOMAIN, "actualValues", device_id, {})


@router.post("/devices/{device_id}/profile", **_ACCEPTED)
async def profile(device_id: str, body: PeriodicReads, submitter: SubmitterDep) -> Accepted:
    """The power-quality profile between ``from`` and ``to`` (at most 31 days)."""
    return await submitter.submit(DOMAIN, "profile", device_id, body.model_dump(mode="json", by_alias=True))


@router.post("/devices/{device_id}/events", **_ACCEPTED)
async def events(device_id: str, submitter: SubmitterDep) -> Accepted:
    """The sag and swell counters per phase and the power-quality event log."""
    return await submitter.submit(DOMAIN, "events", device_id, {})


add_results_route(router, DOMAIN)
