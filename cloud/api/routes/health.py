"""``GET /healthz``: is the API up, and can it reach what it serves from: the time-series store
(InfluxDB) and, in the platform API, the registry's database.

Both are asked at once and cheaply (InfluxDB's ping; ``SELECT 1`` on the registry's engine, at
most :data:`REGISTRY_CHECK_SECONDS`). Both up: 200 with each one's state. Either down: the error
table's 503 with ``Retry-After``, the detail naming each dependency's state.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from broker.errors import Unavailable
from cloud.api.deps import StoreDep
from cloud.registry import Registry
from cloud.registry.db import unreachable
from cloud.store import StoreError

router = APIRouter(tags=["health"])

# How long the registry's check may take (a connect included) before it counts as down.
REGISTRY_CHECK_SECONDS = 3.0
OK = "ok"
DOWN = "unavailable: "


class Unhealthy(Unavailable):
    """A dependency of the API is down; the detail names each one's state."""

    def __init__(self, states: dict[str, str]) -> None:
        super().__init__("unavailable: " + ", ".join(name for name, state in states.items() if state.startswith(DOWN)))
        self.states = states

    def public_detail(self) -> dict[str, str]:
        return self.states


async def _influx(store: StoreDep) -> str:
    try:
        return await store.ping()
    except StoreError:  # its message names the store's address: not for callers
        return f"{DOWN}no answer to its ping"


async def _registry(registry: Registry) -> str:
    try:
        async with asyncio.timeout(REGISTRY_CHECK_SECONDS):
            async with registry.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    except TimeoutError:
        return f"{DOWN}no answer within {REGISTRY_CHECK_SECONDS:g} s"
    except (sa_exc.DBAPIError, sa_exc.TimeoutError, OSError) as exc:
        if isinstance(exc, sa_exc.TimeoutError):
            return f"{DOWN}no connection free"
        if unreachable(exc):
            return f"{DOWN}unreachable"
        return f"{DOWN}the check failed ({type(exc).__name__})"
    return OK


@router.get("/healthz", responses={503: {"description": "InfluxDB or the registry's database is down: the "
                                         "detail gives each one's state (status, influx, registry)"}})
async def healthz(request: Request, store: StoreDep) -> dict[str, str]:
    """200 with each dependency's state (influx: InfluxDB's version; registry: ok, in the
    platform API) when all answer; 503 with Retry-After naming the one down when not."""
    registry = getattr(request.app.state, "registry", None)
    if isinstance(registry, Registry):
        influx, database = await asyncio.gather(_influx(store), _registry(registry))
        states = {"influx": influx, "registry": database}
    else:  # the OMDP API alone keeps no registry
        states = {"influx": await _influx(store)}
    if any(state.startswith(DOWN) for state in states.values()):
        raise Unhealthy({"status": "degraded", **states})
    return {"status": OK, **states}
