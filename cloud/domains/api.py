"""What every domain router shares: dependencies, submitting a request, reading its result.

Dependencies to override or provide: ``current_org`` (from :mod:`cloud.api_admin.deps`, the
authentication seam), and ``app.state.registry`` (Registry), ``app.state.requests``
(RequestStore) and ``app.state.mqtt`` (a connected MqttSession), built in the app's lifespan.
Authorisation is checked here, before anything is published; the core checks it again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from broker import topics
from broker.session import MqttSession, publish_properties
from cloud.api_admin.deps import OrgId
from cloud.core.access import permission, permissions
from cloud.domains.base import Domain
from cloud.domains.consumer import RECORDED, TranslationError, recorded, translate
from cloud.domains.requests import RequestStore
from cloud.registry import Registry
from cloud.domains.schemas import (
    Accepted,
    AcceptedFor,
    BulkAccepted,
    CommandPublic,
    FunctionalRequest,
    RequestResult,
)

log = logging.getLogger(__name__)


# The dependencies are coroutines: FastAPI runs plain functions in a worker thread, a hop
# that cost more than the rest of a switch request together.


async def get_registry(request: Request) -> Registry:
    """The registry the app put in ``app.state.registry``."""
    registry = getattr(request.app.state, "registry", None)
    if registry is None:
        raise RuntimeError("app.state.registry is not set; build the Registry in the app's lifespan")
    return registry


async def get_requests(request: Request) -> RequestStore:
    """The functional request store the app put in ``app.state.requests``."""
    store = getattr(request.app.state, "requests", None)
    if store is None:
        raise RuntimeError("app.state.requests is not set; build the RequestStore in the app's lifespan")
    return store


async def get_mqtt(request: Request) -> MqttSession:
    """The connected MQTT session the app put in ``app.state.mqtt``."""
    session = getattr(request.app.state, "mqtt", None)
    if session is None:
        raise RuntimeError("app.state.mqtt is not set; connect an MqttSession in the app's lifespan")
    return session


RegistryDep = Annotated[Registry, Depends(get_registry)]
RequestsDep = Annotated[RequestStore, Depends(get_requests)]
MqttDep = Annotated[MqttSession, Depends(get_mqtt)]


class Submitter:
    """Everything a domain route needs to accept a functional request (a dependency)."""

    def __init__(self, *, org: str, registry: Registry, requests: RequestStore, mqtt: MqttSession,
                 ttl_seconds: int = 300, priority: int = 4) -> None:
        self.org, self.registry, self.requests, self.mqtt = org, registry, requests, mqtt
        self.ttl_seconds, self.priority = ttl_seconds, priority

    async def submit(self, domain: Domain, operation: str, device_id: str, parameters: dict[str, Any]) -> Accepted:
        """Authorise, translate, record and publish one functional request; 202 body."""
        function = domain.operation(operation).function
        decision = await permission(self.registry, self.org, device_id, function)
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
        await self.requests.add(recorded(domain, self.org, request, commands))
        await self.mqtt.publish(topics.domain_topic(domain.name, "request", self.org), request.to_wire(), qos=1,
                                properties=publish_properties(correlation_data=request.correlation_id.bytes,
                                                              message_expiry=self.ttl_seconds,
                                                              user_properties={RECORDED: "1"}))
        return Accepted(correlationId=request.correlation_id,
                        resultUrl=f"/v1/{domain.name}/results/{request.correlation_id}")


    async def submit_many(self, domain: Domain, operation: str, device_ids: Sequence[str],
                          parameters: dict[str, Any]) -> BulkAccepted:
        """The same operation on many devices: one functional request per device (each with its own
        result and notification), authorised in one query, recorded in one transaction. All or
        nothing: if the caller may not do it on any one device, nothing is recorded or published."""
        devices = list(dict.fromkeys(device_ids))
        function = domain.operation(operation).function
        decisions = await permissions(self.registry, self.org, devices, function)
        refused = [f"{d}: {decisions[d].reason}" for d in devices if not decisions[d].allowed]
        if refused:
            log.warning("refused bulk %s/%s on %d of %d devices for %s", domain.name, operation, len(refused),
                        len(devices), self.org)
            more = f" (and {len(refused) - MAX_REASONS} more)" if len(refused) > MAX_REASONS else ""
            raise HTTPException(status.HTTP_403_FORBIDDEN, "; ".join(refused[:MAX_REASONS]) + more)
        now = datetime.now(UTC)
        requests = [FunctionalRequest(deviceId=d, operation=operation, parameters=parameters, priority=self.priority,
                                      ttlSeconds=self.ttl_seconds, issuedAt=now) for d in devices]
        try:
            translated = [translate(domain, self.org, r) for r in requests]
        except TranslationError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from None
        await self.requests.add_many([recorded(domain, self.org, r, commands)
                                      for r, commands in zip(requests, translated, strict=True)])
        topic = topics.domain_topic(domain.name, "request", self.org)
        await asyncio.gather(*(self.mqtt.publish(topic, r.to_wire(), qos=1, properties=publish_properties(
            correlation_data=r.correlation_id.bytes, message_expiry=self.ttl_seconds,
            user_properties={RECORDED: "1"})) for r in requests))
        return BulkAccepted(requests=[
            AcceptedFor(deviceId=r.device_id, correlationId=r.correlation_id,
                        resultUrl=f"/v1/{domain.name}/results/{r.correlation_id}") for r in requests])


async def get_submitter(org: OrgId, registry: RegistryDep, requests: RequestsDep, mqtt: MqttDep,
                        ttl_seconds: Annotated[int, Query(alias="ttlSeconds", ge=1, le=7 * 24 * 3600)] = 300,
                        priority: Annotated[int, Query(ge=0, le=9)] = 4) -> Submitter:
    """The :class:`Submitter` for this request (time-to-live and priority from the query)."""
    return Submitter(org=org, registry=registry, requests=requests, mqtt=mqtt, ttl_seconds=ttl_seconds,
                     priority=priority)


SubmitterDep = Annotated[Submitter, Depends(get_submitter)]
# A bulk refusal names this many devices and counts the rest.
MAX_REASONS = 10
# Devices per bulk request: large enough for a feeder or a city district, small enough for one answer.
MAX_BULK_DEVICES = 10_000


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
