"""``GET /healthz``: is the API up, and can it reach its time-series store."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from cloud.api.deps import StoreDep
from cloud.store import StoreError

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(store: StoreDep) -> JSONResponse:
    """200 with the InfluxDB version when the store answers, 503 naming the problem when not."""
    try:
        version = await store.ping()
    except StoreError as exc:
        return JSONResponse({"status": "degraded", "influx": f"unavailable: {exc}"}, status_code=503)
    return JSONResponse({"status": "ok", "influx": version})
