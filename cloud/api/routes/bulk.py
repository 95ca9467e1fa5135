"""``GET /v1/bulk/{token}``: stream the readings behind a bulk link as CSV or NDJSON."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import StreamingResponse

from cloud.api.bulk import MEDIA_TYPES, BulkLinkError, csv_header, verify_link
from cloud.api.deps import AllowedMetersDep, ClockDep, PrincipalDep, SettingsDep, StoreDep
from cloud.api.routes.meter_readings import privacy_refusal
from cloud.api.wire_rows import WireRenderer
from cloud.store import InfluxStore, ReadingQuery, StoreError

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/bulk", tags=["meter readings"])

_PIECE_ROWS = 1000


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
    """The body, one InfluxDB chunk of rows at a time, in pieces of at most _PIECE_ROWS rows:
    memory stays bounded and the event loop gets a turn between pieces."""
    renderer = WireRenderer()
    render = renderer.csv if fmt == "csv" else renderer.ndjson
    if fmt == "csv":
        yield csv_header()
    try:
        # Closed with this body (a client that went away), not left to the garbage collector.
        async with contextlib.aclosing(store.stream_rows(query, limit=limit, chunk_size=chunk)) as rows:
            async for columns, values in rows:
                for start in range(0, len(values), _PIECE_ROWS):
                    piece = render(columns, values[start:start + _PIECE_ROWS])
                    if piece:
                        yield piece
    except StoreError:
        # Headers are gone already; a cut-short body is all that can say it failed.
        log.exception("bulk download cut short by the store")
        raise
