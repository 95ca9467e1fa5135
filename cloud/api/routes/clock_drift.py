"""``GET /v1/devices/{id}/clockDrift``: a meter's clock drift history.

Needs ``app.state.drift_store`` (a :class:`~cloud.timesync.store.DriftStore`), set in the app's
lifespan. Who may read it: whoever may read the meter's data (``AllowedMetersDep``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from cloud.api.deps import AllowedMetersDep, DriftStoreDep, QueryDatetime
from cloud.timesync.store import DriftRecord

router = APIRouter(prefix="/v1/devices", tags=["time synchronisation"])


@router.get("/{device_id}/clockDrift", response_model=list[DriftRecord], response_model_by_alias=True)
async def clock_drift(device_id: str, store: DriftStoreDep, allowed: AllowedMetersDep,
                      since: Annotated[QueryDatetime | None,
                                       Query(description="Only measurements from this time on (with timezone).")] = None,
                      ) -> list[DriftRecord]:
    """The meter's clock drift measurements (meter minus reference, seconds), oldest first."""
    if allowed is not None and device_id not in allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"your organisation may not read device {device_id!r}")
    return await store.drift_history(device_id, since)
