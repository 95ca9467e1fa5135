"""Tariff switching web API: set a device's relay schedule, read results."""

from __future__ import annotations

from fastapi import APIRouter, status

from cloud.api.deps import SubmitterDep
from cloud.api.routes.results import add_results_route
from cloud.domains.schemas import Accepted
from cloud.domains.tariffswitching.translator import DOMAIN, SetSchedule

router = APIRouter(prefix="/v1/tariffswitching", tags=["tariff switching"])


@router.post("/devices/{device_id}/schedule", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted,
             response_model_by_alias=True)
async def set_schedule(device_id: str, body: SetSchedule, submitter: SubmitterDep) -> Accepted:
    """Replace the device's weekly tariff relay schedule."""
    return await submitter.submit(DOMAIN, "setSchedule", device_id, body.model_dump(mode="json"))
add_results_route(router, DOMAIN)
