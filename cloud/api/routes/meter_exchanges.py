"""``/v1/installation/devices/{id}/meterExchanges``: when a meter's physical meter was replaced.

Processing (docs/PROCESSING.md) lets a cumulative register restart at a recorded exchange
instead of flagging the drop, and counts consumption across it. Recording one needs the
function UPDATE_DEVICE on the meter (installation work); reading them, the same.

Recording one (or recording it again) judges the meter's stored register values from the
exchange on again and recomputes the consumption intervals they change, through processing's
incremental path, before answering: the intervals end as if the exchange had been known from
the start. Removing one recorded wrongly (``DELETE`` with ``exchangedAt``) does the same, as if
it had never been recorded; a wrong time is corrected by recording the right one and removing
the wrong one. If the time-series store is unavailable the exchange stays recorded and the answer
is a 503; recording it again does the recompute.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from cloud.api.deps import Caller, CatalogueDep, RegistryDep, SettingsDep, get_store, require
from cloud.api.errors import REFUSALS
from cloud.catalogue import Catalogue
from cloud.processing.facts import MeterFacts, MeterLocks
from cloud.processing.processor import Processor
from cloud.processing.rules import Thresholds
from cloud.processing.series import Estimation
from cloud.processing.store import ProcessingStore
from cloud.registry import DeviceFunction, Registry
from cloud.settings import ApiSettings
from cloud.store.line_protocol import to_ns

router = APIRouter(prefix="/v1/installation", tags=["installation"])


class MeterExchangeCreate(BaseModel):
    """An exchange of the physical meter behind a meter individual."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    exchanged_at: AwareDatetime = Field(alias="exchangedAt")
    note: str | None = Field(default=None, max_length=512)


class MeterExchangePublic(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    meter_id: str = Field(alias="meterId")
    exchanged_at: datetime = Field(alias="exchangedAt")
    note: str | None = None
    recorded_at: datetime = Field(alias="recordedAt")


@router.post("/devices/{device}/meterExchanges", status_code=status.HTTP_201_CREATED, responses={
    **REFUSALS, 200: {"description": "that exchange was recorded already"},
    503: {"description": "recorded, but the time-series store is unavailable: record it again to recompute"}})
async def record_meter_exchange(device: str, exchange: MeterExchangeCreate, registry: RegistryDep, who: Caller,
                                response: Response, settings: SettingsDep, catalogue: CatalogueDep,
                                request: Request) -> None:
    """Record that the meter's physical meter was replaced at ``exchangedAt`` (repeating it is
    harmless), and recompute the consumption intervals that change."""
    await require(registry, who, device, DeviceFunction.UPDATE_DEVICE)
    facts = MeterFacts(registry.engine)
    if not await facts.record_exchange(device, exchange.exchanged_at, note=exchange.note):
        response.status_code = status.HTTP_200_OK
    await _recompute(request, registry, settings, catalogue, device, exchange.exchanged_at)


@router.delete("/devices/{device}/meterExchanges", status_code=status.HTTP_204_NO_CONTENT, responses={
    **REFUSALS, 503: {"description": "removed, but the time-series store is unavailable: the intervals are "
                                     "recomputed by recording it again and removing it again"}})
async def remove_meter_exchange(device: str, registry: RegistryDep, who: Caller, settings: SettingsDep,
                                catalogue: CatalogueDep, request: Request,
                                exchanged_at: Annotated[AwareDatetime, Query(alias="exchangedAt")]) -> None:
    """Remove an exchange recorded wrongly (to correct its time, record the right one and remove
    this), and recompute the consumption intervals that change."""
    await require(registry, who, device, DeviceFunction.UPDATE_DEVICE)
    if not await MeterFacts(registry.engine).remove_exchange(device, exchanged_at):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no exchange of {device!r} recorded at {exchanged_at}")
    await _recompute(request, registry, settings, catalogue, device, exchanged_at)


async def _recompute(request: Request, registry: Registry, settings: ApiSettings, catalogue: Catalogue, device: str,
                     at: datetime) -> None:
    """Judge the meter's values from ``at`` again and recompute their intervals (docs/PROCESSING.md)."""
    store = get_store(request)  # after the change: a 503 leaves it made
    processor = Processor(store=ProcessingStore(store), facts=MeterFacts(registry.engine),
                          locks=MeterLocks(registry.engine), catalogue=catalogue,
                          estimation=Estimation.of(settings.processing),
                          thresholds=Thresholds.of(settings.processing), zone=settings.consumption.zone())
    await processor.exchanges_changed(device, to_ns(at))


@router.get("/devices/{device}/meterExchanges", response_model=list[MeterExchangePublic],
            response_model_by_alias=True, responses=REFUSALS)
async def meter_exchanges(device: str, registry: RegistryDep, who: Caller) -> list[MeterExchangePublic]:
    """The meter's recorded exchanges, oldest first."""
    await require(registry, who, device, DeviceFunction.UPDATE_DEVICE)
    return [MeterExchangePublic(meter_id=row.meter_id, exchanged_at=row.exchanged_at, note=row.note,
                                recorded_at=row.recorded_at)
            for row in await MeterFacts(registry.engine).exchange_rows(device)]
