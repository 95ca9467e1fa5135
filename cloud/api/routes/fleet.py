"""The fleet at a glance for operators (platform administrators): ``GET /v1/fleet``, and the
meters behind one concentrator with their health."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from cloud.api.deps import Admin, RegistryDep
from cloud.monitoring.fleet import FleetQueries, FleetStatus

router = APIRouter(prefix="/v1/fleet", tags=["monitoring"])


@router.get("", response_model=FleetStatus, response_model_by_alias=True)
async def fleet_status(registry: RegistryDep, _who: Admin,
                       limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> FleetStatus:
    """Concentrators (state, last seen, outbox backlog, software, meters online and offline) and
    device counts by type, lifecycle state, firmware version and owning organisation."""
    return await FleetQueries(registry.engine).status(concentrator_limit=limit)


@router.get("/concentrators/{concentrator_id}/meters")
async def concentrator_meters(concentrator_id: str, registry: RegistryDep, _who: Admin) -> list[dict[str, Any]]:
    """The meters registered behind a concentrator, with their communication health."""
    await registry.get_device(concentrator_id)  # unknown: 404
    return await FleetQueries(registry.engine).meters_of(concentrator_id)
