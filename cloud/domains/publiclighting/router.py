"""Public lighting web API: switch/dim a light, ask its status, read results."""

from __future__ import annotations

from fastapi import APIRouter, status
from pydantic import Field

from cloud.domains.api import MAX_BULK_DEVICES, SubmitterDep, add_results_route
from cloud.domains.publiclighting.translator import DOMAIN, SetLight
from cloud.domains.schemas import Accepted, BulkAccepted

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


add_results_route(router, DOMAIN)
