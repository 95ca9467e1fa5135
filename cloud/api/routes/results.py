"""``GET /v1/{domain}/results/{correlationId}``: a functional request's state, on every domain's router."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, status

from cloud.api.deps import OrgId, RequestsDep
from cloud.domains.base import Domain
from cloud.domains.schemas import CommandPublic, RequestResult


def add_results_route(router: APIRouter, domain: Domain) -> None:
    """``GET /results/{correlationId}`` on ``router``: a request's state, for its organisation only."""

    @router.get("/results/{correlation_id}", response_model=RequestResult, response_model_by_alias=True,
                response_model_exclude_none=True, summary=f"Result of a {domain.name} request")
    async def result(correlation_id: uuid.UUID, org: OrgId, requests: RequestsDep) -> RequestResult:
        found, found_commands = await requests.with_commands(str(correlation_id))
        # Another organisation's request is reported as unknown, so ids cannot be probed.
        if found is None or found.organisation != org or found.domain != domain.name:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {domain.name} request {correlation_id}")
        stored = {c.id: c for c in found_commands}
        # In the order the domain translated them (they share a creation time).
        commands = [stored[cid] for cid in found.command_ids if cid in stored]
        return RequestResult(
            correlationId=correlation_id, domain=found.domain, operation=found.operation, deviceId=found.device,
            status=found.status, result=found.result, error=found.error, completedAt=found.completed_at,
            createdAt=found.created_at,
            commands=[CommandPublic(commandId=c.id, name=c.name, status=c.status, attempts=c.attempts, error=c.error)
                      for c in commands])
