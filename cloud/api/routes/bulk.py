"""``GET /v1/bulk/{token}``: stream the readings behind a bulk link as CSV or NDJSON."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import StreamingResponse

from broker.schemas import MeterReading
from cloud.api.bulk import MEDIA_TYPES, BulkLinkError, csv_header, csv_rows, ndjson_lines, verify_link
from cloud.api.deps import AllowedMetersDep, ClockDep, PrincipalDep, SettingsDep, StoreDep
from cloud.api.routes.meter_readings import privacy_refusal
from cloud.store import InfluxStore, ReadingQuery, StoreError

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/bulk", tags=["meter readings"])


@router.get("/{token}", response_class=StreamingResponse,
            responses={200: {"content": {MEDIA_TYPES["csv"]: {}, MEDIA_TYPES["ndjson"]: {}}},
                       404: {"description": "unknown link"}, 410: {"description": "the link has expired"}})
async def download(token: str, settings: SettingsDep, store: StoreDep, principal: PrincipalDep,
                   allowed: AllowedMetersDep, clock: ClockDep,
                   format: Annotated[Literal["csv", "ndjson"] | None,  # noqa: A002
                                     Query(description="overrides the format chosen in the request")] = None,
                   ) -> StreamingResponse:
    """The readings of a bulk answer, streamed; needs the bearer token of the organisation that asked."""
    assert settings.jwt_secret is not None
    try:
        link = verify_link(token, secret=settings.jwt_secret.get_secret_value(), now=clock())
    except BulkLinkError as exc:
        raise HTTPException(status.HTTP_410_GONE if exc.expired else status.HTTP_404_NOT_FOUND, str(exc)) from exc
    if link.org != principal.org:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown bulk download link")
    # Authorisation is asked again: a meter withdrawn since the request is no longer served.
    query = link.query.restricted_to(allowed)
    matching = await store.count_readings(query)
    total = matching if link.max_rows is None else min(matching, link.max_rows)
    if total < settings.min_result_rows:
        raise privacy_refusal(settings.min_result_rows)
    chosen = format or link.format
    body = _render(store, query, limit=link.max_rows, fmt=chosen, chunk=settings.bulk_chunk_rows)
    suffix = "csv" if chosen == "csv" else "ndjson"
    return StreamingResponse(body, media_type=MEDIA_TYPES[chosen],
                             headers={"Content-Disposition": f'attachment; filename="meterReadings.{suffix}"',
                                      "X-Total-Rows": str(total)})


async def _render(store: InfluxStore, query: ReadingQuery, *, limit: int | None, fmt: str,
                  chunk: int) -> AsyncIterator[str]:
    if fmt == "csv":
        yield csv_header()
    batch: list[MeterReading] = []
    try:
        async for reading in store.stream_readings(query, limit=limit, chunk_size=chunk):
            batch.append(reading)
            if len(batch) >= 500:
                yield csv_rows(batch) if fmt == "csv" else ndjson_lines(batch)
                batch = []
    except StoreError:
        # Headers are gone already; a cut-short body is all that can say it failed.
        log.exception("bulk download cut short by the store")
        raise
    if batch:
        yield csv_rows(batch) if fmt == "csv" else ndjson_lines(batch)
