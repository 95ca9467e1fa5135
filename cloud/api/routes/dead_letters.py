"""``GET /v1/deadLetters``: messages the cloud could not accept, with the reason (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from broker.schemas import DeadLetter
from cloud.api.deps import MAX_OFFSET, PrincipalDep, QueryDatetime
from cloud.deadletters import DeadLetterStore

router = APIRouter(prefix="/v1", tags=["dead letters"])

MAX_LIMIT = 1000


class DeadLetterPage(BaseModel):
    """One page of dead letters, oldest first; ``nextOffset`` is set when there may be more."""

    model_config = ConfigDict(populate_by_name=True)

    dead_letters: list[DeadLetter] = Field(alias="deadLetters")
    limit: int
    offset: int
    next_offset: int | None = Field(default=None, alias="nextOffset")


@router.get("/deadLetters", response_model=DeadLetterPage, response_model_by_alias=True,
            responses={401: {"description": "no or invalid bearer token"},
                       403: {"description": "the caller's organisation is not a platform administrator"},
                       503: {"description": "no dead-letter store is configured"}})
async def list_dead_letters(
        request: Request, who: PrincipalDep,
        since: Annotated[QueryDatetime | None, Query(description="received at or after (with timezone)")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0) -> DeadLetterPage:
    """Dead letters received since ``since``, oldest first, paged by ``limit`` and ``offset``."""
    if not who.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "dead letters are for platform administrators")
    store: DeadLetterStore | None = request.app.state.dead_letters
    if store is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "no dead-letter store is configured on this API (create_app(dead_letters=...))")
    letters = await store.list(since=since, limit=limit, offset=offset)
    return DeadLetterPage(deadLetters=letters, limit=limit, offset=offset,
                          nextOffset=offset + len(letters) if len(letters) == limit else None)
