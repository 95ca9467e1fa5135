"""What every domain router shares: dependencies, submitting a request, reading its result.

Dependencies to override or provide: ``current_org`` (from :mod:`cloud.api_admin.deps`, the
authentication seam), and ``app.state.registry`` (Registry), ``app.state.commands``
(CommandStore) and ``app.state.mqtt`` (a connected MqttSession), built in the app's lifespan.
Authorisation is checked here, before anything is published; the core checks it again.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from broker import topics
from broker.session import MqttSession, publish_properties
from cloud.api_admin.deps import OrgId, RegistryDep
from cloud.core.commands import CommandStore
from cloud.domains.base import Domain
from cloud.domains.consumer import TranslationError, record, translate
from cloud.domains.schemas import Accepted, CommandPublic, FunctionalRequest, RequestResult

log = logging.getLogger(__name__)


def get_commands(request: Request) -> CommandStore:
    """The command store the app put in ``app.state.commands``."""
    store = getattr(request.app.state, "commands", None)
    if store is None:
        raise RuntimeError("app.state.commands is not set; build the CommandStore in the app's lifespan")
    return store


def get_mqtt(request: Request) -> MqttSession:
    """The connected MQTT session the app put in ``app.state.mqtt``."""
    session = getattr(request.app.state, "mqtt", None)
    if session is None:
        raise RuntimeError("app.state.mqtt is not set; connect an MqttSession in the app's lifespan")
    return session


CommandsDep = Annotated[CommandStore, Depends(get_commands)]
MqttDep = Annotated[MqttSession, Depends(get_mqtt)]


class Submitter:
    """Everything a domain route needs to accept a functional request (a dependency)."""

    def __init__(self, org: OrgId, registry: RegistryDep, store: CommandsDep, mqtt: MqttDep,
                 ttl_seconds: Annotated[int, Query(alias="ttlSeconds", ge=1, le=7 * 24 * 3600)] = 300,
                 priority: Annotated[int, Query(ge=0, le=9)] = 4) -> None:
        self.org, self.registry, self.store, self.mqtt = org, registry, store, mqtt
        self.ttl_seconds, self.priority = ttl_seconds, priority

    async def submit(self, domain: Domain, operation: str, device_id: str, parameters: dict[str, Any]) -> Accepted:
        """Authorise, translate, record and publish one functional request; 202 body."""
        function = domain.operation(operation).function
        decision = await self.registry.permission(self.org, device_id, function)
        if not decision.allowed:
            log.warning("refused %s/%s on %s for %s: %s", domain.name, operation, device_id, self.org,
                        decision.reason)
            raise HTTPException(status.HTTP_403_FORBIDDEN, decision.reason)
        request = FunctionalRequest(deviceId=device_id, operation=operation, parameters=parameters,
                                    priority=self.priority, ttlSeconds=self.ttl_seconds, issuedAt=datetime.now(UTC))
        try:
            commands = translate(domain, self.org, request)
        except TranslationError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from None
        # Recorded before publishing, so the result URL answers PENDING at once.
        await record(self.store, domain, self.org, request, commands)
        await self.mqtt.publish(topics.domain_topic(domain.name, "request", self.org), request.to_wire(), qos=1,
                                properties=publish_properties(correlation_data=request.correlation_id.bytes,
                                                              message_expiry=self.ttl_seconds))
        return Accepted(correlationId=request.correlation_id,
                        resultUrl=f"/v1/{domain.name}/results/{request.correlation_id}")


SubmitterDep = Annotated[Submitter, Depends(Submitter)]


def add_results_route(router: APIRouter, domain: Domain) -> None:
    """``GET /results/{correlationId}`` on ``router``: a request's state, for its organisation only."""

    @router.get("/results/{correlation_id}", response_model=RequestResult, response_model_by_alias=True,
                response_model_exclude_none=True, summary=f"Result of a {domain.name} request")
    async def result(correlation_id: uuid.UUID, org: OrgId, store: CommandsDep) -> RequestResult:
        found = await store.functional(str(correlation_id))
        # Another organisation's request is reported as unknown, so ids cannot be probed.
        if found is None or found.organisation != org or found.domain != domain.name:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {domain.name} request {correlation_id}")
        commands = await store.of_request(str(correlation_id))
        return RequestResult(
            correlationId=correlation_id, domain=found.domain, operation=found.operation, deviceId=found.device,
            status=found.status, result=found.result, error=found.error, completedAt=found.completed_at,
            createdAt=found.created_at,
            commands=[CommandPublic(commandId=c.id, name=c.name, status=c.status, attempts=c.attempts, error=c.error)
                      for c in commands])
