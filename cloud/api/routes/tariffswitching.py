"""Tariff switching web API: set a device's relay schedule, read results."""

from __future__ import annotations

import time

from fastapi import APIRouter, status

from cloud.api.deps import RegistryDep, SubmitterDep
from cloud.api.routes.results import add_results_route
from cloud.domains.device_schedules import DeviceScheduleStore
from cloud.domains.schemas import Accepted
from cloud.domains.tariffswitching.translator import DOMAIN, SetSchedule

router = APIRouter(prefix="/v1/tariffswitching", tags=["tariff switching"])


@router.post("/devices/{device_id}/schedule", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted,
             response_model_by_alias=True)
async def set_schedule(device_id: str, body: SetSchedule, registry: RegistryDep, submitter: SubmitterDep) -> Accepted:
    """Replace the device's weekly tariff relay schedule. The device keeps it and switches by itself;
    the cloud keeps it too, and sends it again when the device's concentrator connects if it did not
    get there (expired while the concentrator was away, timed out, the device unreachable)."""
    params = body.model_dump(mode="json")
    schedules = DeviceScheduleStore(registry.engine)
    accepted = await submitter.submit(DOMAIN, "setSchedule", device_id, params)
    # Kept once accepted (authorised and translated); the version is the time it was set.
    version = int(time.time() * 1000)
    await schedules.set(organisation=submitter.org, device=device_id, domain=DOMAIN.name, operation="setSchedule",
                        version=version, parameters=params)
    await schedules.sent(device_id, version=version, correlation=str(accepted.correlation_id))
    return accepted
add_results_route(router, DOMAIN)
