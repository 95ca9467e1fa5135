"""Distributed generation and load control web API: inverter power limit, loads, state, results."""

from __future__ import annotations

from fastapi import APIRouter, status

from cloud.api.deps import SubmitterDep
from cloud.api.routes.results import add_results_route
from cloud.domains.loadcontrol.translator import DOMAIN, SetPowerLimit, SwitchLoad
from cloud.domains.schemas import Accepted

router = APIRouter(prefix="/v1/loadcontrol", tags=["load control"])
_ACCEPTED = {"status_code": status.HTTP_202_ACCEPTED, "response_model": Accepted, "response_model_by_alias": True}


@router.post("/devices/{device_id}/powerLimit", **_ACCEPTED)
async def set_power_limit(device_id: str, body: SetPowerLimit, submitter: SubmitterDep) -> Accepted:
    """Limit an inverter's active power (``{"percent": 60}``); the result is the limit read back."""
    return await submitter.submit(DOMAIN, "setPowerLimit", device_id, body.model_dump(mode="json"))


@router.post("/devices/{device_id}/load", **_ACCEPTED)
async def switch_load(device_id: str, body: SwitchLoad, submitter: SubmitterDep) -> Accepted:
    """Switch a controllable load (``{"index": 1, "on": false}``); the result is the contact read back."""
    return await submitter.submit(DOMAIN, "switchLoad", device_id, body.model_dump(mode="json"))


@router.post("/devices/{device_id}/state", **_ACCEPTED)
async def get_state(device_id: str, submitter: SubmitterDep) -> Accepted:
    """Read the device's state now: limit, loads, power, status (every point of its register map)."""
    return await submitter.submit(DOMAIN, "getState", device_id, {})


add_results_route(router, DOMAIN)
